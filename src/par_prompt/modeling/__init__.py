"""PromptPAR model: configuration, model, outputs, processor."""

from .configuration import PromptPARConfig
from .modeling_promptpar import PromptPARModel
from .outputs import PromptPAROutput
from .processing_promptpar import PromptPARProcessor, sentence_token_ids

__all__ = ["PromptPARConfig", "PromptPARModel", "PromptPAROutput", "PromptPARProcessor", "sentence_token_ids"]
