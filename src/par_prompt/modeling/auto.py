"""Registration of PromptPAR with the transformers Auto classes (idempotent)."""

from __future__ import annotations


def register_auto_classes() -> None:
    """``model_type="prompt_par"`` for AutoConfig, AutoModel, AutoModelForImageClassification
    (the stock ``image-classification`` pipeline: sigmoid scores per attribute),
    AutoImageProcessor and AutoProcessor."""
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModel,
        AutoModelForImageClassification,
        AutoProcessor,
    )

    from ..image_processing import PromptPARImageProcessor
    from .configuration import PromptPARConfig
    from .modeling_promptpar import PromptPARModel
    from .processing_promptpar import PromptPARProcessor

    AutoConfig.register(PromptPARConfig.model_type, PromptPARConfig, exist_ok=True)
    AutoModel.register(PromptPARConfig, PromptPARModel, exist_ok=True)
    AutoModelForImageClassification.register(PromptPARConfig, PromptPARModel, exist_ok=True)
    AutoImageProcessor.register(PromptPARConfig, slow_image_processor_class=PromptPARImageProcessor, exist_ok=True)
    AutoProcessor.register(PromptPARConfig, PromptPARProcessor, exist_ok=True)
