"""Tiny backbones on disk and tiny PromptPAR models built from them."""

from __future__ import annotations

import pytest
import torch

from par_prompt import PromptPARModel
from par_prompt.tiny_backbones import write_tiny_backbones

ATTRIBUTES = ["Hat", "Glasses", "Backpack", "ShortSleeve", "Trousers"]


@pytest.fixture(scope="session")
def backbones(tmp_path_factory):
    return write_tiny_backbones(tmp_path_factory.mktemp("backbones"))


def build(backbones, **config) -> PromptPARModel:
    config.setdefault("prompts_per_group", 2)
    torch.manual_seed(0)
    model = PromptPARModel.from_backbones(backbones.clip, ATTRIBUTES, fusion_name_or_path=backbones.vit, **config)
    model.set_positive_ratios(torch.linspace(0.1, 0.5, len(ATTRIBUTES)))
    return model


def trained(model: PromptPARModel) -> PromptPARModel:
    """Move every trainable tensor and the BatchNorm statistics away from their init."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.1 * torch.randn(param.shape, generator=generator))
        for norm in (model.heads.batch_norm, model.aggregator.batch_norm):
            norm.running_mean.add_(torch.randn(norm.running_mean.shape, generator=generator))
            norm.running_var.mul_(2.0)
    return model


@pytest.fixture
def model(backbones):
    return build(backbones)


@pytest.fixture
def pixels():
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def labels():
    return torch.tensor([[1, 0, 2, 1, 0], [0, 0, 1, 1, 1], [1, 1, 0, 0, 2]])


def tokenize(model: PromptPARModel, tokenizer=None) -> PromptPARModel:
    """Give a model built from a config its sentences' token ids (the tiny CLIP tokenizer's)."""
    from par_prompt.modeling import sentence_token_ids
    from par_prompt.tiny_backbones import tiny_clip_tokenizer

    model.set_sentence_token_ids(sentence_token_ids(tokenizer or tiny_clip_tokenizer(), model.config.sentences))
    return model
