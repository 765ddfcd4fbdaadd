"""Shared fixtures for the inference tests: a tiny saved PromptPAR model, sample images,
and a fake Hugging Face cache in the Hub's on-disk layout."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from par_prompt import PromptPARModel, PromptPARPredictor, PromptPARProcessor
from par_prompt.tiny_backbones import write_tiny_backbones

ATTRIBUTES = ["Female", "Hat", "Glasses", "HandBag", "LongCoat", "Trousers"]
IMAGE_SIZE, PATCH_SIZE = 32, 4  # an 8×8 patch grid; 4 regions over rows 0-2, 1-4, 3-6, 5-7


def build_tiny_model(backbones, seed: int = 0, **config) -> PromptPARModel:
    """A tiny PromptPAR model whose heads are spread out, so that the probabilities
    cover (0, 1) instead of sitting at 0.5 as after initialisation."""
    model = PromptPARModel.from_backbones(
        backbones.clip, ATTRIBUTES, fusion_name_or_path=backbones.vit, prompts_per_group=2, dataset="pa100k", **config
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.heads.weight.copy_(torch.randn(model.heads.weight.shape, generator=generator) * 0.5)
        model.heads.bias.copy_(torch.randn(model.heads.bias.shape, generator=generator))
    return model.eval()


@pytest.fixture(scope="session")
def backbones(tmp_path_factory):
    return write_tiny_backbones(tmp_path_factory.mktemp("backbones"), image_size=IMAGE_SIZE, patch_size=PATCH_SIZE)


def save_tiny_model(model: PromptPARModel, directory: Path, backbones) -> Path:
    """Save ``model`` with its processor (its CLIP base's), as a training run exports it."""
    model.save_pretrained(directory)
    PromptPARProcessor.from_pretrained(backbones.clip).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, backbones) -> Path:
    """A saved tiny model (with its processor) that names its bases by local path."""
    return save_tiny_model(build_tiny_model(backbones), tmp_path_factory.mktemp("model") / "promptpar", backbones)


@pytest.fixture(scope="session")
def model(model_dir) -> PromptPARModel:
    """The saved tiny model, loaded. Tests must leave it as they found it."""
    return PromptPARModel.from_pretrained(model_dir)


@pytest.fixture(scope="session")
def processor(model_dir) -> PromptPARProcessor:
    """The saved tiny model's processor. Tests must leave it as they found it."""
    return PromptPARProcessor.from_pretrained(model_dir)


@pytest.fixture(scope="session")
def predictor(model, processor) -> PromptPARPredictor:
    """The loaded model with its processor."""
    return PromptPARPredictor(model, processor)


def random_image(height: int = 64, width: int = 32, mode: str = "RGB", seed: int = 0) -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode=mode)


@pytest.fixture(scope="session")
def image_files(tmp_path_factory) -> dict[str, Path]:
    """Named image files: rgb, grey, rgba (PNG), jpeg, corrupt, tiny (1×1), and a missing one."""
    directory = tmp_path_factory.mktemp("images")
    files = {
        "rgb": directory / "rgb.png", "grey": directory / "grey.png", "rgba": directory / "rgba.png",
        "jpeg": directory / "walker.jpg", "corrupt": directory / "corrupt.jpg", "tiny": directory / "tiny.png",
        "missing": directory / "missing.png",
    }
    random_image(64, 32, "RGB", seed=1).save(files["rgb"])
    random_image(48, 40, "L", seed=2).save(files["grey"])
    random_image(50, 30, "RGBA", seed=3).save(files["rgba"])
    random_image(70, 35, "RGB", seed=4).save(files["jpeg"], quality=90)
    files["corrupt"].write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG body" * 4)
    Image.new("RGB", (1, 1), (200, 10, 10)).save(files["tiny"])
    return files


# --------------------------------------------------------------------- fake Hub cache


def add_to_hub_cache(cache: Path, repo_id: str, source: Path, revision: str = "main") -> Path:
    """Put the files of ``source`` into ``cache`` as ``huggingface_hub`` lays out a
    downloaded model repository, and return the snapshot directory::

        models--{org}--{name}/blobs/{sha256 of each file}
        models--{org}--{name}/snapshots/{commit}/{path} -> ../../blobs/{sha256}   (symlinks)
        models--{org}--{name}/refs/{revision}            (holds the commit hash)
    """
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    blobs = repo / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = file.relative_to(source)
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copyfile(file, blobs / digest)
        link = snapshot / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blobs / digest, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return snapshot


def remove_from_hub_cache(cache: Path, repo_id: str) -> None:
    shutil.rmtree(cache / ("models--" + repo_id.replace("/", "--")))


HUB_MODEL, HUB_CLIP, HUB_VIT = "org/promptpar-tiny", "org/tiny-clip", "org/tiny-vit"


@pytest.fixture
def hub_cache(tmp_path, backbones, model_dir) -> Path:
    """A cache holding the tiny model as ``org/promptpar-tiny``, whose config names its
    bases ``org/tiny-clip`` and ``org/tiny-vit``, which the cache holds too."""
    cache = tmp_path / "hub"
    adapter = tmp_path / "adapter"
    model = PromptPARModel.from_pretrained(model_dir)
    model.config.clip_name_or_path, model.config.fusion_name_or_path = HUB_CLIP, HUB_VIT
    save_tiny_model(model, adapter, backbones)
    add_to_hub_cache(cache, HUB_MODEL, adapter)
    add_to_hub_cache(cache, HUB_CLIP, Path(backbones.clip))
    add_to_hub_cache(cache, HUB_VIT, Path(backbones.vit))
    return cache


@pytest.fixture
def no_progress_bars():
    """Progress bars off (datasets' switch), as a user sets them for clean logs."""
    import datasets

    datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.enable_progress_bars()


@pytest.fixture
def offline(monkeypatch):
    """Offline mode as HF_HUB_OFFLINE=1 sets it (huggingface_hub reads it at import)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
