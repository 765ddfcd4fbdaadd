"""Tiny offline models and data sets for the evaluation and hub tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from par_prompt import PromptPARModel, PromptPARProcessor
from par_prompt.data import load, make_synthetic, save
from par_prompt.tiny_backbones import write_tiny_backbones


def tiny_model(directory: Path, attributes, sentences=None, seed: int = 0) -> PromptPARModel:
    """A tiny PromptPAR model on tiny random backbones written under ``directory``.

    The head is re-drawn with a larger spread so that the probabilities differ between
    images and attributes (the metrics then depend on the threshold).
    """
    backbones = write_tiny_backbones(directory / "backbones")
    model = PromptPARModel.from_backbones(backbones.clip, list(attributes), fusion_name_or_path=backbones.vit,
                                          sentences=sentences, prompts_per_group=2)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.heads.weight.copy_(0.1 * torch.randn(model.heads.weight.shape, generator=generator))
    return model.eval()


def tiny_processor(directory: Path) -> PromptPARProcessor:
    """The processor of :func:`tiny_model`'s model (its tiny CLIP's)."""
    return PromptPARProcessor.from_pretrained(directory / "backbones" / "clip")


def synthetic_data(directory: Path):
    """``make_synthetic(16, 8, 8, image_size=(64, 32))`` saved to ``directory``; returns the ParData."""
    data = load(make_synthetic(16, 8, 8, image_size=(64, 32)))
    save(data, directory)
    return data


def direct_probabilities(model: PromptPARModel, split, processor) -> tuple[np.ndarray, np.ndarray]:
    """sigmoid(logits) of every image of ``split`` through ``processor``, one forward per image."""
    probs = []
    with torch.inference_mode():
        for example in split:
            pixels = processor(images=example["image"])["pixel_values"]
            probs.append(torch.sigmoid(model(pixel_values=pixels).logits)[0].numpy())
    labels = np.asarray([example["labels"] for example in split], dtype=np.int8)
    return np.stack(probs), labels
