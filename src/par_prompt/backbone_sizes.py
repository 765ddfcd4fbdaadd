"""Architecture numbers of the published backbones, and configs built from them.

PromptPAR runs on ``openai/clip-vit-large-patch14`` and takes its fusion block from
``google/vit-base-patch16-224``. The dicts below hold the sizes from those checkpoints'
``config.json`` (keys are the Hugging Face config field names), so that a full-size model
can be built without downloading anything, e.g. on the ``meta`` device to count its
parameters. Treat the dicts as read-only; :func:`clip_config_from_sizes` and
:func:`vit_config_from_sizes` copy them.

Nothing here performs I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "CLIP_CONTEXT_LENGTH",
    "CLIP_VIT_B16_SIZES",
    "CLIP_VIT_L14_SIZES",
    "VIT_B16_SIZES",
    "clip_config_from_sizes",
    "vit_config_from_sizes",
]

#: CLIP's text context length (``max_position_embeddings`` / ``model_max_length``).
CLIP_CONTEXT_LENGTH = 77

#: ``openai/clip-vit-large-patch14`` (the backbone used by PromptPAR).
CLIP_VIT_L14_SIZES: dict[str, Any] = {
    "projection_dim": 768,
    "text": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "vocab_size": 49408,
        "max_position_embeddings": CLIP_CONTEXT_LENGTH,
    },
    "vision": {
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "patch_size": 14,
        "image_size": 224,
    },
}

#: ``openai/clip-vit-base-patch16``. The text tower of every OpenAI ViT-B CLIP
#: has 12 layers of width 512 with 8 heads (CLIP paper, Table 20).
CLIP_VIT_B16_SIZES: dict[str, Any] = {
    "projection_dim": 512,
    "text": {
        "hidden_size": 512,
        "intermediate_size": 2048,
        "num_hidden_layers": 12,
        "num_attention_heads": 8,
        "vocab_size": 49408,
        "max_position_embeddings": CLIP_CONTEXT_LENGTH,
    },
    "vision": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "patch_size": 16,
        "image_size": 224,
    },
}

#: ``google/vit-base-patch16-224`` (source of PromptPAR's fusion block).
VIT_B16_SIZES: dict[str, Any] = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "image_size": 224,
    "patch_size": 16,
}


def clip_config_from_sizes(sizes: Mapping[str, Any]):
    """A ``CLIPConfig`` from a sizes dict shaped like :data:`CLIP_VIT_L14_SIZES`.

    ``sizes["text"]`` and ``sizes["vision"]`` are passed as ``CLIPTextConfig`` /
    ``CLIPVisionConfig`` fields. Special-token ids follow CLIP's layout:
    ``bos = vocab_size - 2``, ``eos = pad = vocab_size - 1`` (49406/49407 for
    the real vocabulary), never the legacy ``eos_token_id == 2``. Other fields
    keep the transformers defaults, which match the OpenAI checkpoints
    (``quick_gelu``, ``layer_norm_eps=1e-5``, ``logit_scale_init_value=2.6592``).
    """
    from transformers import CLIPConfig

    projection_dim = sizes["projection_dim"]
    text = dict(sizes["text"])
    vocab_size = text["vocab_size"]
    text.setdefault("bos_token_id", vocab_size - 2)
    text.setdefault("eos_token_id", vocab_size - 1)
    text.setdefault("pad_token_id", vocab_size - 1)
    text.setdefault("projection_dim", projection_dim)
    vision = dict(sizes["vision"])
    vision.setdefault("projection_dim", projection_dim)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)


def vit_config_from_sizes(sizes: Mapping[str, Any]):
    """A ``ViTConfig`` from a sizes dict shaped like :data:`VIT_B16_SIZES`."""
    from transformers import ViTConfig

    return ViTConfig(**dict(sizes))
