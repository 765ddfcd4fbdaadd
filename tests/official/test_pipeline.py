"""The settings that record the official pipeline: the processor's do_pad and the config's visual_post_layernorm."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from par_prompt import PromptPARConfig, PromptPARModel
from par_prompt.modeling import sentence_token_ids
from par_prompt.data.transforms import ImageTransform
from par_prompt.image_processing import PromptPARImageProcessor
from par_prompt.tiny_backbones import tiny_clip_config, tiny_clip_tokenizer, tiny_vit_config


def official_like(**kwargs):
    return PromptPARImageProcessor(size=32, image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=2, do_pad=False,
                                   **kwargs)


def test_without_padding_the_whole_image_is_resized():
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (70, 30, 3), dtype=np.uint8))
    expected = np.asarray(image.resize((32, 32), Image.BILINEAR), dtype=np.float64) / 255 * 2 - 1
    pixels = official_like()(image)["pixel_values"][0].permute(1, 2, 0).double().numpy()
    assert np.abs(pixels - expected).max() < 1e-6
    padded = PromptPARImageProcessor(size=32, image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=2)(image)
    assert (padded["pixel_values"][0, :, :, 0] == -1).all()  # the black band of the padding


def test_large_images_are_not_shrunk_or_drafted_without_padding():
    """The official code decodes and resizes the full image; no reduced-scale shortcut may change that."""
    rng = np.random.default_rng(2)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (400, 300, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    data = buffer.getvalue()
    full = Image.open(io.BytesIO(data)).convert("RGB")
    expected = np.asarray(full.resize((32, 32), Image.BILINEAR), dtype=np.float64) / 255 * 2 - 1
    processor = official_like()
    for pixels in (processor(data)["pixel_values"][0],
                   ImageTransform.from_processor(processor)({"image": [data]})["pixel_values"][0]):
        assert np.abs(pixels.permute(1, 2, 0).double().numpy() - expected).max() < 1e-6


def test_do_pad_is_saved_and_defaults_to_padding(tmp_path):
    official_like().save_pretrained(tmp_path / "official")
    assert json.loads((tmp_path / "official" / "preprocessor_config.json").read_text())["do_pad"] is False
    assert PromptPARImageProcessor.from_pretrained(tmp_path / "official").do_pad is False
    assert PromptPARImageProcessor().do_pad is True
    config = json.loads((tmp_path / "official" / "preprocessor_config.json").read_text())
    del config["do_pad"]  # a folder saved before the setting existed
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "preprocessor_config.json").write_text(json.dumps(config))
    assert PromptPARImageProcessor.from_pretrained(tmp_path / "old").do_pad is True


def test_training_and_evaluation_transform_follows_the_processor():
    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)) for shape in ((50, 20, 3), (20, 50, 3))]
    for processor in (official_like(), PromptPARImageProcessor(size=32)):
        transform = ImageTransform.from_processor(processor)
        assert transform.do_pad == processor.do_pad
        assert torch.equal(transform({"image": images})["pixel_values"], processor(images)["pixel_values"])


@pytest.fixture(scope="module")
def tiny_model():
    config = PromptPARConfig(attributes=["Hat", "Glasses", "Backpack"], clip_config=tiny_clip_config(),
                             fusion_config=tiny_vit_config(), prompts_per_group=2)
    torch.manual_seed(0)
    model = PromptPARModel(config)
    model.set_sentence_token_ids(sentence_token_ids(tiny_clip_tokenizer(), model.config.sentences))
    return model.eval()


def test_visual_post_layernorm_switch(tiny_model):
    assert PromptPARConfig().visual_post_layernorm is True  # the paper-faithful default
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    clip = tiny_model.clip_model
    with torch.no_grad():
        clip.vision_model.post_layernorm.weight.mul_(3.0)  # make the LayerNorm matter
        hidden = clip.vision_model(pixel_values=pixels).last_hidden_state
        with_norm = tiny_model.visual_tokens(pixels)
        tiny_model.config.visual_post_layernorm = False
        without = tiny_model.visual_tokens(pixels)
        tiny_model.config.visual_post_layernorm = True
    assert torch.allclose(with_norm, clip.visual_projection(clip.vision_model.post_layernorm(hidden)), atol=1e-6)
    assert torch.allclose(without, clip.visual_projection(hidden), atol=1e-6)
    assert (with_norm - without).abs().max() > 1e-2


def test_visual_post_layernorm_is_saved(tmp_path):
    config = PromptPARConfig(attributes=["Hat"], clip_config=tiny_clip_config(), fusion_config=tiny_vit_config(),
                             visual_post_layernorm=False)
    config.save_pretrained(tmp_path)
    assert PromptPARConfig.from_pretrained(tmp_path).visual_post_layernorm is False
