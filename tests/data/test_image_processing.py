"""PromptPARImageProcessor: inputs, equivalence with the training pipeline, save/load."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from par_prompt.data import CLIP_MEAN, CLIP_STD, ImageTransform
from par_prompt.image_processing import PromptPARImageProcessor


@pytest.fixture(scope="module")
def picture():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(40, 18, 3), dtype=np.uint8)  # H×W×C, taller than wide


def test_inputs_agree(picture):
    processor = PromptPARImageProcessor(size=32)
    pil = Image.fromarray(picture)
    reference = processor(pil)["pixel_values"]
    assert reference.shape == (1, 3, 32, 32) and reference.dtype == torch.float32
    for other in (
        [pil],
        picture,
        torch.from_numpy(picture).permute(2, 0, 1),
        torch.from_numpy(picture).permute(2, 0, 1).float() / 255,
        picture.astype(np.float64) / 255,
    ):
        torch.testing.assert_close(processor(other)["pixel_values"], reference, atol=1e-5, rtol=0)
    batch = processor([pil, picture[:, :, 0], picture[:, :, :1]])["pixel_values"]
    assert batch.shape == (3, 3, 32, 32)
    grey = processor(Image.fromarray(picture[:, :, 0]))["pixel_values"]
    torch.testing.assert_close(batch[1:2], grey)
    torch.testing.assert_close(batch[2:3], grey)
    assert isinstance(processor(pil, return_tensors="np")["pixel_values"], np.ndarray)


def test_padding_is_black_and_centred(picture):
    processor = PromptPARImageProcessor(size=40)
    values = processor(Image.fromarray(picture))["pixel_values"][0]
    black = -torch.tensor(CLIP_MEAN) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(values[:, :, :9].permute(1, 2, 0), black.expand(40, 9, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(values[:, :, -9:].permute(1, 2, 0), black.expand(40, 9, 3), atol=1e-5, rtol=0)


def test_same_numbers_as_the_eval_transform(picture):
    processor = PromptPARImageProcessor(size=48)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    transform = ImageTransform.from_processor(processor)
    via_transform = transform({"image": [{"bytes": buffer.getvalue(), "path": "x.png"}], "labels": [[1]]})
    torch.testing.assert_close(
        via_transform["pixel_values"], processor(Image.fromarray(picture))["pixel_values"]
    )


def test_save_and_load(tmp_path):
    processor = PromptPARImageProcessor(
        size=96, image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3], pad_fill=0
    )
    processor.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert config["size"] == 96 and config["image_mean"] == [0.5, 0.4, 0.3] and config["pad_fill"] == 0
    assert config["image_processor_type"] == "PromptPARImageProcessor"
    loaded = PromptPARImageProcessor.from_pretrained(tmp_path)
    assert (loaded.size, loaded.image_mean, loaded.image_std, loaded.pad_fill, loaded.resample) == (
        96, [0.5, 0.4, 0.3], [0.2, 0.25, 0.3], 0, processor.resample
    )  # fmt: skip
    image = Image.new("RGB", (7, 13), (10, 20, 30))
    torch.testing.assert_close(loaded(image)["pixel_values"], processor(image)["pixel_values"])


def test_from_clip_processor():
    fake = SimpleNamespace(
        crop_size={"height": 336, "width": 336}, image_mean=[0.1, 0.2, 0.3], image_std=[0.4, 0.5, 0.6]
    )
    processor = PromptPARImageProcessor.from_clip_processor(fake)
    assert (
        processor.size == 336
        and processor.image_mean == [0.1, 0.2, 0.3]
        and processor.image_std == [0.4, 0.5, 0.6]
    )
    from transformers import CLIPImageProcessor

    real = PromptPARImageProcessor.from_clip_processor(CLIPImageProcessor())
    assert real.size == 224
    np.testing.assert_allclose(real.image_mean, CLIP_MEAN)
    np.testing.assert_allclose(real.image_std, CLIP_STD)
    with pytest.raises(ValueError, match="square"):
        PromptPARImageProcessor.from_clip_processor(
            SimpleNamespace(crop_size={"height": 224, "width": 200}, image_mean=CLIP_MEAN, image_std=CLIP_STD)
        )


def test_tiny_and_huge_images():
    processor = PromptPARImageProcessor(size=24)
    tiny = processor(Image.new("RGB", (1, 1), (255, 0, 0)))["pixel_values"]
    assert tiny.shape == (1, 3, 24, 24)
    huge = processor(Image.new("L", (10000, 10000), 128))["pixel_values"]
    assert huge.shape == (1, 3, 24, 24)
    torch.testing.assert_close(
        huge[0, :, 12, 12], (128 / 255 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    )


@pytest.mark.parametrize(
    "bad,message",
    [
        (np.zeros((4, 4, 5), dtype=np.uint8), "image 1: an array must be"),
        (np.zeros((2, 4, 4, 3), dtype=np.uint8), "image 1: an array must be"),
        (np.zeros((4, 4, 3), dtype=np.int32), "image 1: pixels must be uint8"),
        (np.full((4, 4, 3), 2.0), "image 1: float pixels must lie in 0..1"),
        (torch.zeros(5, 4, 4, dtype=torch.uint8), "image 1: a tensor must be"),
        (b"not an image", "image 1: .*cannot decode"),
        (12, "image 1: unsupported input type int"),
    ],
)
def test_bad_inputs_name_their_index(bad, message):
    processor = PromptPARImageProcessor(size=8)
    with pytest.raises(ValueError, match=message):
        processor([Image.new("RGB", (4, 4)), bad])


def test_bad_arguments():
    with pytest.raises(ValueError):
        PromptPARImageProcessor(size=0)
    with pytest.raises(ValueError):
        PromptPARImageProcessor(image_std=[1, 0, 1])
    with pytest.raises(ValueError):
        PromptPARImageProcessor()([])
    with pytest.raises(TypeError):
        PromptPARImageProcessor()(Image.new("RGB", (2, 2)), do_resize=False)
