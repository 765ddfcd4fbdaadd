"""Building PromptPARModel from configs alone, what trains, and full-size parameter counts."""

import pytest
import torch

from par_prompt import PromptPARConfig, PromptPARModel
from par_prompt.backbone_sizes import (
    CLIP_VIT_B16_SIZES,
    CLIP_VIT_L14_SIZES,
    VIT_B16_SIZES,
    clip_config_from_sizes,
    vit_config_from_sizes,
)
from par_prompt.tiny_backbones import tiny_clip_config, tiny_vit_config

from .conftest import ATTRIBUTES, build

RAP_51 = [f"attribute{i}" for i in range(51)]


def full_size(clip_sizes, **kwargs) -> PromptPARModel:
    config = PromptPARConfig(attributes=RAP_51, sentences=[f"A pedestrian with {a}." for a in RAP_51],
                             clip_config=clip_config_from_sizes(clip_sizes),
                             fusion_config=vit_config_from_sizes(VIT_B16_SIZES), **kwargs)
    with torch.device("meta"):
        return PromptPARModel(config)


def counts(model):
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def test_builds_from_configs_alone_without_files():
    config = PromptPARConfig(attributes=ATTRIBUTES, clip_config=tiny_clip_config(), fusion_config=tiny_vit_config(),
                             prompts_per_group=2)
    model = PromptPARModel(config)
    assert model.config.sentences[0] == "A pedestrian wearing a hat"  # expanded from the table
    with pytest.raises(ValueError, match=r"no token ids .*model\.set_sentence_token_ids"):
        model(torch.randn(2, 3, 32, 32))
    from par_prompt.modeling import sentence_token_ids
    from par_prompt.tiny_backbones import tiny_clip_tokenizer

    ids = sentence_token_ids(tiny_clip_tokenizer(), model.config.sentences)
    model.set_sentence_token_ids(ids)
    assert model.config.sentence_token_ids == ids
    assert model.eval()(torch.randn(2, 3, 32, 32)).logits.shape == (2, len(ATTRIBUTES))


def test_token_ids_in_the_config_are_all_the_model_needs(backbones):
    """A model built from the config of another, with no tokenizer anywhere, computes the
    same text features: the ids are padded with the end token as the CLIP tokenizer pads."""
    from par_prompt.tiny_backbones import tiny_clip_tokenizer

    reference = build(backbones)
    rebuilt = PromptPARModel(reference.config)
    tokenizer = tiny_clip_tokenizer()
    padded = tokenizer(reference.config.sentences, padding="max_length", max_length=77)["input_ids"]
    assert rebuilt.sentence_ids.tolist() == padded
    rebuilt.load_state_dict(reference.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.text_features(), reference.text_features())


def test_token_ids_that_do_not_fit_the_clip_are_refused():
    config = PromptPARConfig(attributes=["Hat", "Bag"], clip_config=tiny_clip_config(), fusion_config=tiny_vit_config())
    model = PromptPARModel(config)
    with pytest.raises(ValueError, match="beyond the CLIP vocabulary"):
        model.set_sentence_token_ids([[1, 10**6, 2], [1, 2]])
    with pytest.raises(ValueError, match="no room in CLIP's 77 text positions for the sentence"):
        model.set_sentence_token_ids([[1] * 76, [1, 2]])
    assert model.config.sentence_token_ids is None and model.sentence_ids.shape == (2, 0)  # left as it was


def test_builds_on_the_meta_device():
    model = full_size(CLIP_VIT_L14_SIZES)
    assert all(p.device.type == "meta" for p in model.parameters())
    assert model.visual_length == 5 * 11 + 16 * 16 == 311


def test_vit_l14_parameter_budget():
    trainable, total = counts(full_size(CLIP_VIT_L14_SIZES))
    assert trainable <= 3.27e6, trainable
    assert trainable / total <= 0.0075, trainable / total


def test_vit_b16_parameter_budget():
    model = full_size(CLIP_VIT_B16_SIZES)
    trainable, _ = counts(model)
    assert trainable <= 2.30e6, trainable
    assert model.visual_length == 5 * 11 + 14 * 14  # 251: 197 CLIP tokens + 4 region tokens + 50 prompts


def test_only_method_parts_train(backbones):
    model = build(backbones)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    prompts = {
        "peft_clip.base_model.model.vision_model.embeddings.region_prompt_class_tokens.default",
        "peft_clip.base_model.model.vision_model.encoder.region_prompt_vision.default",
        "peft_clip.base_model.model.text_model.embeddings.region_prompt_text.default",
        "peft_clip.base_model.model.text_model.encoder.region_prompt_text_deep.default",
    }
    heads = {
        "text_projection.weight", "text_projection.bias", "visual_projection.weight", "visual_projection.bias",
        "fusion.norm.weight", "fusion.norm.bias", "heads.weight", "heads.bias", "heads.batch_norm.weight",
        "heads.batch_norm.bias", "aggregator.temperature", "aggregator.batch_norm.weight", "aggregator.batch_norm.bias",
    }
    assert trainable == prompts | heads
    assert {id(p) for p in model.prompt_parameters()} | {id(p) for p in model.head_parameters()} == {
        id(p) for p in model.parameters() if p.requires_grad
    }
    # The frozen parts: both CLIP towers, its projections and logit scale, the fusion layer.
    assert not model.clip_model.logit_scale.requires_grad
    assert not any(p.requires_grad for p in model.fusion.layers.parameters())


def test_fusion_layer_comes_from_the_last_vit_layer(backbones):
    from transformers import ViTModel

    from par_prompt.modeling.fusion import vit_layers

    vit = ViTModel.from_pretrained(backbones.vit, add_pooling_layer=False)
    model = build(backbones)
    for name, tensor in vit_layers(vit)[-1].state_dict().items():
        assert torch.equal(model.fusion.layers[0].state_dict()[name], tensor), name
    assert torch.equal(model.fusion.norm.weight, vit.layernorm.weight)


def test_mlp_instead_of_the_mm_former(backbones):
    model = build(backbones, fusion_layers=0)
    assert not hasattr(model.fusion, "layers")
    assert all(p.requires_grad for p in model.fusion.parameters())
    out = model.eval()(torch.randn(2, 3, 32, 32))
    assert out.logits.shape == (2, len(ATTRIBUTES))


