"""Registration of PromptPAR with the transformers Auto classes (idempotent)."""

from __future__ import annotations


def register_auto_classes() -> None:
    """AutoConfig / AutoModel / AutoImageProcessor learn ``model_type="prompt_par"``."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    from ..image_processing import PromptPARImageProcessor
    from .configuration import PromptPARConfig
    from .modeling_promptpar import PromptPARModel

    AutoConfig.register(PromptPARConfig.model_type, PromptPARConfig, exist_ok=True)
    AutoModel.register(PromptPARConfig, PromptPARModel, exist_ok=True)
    AutoImageProcessor.register(PromptPARConfig, slow_image_processor_class=PromptPARImageProcessor, exist_ok=True)
