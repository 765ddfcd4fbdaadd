"""The names earlier releases offered here, for code written against them.

The tiny backbones now live in :mod:`par_prompt.tiny_backbones` (the demo, the tests and
the benchmarks use them, so they are not test helpers) and the published architecture
numbers in :mod:`par_prompt.backbone_sizes`. This module only re-exports both; nothing in
the package imports it. Import from those modules in new code.
"""

from .backbone_sizes import (  # noqa: F401
    CLIP_CONTEXT_LENGTH,
    CLIP_VIT_B16_SIZES,
    CLIP_VIT_L14_SIZES,
    VIT_B16_SIZES,
    clip_config_from_sizes,
    vit_config_from_sizes,
)
from .tiny_backbones import (  # noqa: F401
    PAR_WORDS,
    TinyBackbones,
    tiny_clip_config,
    tiny_clip_tokenizer,
    tiny_vit_config,
    write_tiny_backbones,
)

__all__ = [
    "CLIP_CONTEXT_LENGTH",
    "CLIP_VIT_B16_SIZES",
    "CLIP_VIT_L14_SIZES",
    "PAR_WORDS",
    "TinyBackbones",
    "VIT_B16_SIZES",
    "clip_config_from_sizes",
    "tiny_clip_config",
    "tiny_clip_tokenizer",
    "tiny_vit_config",
    "vit_config_from_sizes",
    "write_tiny_backbones",
]
