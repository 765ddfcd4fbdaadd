"""Every tensor of an official checkpoint has its place; anything else is refused by name."""

from __future__ import annotations

import pytest
import torch

from par_prompt.official import OFFICIAL_TABLES, OfficialCheckpointError, convert, read_layout
from par_prompt.official.importer import build_model, openai_clip_for
from par_prompt.backbone_sizes import CLIP_VIT_L14_SIZES

from .builders import official_classifier_state, official_clip_state


def _clip_blocks(prefix: str, layers: int, width: int) -> dict[str, tuple]:
    shapes = {}
    for i in range(layers):
        p = f"{prefix}{i}."
        shapes.update({
            p + "attn.in_proj_weight": (3 * width, width), p + "attn.in_proj_bias": (3 * width,),
            p + "attn.out_proj.weight": (width, width), p + "attn.out_proj.bias": (width,),
            p + "ln_1.weight": (width,), p + "ln_1.bias": (width,),
            p + "ln_2.weight": (width,), p + "ln_2.bias": (width,),
            p + "mlp.c_fc.weight": (4 * width, width), p + "mlp.c_fc.bias": (4 * width,),
            p + "mlp.c_proj.weight": (width, 4 * width), p + "mlp.c_proj.bias": (width,),
        })
    return shapes


def vit_l14_official_shapes(attributes: int = 26) -> tuple[dict, dict]:
    """Names and shapes of a full-size official checkpoint: the published command on CLIP ViT-L/14
    (50 visual prompts in 24 layers, 4 regions, 3 text prompts, GL aggregator, one ViT-B/16 block)."""
    clip = {
        "visual.class_embedding": (1024,), "visual.positional_embedding": (257, 1024),
        "visual.part_class_embedding": (4, 1024), "visual.conv1.weight": (1024, 3, 14, 14),
        "visual.ln_pre.weight": (1024,), "visual.ln_pre.bias": (1024,),
        "visual.transformer.prompt_deep": (24, 50, 1, 1024),
        "visual.ln_post.weight": (1024,), "visual.ln_post.bias": (1024,), "visual.proj": (1024, 768),
        "positional_embedding": (77, 768), "text_projection": (768, 768), "logit_scale": (),
        "token_embedding.weight": (49408, 768), "ln_final.weight": (768,), "ln_final.bias": (768,),
        "transformer.prompt_text_deep": (12, 3, attributes, 768),
        "softmax_model.temperature": (), "agg_bn.weight": (attributes,), "agg_bn.bias": (attributes,),
        "agg_bn.running_mean": (attributes,), "agg_bn.running_var": (attributes,), "agg_bn.num_batches_tracked": (),
        **_clip_blocks("visual.transformer.resblocks.", 24, 1024), **_clip_blocks("transformer.resblocks.", 12, 768),
    }
    classifier = {
        "word_embed.weight": (768, 768), "word_embed.bias": (768,), "visual_embed.weight": (768, 768),
        "visual_embed.bias": (768,), "norm.weight": (768,), "norm.bias": (768,),
        "bn.weight": (attributes,), "bn.bias": (attributes,), "bn.running_mean": (attributes,),
        "bn.running_var": (attributes,), "bn.num_batches_tracked": (),
        "blocks.0.norm1.weight": (768,), "blocks.0.norm1.bias": (768,), "blocks.0.attn.qkv.weight": (2304, 768),
        "blocks.0.attn.qkv.bias": (2304,), "blocks.0.attn.proj.weight": (768, 768), "blocks.0.attn.proj.bias": (768,),
        "blocks.0.norm2.weight": (768,), "blocks.0.norm2.bias": (768,), "blocks.0.mlp.fc1.weight": (3072, 768),
        "blocks.0.mlp.fc1.bias": (3072,), "blocks.0.mlp.fc2.weight": (768, 3072), "blocks.0.mlp.fc2.bias": (768,),
    }
    for i in range(attributes):
        classifier[f"weight_layer.{i}.weight"] = (1, 768)
        classifier[f"weight_layer.{i}.bias"] = (1,)
    return clip, classifier


def on_meta(shapes: dict) -> dict:
    integer = ("num_batches_tracked",)
    return {name: torch.empty(shape, device="meta", dtype=torch.long if name.endswith(integer) else torch.float16)
            for name, shape in shapes.items()}


def test_full_size_vit_l14_checkpoint_maps_completely():
    clip, classifier = (on_meta(s) for s in vit_l14_official_shapes())
    layout = read_layout(clip, classifier)
    assert (layout.vision_width, layout.vision_layers, layout.patch_size, layout.image_size) == (1024, 24, 14, 224)
    assert (layout.text_width, layout.text_layers, layout.vocab_size, layout.projection_dim) == (768, 12, 49408, 768)
    assert (layout.num_regions, layout.prompts_per_group, layout.vision_depth) == (4, 10, 24)
    assert (layout.fusion_width, layout.fusion_layers, layout.fusion_mlp, layout.num_attributes) == (768, 1, 3072, 26)
    assert layout.has_aggregator and openai_clip_for(layout) == "openai/clip-vit-large-patch14"

    weights = convert(clip, classifier, layout)  # raises if any tensor were left unused
    assert weights.dropped == {"transformer.prompt_text_deep": (12, 3, 26, 768)}
    table = OFFICIAL_TABLES["pa100k"]
    model = build_model(layout, weights, table.attributes, table.sentences, device="meta")  # raises if any
    # model tensor were not filled from the checkpoint

    clip_config = model.clip_model.config
    for tower, sizes in (("vision_config", CLIP_VIT_L14_SIZES["vision"]), ("text_config", CLIP_VIT_L14_SIZES["text"])):
        config = getattr(clip_config, tower)
        assert {key: getattr(config, key) for key in sizes} == sizes
    assert clip_config.projection_dim == CLIP_VIT_L14_SIZES["projection_dim"]
    assert [tuple(p.shape) for p in model.prompt_parameters()] == [(4, 1024), (24, 5, 10, 1024)]
    assert tuple(model.heads.weight.shape) == (26, 768) and model.visual_length == 311
    assert len(model.fusion.layers) == 1 and model.fusion.norm.eps == 1e-6
    # The HF CLIP receives every official CLIP tensor but the prompts, region tokens, aggregator and text prompts.
    plain = {k for k in clip if not k.startswith(("visual.transformer.prompt_deep", "visual.part_class_embedding",
                                                 "softmax_model", "agg_bn", "transformer.prompt_text_deep"))}
    in_proj = sum(k.endswith("in_proj_weight") or k.endswith("in_proj_bias") for k in plain)
    assert len(weights.clip) == len(plain) + 2 * in_proj  # each fused in-projection becomes q, k and v


def test_prompts_keep_the_official_group_order(sizes):
    clip, classifier = official_clip_state(sizes), official_classifier_state(sizes)
    weights = convert(clip, classifier)
    m = sizes.prompts_per_group
    official = clip["visual.transformer.prompt_deep"].float()
    for layer in range(sizes.depth):
        for group in range(sizes.regions + 1):
            for i in range(m):
                assert torch.equal(weights.prompts[layer, group, i], official[layer, group * m + i, 0])


def test_fused_projections_are_split_in_q_k_v_order(sizes):
    clip, classifier = official_clip_state(sizes), official_classifier_state(sizes)
    weights = convert(clip, classifier)
    w = sizes.vision_width
    fused = clip["visual.transformer.resblocks.1.attn.in_proj_weight"].float()
    for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
        split = weights.clip[f"vision_model.encoder.layers.1.self_attn.{name}.weight"]
        assert torch.equal(split, fused[i * w:(i + 1) * w])
    assert torch.equal(weights.clip["visual_projection.weight"], clip["visual.proj"].float().T)
    f = sizes.fusion_width
    qkv = classifier["blocks.0.attn.qkv.bias"]
    assert torch.equal(weights.fusion["layers.0.attention.v_proj.bias"], qkv[2 * f:])


def _mutated(case, sizes):
    clip, classifier = official_clip_state(sizes), official_classifier_state(sizes)
    if case == "missing":
        del clip["visual.ln_post.bias"]
    elif case == "unknown-clip":
        clip["visual.transformer.adapter_scale"] = torch.ones(3)
    elif case == "unknown-classifier":
        classifier["head_dropout.p"] = torch.ones(1)
    elif case == "shape":
        clip["text_projection"] = torch.zeros(sizes.text_width, sizes.projection + 1)
    elif case == "linear-fusion":
        classifier["linear_layer.weight"] = torch.zeros(26, 300)
    elif case == "regions":
        clip["visual.part_class_embedding"] = torch.zeros(3, sizes.vision_width)
    elif case == "heads":
        del classifier["weight_layer.25.weight"], classifier["weight_layer.25.bias"]
    elif case == "resnet":
        del clip["visual.proj"]
    return clip, classifier


@pytest.mark.parametrize("case, message", [
    ("missing", r"no 'visual\.ln_post\.bias'"),
    ("unknown-clip", r"visual\.transformer\.adapter_scale \(3,\)"),
    ("unknown-classifier", r"head_dropout\.p"),
    ("shape", r"'text_projection' has shape \(128, 33\)"),
    ("linear-fusion", r"--use_mm_former"),
    ("regions", r"3 regions"),
    ("heads", r"25 attribute heads .* BatchNorm over 26"),
    ("resnet", r"not a ViT CLIP"),
])
def test_checkpoints_that_cannot_be_mapped_exactly(case, message, sizes):
    clip, classifier = _mutated(case, sizes)
    with pytest.raises(OfficialCheckpointError, match=message):
        convert(clip, classifier)
