"""par-prompt: PromptPAR pedestrian attribute recognition as a PEFT adapter.

Importing the package registers the region prompt method with PEFT (type
``REGION_PROMPT``). Importing it again is harmless.
"""

from .tuner import RegionLayout, RegionPromptConfig, RegionPromptModel, region_layout
from .tuner.registry import register_region_prompt_method

__version__ = "0.1.0"

register_region_prompt_method()

__all__ = ["RegionLayout", "RegionPromptConfig", "RegionPromptModel", "region_layout", "__version__"]
