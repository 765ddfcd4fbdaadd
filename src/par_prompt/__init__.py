"""par-prompt: PromptPAR pedestrian attribute recognition as a PEFT adapter.

Importing the package registers the region prompt method with PEFT (type
``REGION_PROMPT``) and PromptPAR with the transformers Auto classes (AutoConfig,
AutoModel, AutoModelForImageClassification, AutoImageProcessor, AutoProcessor). Importing it again
is harmless. The data tools (``par_prompt.data``) load on first use.
"""

from .image_processing import PromptPARImageProcessor
from .inference.pipeline import register_pipeline
from .inference.predictor import PromptPARPredictor
from .losses import compute_positive_ratios, weighted_bce_with_logits
from .metrics import ParMetricAccumulator, ParMetrics, calibrate_thresholds, compute_par_metrics
from .modeling import PromptPARConfig, PromptPARModel, PromptPAROutput, PromptPARProcessor
from .modeling.auto import register_auto_classes
from .sentences import expand_attributes, resolve_sentences
from .tuner import RegionLayout, RegionPromptConfig, RegionPromptModel, region_layout
from .tuner.registry import register_region_prompt_method

__version__ = "0.1.0"

register_region_prompt_method()
register_auto_classes()
register_pipeline()  # the "pedestrian-attribute-recognition" task

__all__ = [
    "ParMetricAccumulator",
    "ParMetrics",
    "PromptPARConfig",
    "PromptPARImageProcessor",
    "PromptPARModel",
    "PromptPAROutput",
    "PromptPARPredictor",
    "PromptPARProcessor",
    "RegionLayout",
    "RegionPromptConfig",
    "RegionPromptModel",
    "__version__",
    "calibrate_thresholds",
    "compute_par_metrics",
    "compute_positive_ratios",
    "expand_attributes",
    "region_layout",
    "resolve_sentences",
    "weighted_bce_with_logits",
]
