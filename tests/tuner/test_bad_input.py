"""Configs and models that cannot work get a clear error."""

import pytest
import torch
from peft import get_peft_model
from transformers import BertConfig, BertModel

from par_prompt import RegionPromptConfig

from .conftest import make_clip


def test_regions_that_do_not_fit_the_grid():
    # The tiny tower has a 32 px image and 4 px patches: 8 rows of patches.
    with pytest.raises(ValueError, match="num_regions=9 does not fit a grid of 8 patch rows"):
        get_peft_model(make_clip("vision"), RegionPromptConfig(num_regions=9))


@pytest.mark.parametrize("value", [0, -2])
def test_no_prompts_per_group_with_regions(value):
    with pytest.raises(ValueError, match="prompts_per_group"):
        RegionPromptConfig(num_regions=4, prompts_per_group=value)


def test_text_prompts_on_a_model_without_a_text_tower():
    with pytest.raises(ValueError, match=r"text prompt settings \(text_prompts=5\) have no effect on CLIPVisionModel"):
        get_peft_model(make_clip("vision"), RegionPromptConfig(text_prompts=5))
    with pytest.raises(ValueError, match="no text tower"):
        get_peft_model(make_clip("vision"), RegionPromptConfig(text_prompt_per_sentence=True, num_sentences=4))
    # At their defaults the text fields are simply not used on a vision tower.
    model = get_peft_model(make_clip("vision"), RegionPromptConfig(prompts_per_group=2))
    assert model(pixel_values=torch.randn(1, 3, 32, 32)).last_hidden_state.shape[1] == 15 + 64


def test_vision_settings_on_a_text_tower():
    with pytest.raises(ValueError, match="no vision tower"):
        get_peft_model(make_clip("text"), RegionPromptConfig(num_regions=2))


def test_non_clip_model():
    bert = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    with pytest.raises(ValueError, match="applies to Hugging Face CLIP models.*got BertModel"):
        get_peft_model(bert, RegionPromptConfig())
    with pytest.raises(ValueError, match="got Sequential"):
        get_peft_model(torch.nn.Sequential(torch.nn.Linear(2, 2)), RegionPromptConfig())


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(vision_depth=0), "vision_depth"),
        (dict(text_depth=-1), "text_depth"),
        (dict(prompt_init="normal"), "prompt_init"),
        (dict(text_prompt_per_sentence=True), "needs num_sentences"),
        (dict(overlap_rows=-1), "overlap_rows"),
    ],
)
def test_bad_config_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RegionPromptConfig(**kwargs)


def test_depth_beyond_the_tower():
    with pytest.raises(ValueError, match="vision_depth=5 exceeds the 2 layers"):
        get_peft_model(make_clip("vision"), RegionPromptConfig(vision_depth=5))
    with pytest.raises(ValueError, match="text_depth=3 exceeds the 2 layers"):
        get_peft_model(make_clip("text"), RegionPromptConfig(text_depth=3))


def test_too_many_text_prompts():
    with pytest.raises(ValueError, match="leaves no room for a sentence"):
        get_peft_model(make_clip("text"), RegionPromptConfig(text_prompts=76))


def test_attention_without_masks_is_refused():
    model = make_clip("vision")
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="attn_implementation='sdpa'"):
        get_peft_model(model, RegionPromptConfig())
