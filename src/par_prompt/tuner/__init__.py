"""Region prompt tuning: a PEFT method for CLIP (docs/method.md §2-§3)."""

from .config import RegionPromptConfig
from .layout import RegionLayout, region_bands, region_layout
from .model import RegionPromptModel
from .registry import register_region_prompt_method

__all__ = ["RegionLayout", "RegionPromptConfig", "RegionPromptModel", "region_bands", "region_layout",
           "register_region_prompt_method"]
