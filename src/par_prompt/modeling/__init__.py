"""PromptPAR model: configuration, model, outputs."""

from .configuration import PromptPARConfig
from .modeling_promptpar import PromptPARModel, tokenize_sentences
from .outputs import PromptPAROutput

__all__ = ["PromptPARConfig", "PromptPARModel", "PromptPAROutput", "tokenize_sentences"]
