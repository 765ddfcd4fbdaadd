"""Shared builders for the region-prompt tuner tests: tiny random CLIP models, no files."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPModel, CLIPTextModel, CLIPVisionModel

from par_prompt.tiny_backbones import tiny_clip_config

BOS, EOS = None, None


def make_clip(kind: str = "both", attn: str = "sdpa", seed: int = 0, **sizes):
    """A tiny CLIP model in eval mode: kind 'both' (CLIPModel), 'vision' or 'text'."""
    config = tiny_clip_config(**sizes)
    torch.manual_seed(seed)
    if kind == "vision":
        model = CLIPVisionModel(config.vision_config)
    elif kind == "text":
        model = CLIPTextModel(config.text_config)
    else:
        model = CLIPModel(config)
    model.set_attn_implementation(attn)
    return model.eval()


def text_ids(config, batch: int = 3, lengths=(5, 9, 2), length: int = 77, seed: int = 0) -> torch.Tensor:
    """Random sentences [SOT, tokens..., EOT, pad...] with the given token counts."""
    generator = torch.Generator().manual_seed(seed)
    bos, eos = config.bos_token_id, config.eos_token_id
    ids = torch.full((batch, length), config.pad_token_id, dtype=torch.long)
    for row in range(batch):
        count = lengths[row % len(lengths)]
        ids[row, 0] = bos
        ids[row, 1 : 1 + count] = torch.randint(0, bos, (count,), generator=generator)
        ids[row, 1 + count] = eos
    return ids


def padding_mask(ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """1 up to and including the end token, 0 after it."""
    ends = (ids == eos_token_id).int().argmax(dim=-1)
    return (torch.arange(ids.shape[1])[None, :] <= ends[:, None]).long()


@pytest.fixture
def pixels():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
