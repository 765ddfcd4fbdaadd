"""Trainable parameters of the method at full size, counted on the meta device."""

import torch
from peft import get_peft_model
from transformers import CLIPModel

from par_prompt import RegionPromptConfig
from par_prompt.backbone_sizes import CLIP_VIT_L14_SIZES, clip_config_from_sizes


def expected_trainable(clip_config, config: RegionPromptConfig) -> int:
    """docs/method.md §2-§3 from the configs: deep prompts per layer, region tokens, text prompts."""
    vision, text = clip_config.vision_config, clip_config.text_config
    groups = config.num_regions + 1
    visual = vision.num_hidden_layers * groups * config.prompts_per_group * vision.hidden_size
    region_tokens = config.num_regions * vision.hidden_size
    textual = text.num_hidden_layers * config.text_prompts * text.hidden_size
    return visual + region_tokens + textual


def test_vit_l14_default_trainable_parameters():
    clip_config = clip_config_from_sizes(CLIP_VIT_L14_SIZES)
    config = RegionPromptConfig()
    with torch.device("meta"):
        model = get_peft_model(CLIPModel(clip_config), config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == expected_trainable(clip_config, config)
    # The same figure as docs/method.md writes it: 24·50·1024 + 4·1024 + 12·3·768.
    vision, text = clip_config.vision_config, clip_config.text_config
    assert (vision.num_hidden_layers, vision.hidden_size, text.num_hidden_layers, text.hidden_size) == (24, 1024, 12, 768)
    assert trainable == 24 * 50 * 1024 + 4 * 1024 + 12 * 3 * 768
