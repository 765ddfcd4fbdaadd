"""Region-aware deep prompts on the CLIP vision tower."""

import pytest
import torch
from peft import get_peft_model

import par_prompt
from par_prompt import RegionPromptConfig
from par_prompt.tuner import vision as vision_module
from par_prompt.tuner.vision import VisionPromptLayer

from .conftest import make_clip


def prompted(model, **config):
    config.setdefault("prompts_per_group", 2)
    return get_peft_model(model, RegionPromptConfig(**config))


def encoder_layer(peft_model) -> VisionPromptLayer:
    return next(m for m in peft_model.modules() if isinstance(m, VisionPromptLayer))


def test_sequence_layout_and_pooled_output(pixels):
    model = prompted(make_clip("vision"))
    out = model(pixel_values=pixels)
    # G = 32 / 4 = 8; (K + 1) * (m + 1) + G * G = 5 * 3 + 64
    assert out.last_hidden_state.shape == (2, 79, 32)
    base = model.get_base_model()
    expected_pool = base.post_layernorm(out.last_hidden_state[:, 0])
    torch.testing.assert_close(out.pooler_output, expected_pool)


def test_region_tokens_only_see_their_region():
    """One layer: region j's tokens depend on region j's pixels and on nothing else."""
    model = prompted(make_clip("vision", vision_layers=1), vision_depth=1)
    layout = par_prompt.region_layout(8, 4, 2, 2)
    torch.manual_seed(0)
    image = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        reference = model(pixel_values=image).last_hidden_state
    for region, (first, last) in enumerate(layout.region_rows, start=1):
        group = slice(region * layout.group_size, (region + 1) * layout.group_size)
        rows = torch.arange(32) // 4
        inside = (rows >= first) & (rows <= last)
        outside_changed, inside_changed = image.clone(), image.clone()
        outside_changed[:, :, ~inside] += 3.0
        inside_changed[:, :, inside] += 3.0
        with torch.no_grad():
            out_outside = model(pixel_values=outside_changed).last_hidden_state
            out_inside = model(pixel_values=inside_changed).last_hidden_state
        torch.testing.assert_close(out_outside[:, group], reference[:, group], rtol=0, atol=1e-6)
        assert (out_inside[:, group] - reference[:, group]).abs().max() > 1e-3
        # The global class token sees everything, so it changes either way.
        assert (out_outside[:, 0] - reference[:, 0]).abs().max() > 1e-3


def test_eager_and_sdpa_agree(pixels):
    outputs = []
    for attn in ("eager", "sdpa"):
        model = prompted(make_clip("vision", attn=attn, seed=3))
        torch.manual_seed(5)
        for p in model.parameters():
            if p.requires_grad:
                torch.nn.init.normal_(p)
        with torch.no_grad():
            outputs.append(model(pixel_values=pixels).last_hidden_state)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)


def test_mask_is_built_once_per_shape(pixels, monkeypatch):
    calls = []
    real = vision_module.region_layout
    monkeypatch.setattr(vision_module, "region_layout", lambda *a: calls.append(a) or real(*a))
    model = prompted(make_clip("vision"))
    with torch.no_grad():
        for _ in range(3):
            model(pixel_values=pixels)
        assert len(calls) == 1
        model(pixel_values=torch.randn(1, 3, 48, 48), interpolate_pos_encoding=True)  # a 12 x 12 grid
    assert len(calls) == 2 and len(encoder_layer(model)._mask_cache) == 2


def test_batch_rows_are_independent(pixels):
    model = prompted(make_clip("vision"))
    with torch.no_grad():
        both = model(pixel_values=pixels).last_hidden_state
        second = model(pixel_values=pixels[1:]).last_hidden_state
    torch.testing.assert_close(both[1:], second, rtol=1e-5, atol=1e-6)


def test_bf16_autocast_on_cpu(pixels):
    model = prompted(make_clip("vision"))
    with torch.no_grad():
        full = model(pixel_values=pixels).pooler_output
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(pixel_values=pixels).pooler_output
    assert torch.isfinite(half).all()
    torch.testing.assert_close(half.float(), full, rtol=0.1, atol=0.1)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_bf16_model_and_prompts(pixels, attn):
    model = make_clip("vision", attn=attn).to(torch.bfloat16)
    peft_model = get_peft_model(model, RegionPromptConfig(prompts_per_group=2), autocast_adapter_dtype=False)
    prompts = [p for p in peft_model.parameters() if p.requires_grad]
    assert prompts and all(p.dtype == torch.bfloat16 for p in prompts)
    out = peft_model(pixel_values=pixels.to(torch.bfloat16)).last_hidden_state
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_prompts_are_created_on_the_base_device():
    with torch.device("meta"):
        model = make_clip("vision")
        peft_model = get_peft_model(model, RegionPromptConfig(prompts_per_group=2))
    assert all(p.device.type == "meta" for p in peft_model.parameters())


def test_gradient_checkpointing_gives_the_same_gradients(pixels):
    grads = []
    for checkpointing in (False, True):
        model = prompted(make_clip("vision", vision_layers=3))
        if checkpointing:
            model.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        model(pixel_values=pixels).pooler_output.square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-7)
        assert grads[0][name].abs().sum() > 0


def test_deep_and_shallow_prompts(pixels):
    deep = prompted(make_clip("vision", vision_layers=3))
    shallow = prompted(make_clip("vision", vision_layers=3), vision_depth=1)
    assert encoder_layer(deep).region_prompt_vision["default"].shape == (3, 5, 2, 32)
    assert encoder_layer(shallow).region_prompt_vision["default"].shape == (1, 5, 2, 32)
    # Every prompted layer matters: changing layer l's prompts changes the output.
    with torch.no_grad():
        reference = deep(pixel_values=pixels).pooler_output
        for layer in range(3):
            prompts = encoder_layer(deep).region_prompt_vision["default"]
            prompts[layer] += torch.randn_like(prompts[layer])  # not a constant: layer norms remove those
            changed = deep(pixel_values=pixels).pooler_output
            assert (changed - reference).abs().max() > 1e-4
            reference = changed


def test_no_regions_is_vpt_deep(pixels):
    model = prompted(make_clip("vision"), num_regions=0, prompts_per_group=3)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names == ["base_model.model.encoder.region_prompt_vision.default"]
    out = model(pixel_values=pixels)
    assert out.last_hidden_state.shape == (2, 4 + 64, 32)


def test_vision_forward_compiles(pixels):
    model = prompted(make_clip("vision"))
    tower = model.get_base_model()
    with torch.no_grad():
        expected = tower(pixel_values=pixels).pooler_output
        compiled = torch.compile(tower, backend="aot_eager", fullgraph=True)
        got = compiled(pixel_values=pixels).pooler_output
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
