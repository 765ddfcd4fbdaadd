"""Deep visual prompts as keys and values only: the tuner's vision path against the
straightforward computation (every token of the full sequence through every layer),
outputs and gradients, for every depth, with and without regions, eager and sdpa, with
and without recorded hidden states and attention weights, with gradient checkpointing."""

import pytest
import torch
from peft import get_peft_model

from par_prompt import RegionPromptConfig, region_layout
from par_prompt.tuner import vision as vision_module
from par_prompt.tuner.vision import RegionTokenLayer

from .conftest import make_clip

LAYERS = 3


def prompted_tower(num_regions, depth, attn, seed=0):
    """A prompted CLIPVisionModel (3 layers, 8 x 8 patches) with every trainable tensor
    moved away from its initialisation."""
    config = RegionPromptConfig(num_regions=num_regions, prompts_per_group=2, vision_depth=depth)
    model = get_peft_model(make_clip("vision", attn=attn, seed=seed, vision_layers=LAYERS), config)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return model


def reference(tower, pixels, record=False):
    """The prompted vision tower computed literally (docs/method.md §2): the sequence
    [CLS, P_g, CLS_1, P_1, ..., patches] of full length enters every layer, the prompt
    slots are overwritten before each prompted layer, the region mask applies everywhere.

    Returns (last_hidden_state, pooled, hidden states, attention weights); the last two
    only with ``record`` (weights from the eager formula, whatever the model's setting).
    """
    embeddings, encoder = tower.embeddings, tower.encoder
    settings = encoder.prompt_settings["default"]
    num_regions, m, depth = settings.num_regions, settings.prompts_per_group, settings.depth
    prompts = encoder.region_prompt_vision["default"]  # (depth, K + 1, m, w)
    base = embeddings.base_layer(pixels) if isinstance(embeddings, RegionTokenLayer) else embeddings(pixels)
    batch, width = base.shape[0], base.shape[-1]
    class_tokens = base[:, :1]
    if num_regions:
        region_tokens = embeddings.region_prompt_class_tokens["default"]
        class_tokens = torch.cat([class_tokens, region_tokens.expand(batch, -1, -1)], dim=1)
    ordinary = tower.pre_layrnorm(torch.cat([class_tokens, base[:, 1:]], dim=1))

    def with_prompts(layer_prompts, class_part, patch_part):
        pieces = []
        for group in range(num_regions + 1):
            pieces += [class_part[:, group : group + 1], layer_prompts[group].expand(batch, m, width)]
        return torch.cat(pieces + [patch_part], dim=1)

    hidden = with_prompts(prompts[0], ordinary[:, : num_regions + 1], ordinary[:, num_regions + 1 :])
    grid = int((base.shape[1] - 1) ** 0.5)
    layout = region_layout(grid, num_regions, 2, m)
    assert layout.length == hidden.shape[1]
    mask = None
    if num_regions:
        mask = torch.zeros(layout.length, layout.length).masked_fill(~layout.mask, torch.finfo(torch.float32).min)
        mask = mask[None, None]
    states, weights = [hidden], []
    group = m + 1
    for index, layer in enumerate(encoder.base_layer.layers):
        if 0 < index < depth:
            offset = (num_regions + 1) * group
            hidden = with_prompts(prompts[index], hidden[:, :offset:group], hidden[:, offset:])
        if record:
            attention = layer.self_attn
            normed = layer.layer_norm1(hidden)
            q = attention.q_proj(normed).unflatten(-1, (-1, attention.head_dim)).transpose(1, 2)
            k = attention.k_proj(normed).unflatten(-1, (-1, attention.head_dim)).transpose(1, 2)
            scores = q @ k.transpose(-1, -2) * attention.scale
            weights.append(torch.softmax(scores + (0 if mask is None else mask), dim=-1))
        hidden = layer(hidden, mask)
        states.append(hidden)
    return hidden, tower.post_layernorm(hidden[:, 0]), states, weights


def trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


def objective(last_hidden_state, pooled):
    """A scalar that weighs every output token differently."""
    generator = torch.Generator().manual_seed(11)
    weights = torch.randn(last_hidden_state.shape[1:], generator=generator)
    return (last_hidden_state * weights).sum() + pooled.square().sum()


@pytest.mark.parametrize("record", [None, "hidden_states", "attentions"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("num_regions", [0, 4])
@pytest.mark.parametrize("depth", [1, 2, None])
def test_outputs_and_gradients_equal_the_straightforward_computation(depth, num_regions, attn, record, pixels):
    model = prompted_tower(num_regions, depth, attn)
    model.train()  # gradients as in training (the tower has no dropout)
    tower = model.get_base_model()
    pixels = pixels.clone().requires_grad_(True)  # gradients reach the input too
    flags = {f"output_{record}": True} if record else {}
    out = model(pixel_values=pixels, **flags)
    expected, expected_pooled, states, weights = reference(tower, pixels, record=record is not None)

    torch.testing.assert_close(out.last_hidden_state, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.pooler_output, expected_pooled, rtol=1e-5, atol=1e-5)
    inputs = trainable(model) + [pixels]
    got = torch.autograd.grad(objective(out.last_hidden_state, out.pooler_output), inputs)
    want = torch.autograd.grad(objective(expected, expected_pooled), inputs)
    for name, g, w in zip([n for n, p in model.named_parameters() if p.requires_grad] + ["pixels"], got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5, msg=lambda text: f"gradient of {name}: {text}")
    if record == "hidden_states":
        assert len(out.hidden_states) == LAYERS + 1
        for index, (g, w) in enumerate(zip(out.hidden_states, states)):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5, msg=lambda text: f"hidden state {index}: {text}")
    if record == "attentions" and attn == "eager":
        assert len(out.attentions) == LAYERS
        for g, w in zip(out.attentions, weights):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("num_regions", [0, 4])
def test_no_grad_and_inference_mode_match_the_reference(num_regions, pixels):
    model = prompted_tower(num_regions, None, "sdpa")
    with torch.no_grad():
        expected = reference(model.get_base_model(), pixels)[0]
        plain = model(pixel_values=pixels).last_hidden_state
        recorded = model(pixel_values=pixels, output_hidden_states=True)
    with torch.inference_mode():
        inference = model(pixel_values=pixels).last_hidden_state
    for got in (plain, recorded.last_hidden_state, inference):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_prompt_outputs_are_skipped_in_all_prompted_layers_but_the_last(pixels, monkeypatch):
    """The MLP of layers 0 .. depth-2 sees only the K + 1 class tokens and the patches."""
    calls = []
    real = vision_module.keys_values_layer
    monkeypatch.setattr(vision_module, "keys_values_layer", lambda *a: calls.append(a[1].shape) or real(*a))
    model = prompted_tower(4, None, "sdpa")
    tokens = []
    for layer in model.get_base_model().encoder.base_layer.layers:
        layer.mlp.register_forward_hook(lambda module, args, out: tokens.append(args[0].shape[1]))
    with torch.no_grad():
        model(pixel_values=pixels)
    ordinary, full = 5 + 64, 5 * 3 + 64
    assert tokens == [ordinary, ordinary, full] and len(calls) == 2
    tokens.clear()
    with torch.no_grad():
        model(pixel_values=pixels, output_hidden_states=True)  # every layer's full output is asked for
    assert tokens == [full, full, full] and len(calls) == 2


def test_a_hook_on_a_layer_is_honoured(pixels):
    """A hook on an encoder layer (or its attention) sees that layer's full sequence."""
    model = prompted_tower(4, None, "eager")
    layer = model.get_base_model().encoder.base_layer.layers[0]
    seen = {}
    layer.register_forward_hook(lambda module, args, out: seen.update(layer=(args[0].clone(), out.clone())))
    layer.self_attn.register_forward_hook(lambda module, args, out: seen.update(attention=out[1].clone()))
    with torch.no_grad():
        got = model(pixel_values=pixels).last_hidden_state
        seen_by_model = dict(seen)
        expected, _, states, weights = reference(model.get_base_model(), pixels, record=True)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(seen_by_model["layer"][0], states[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(seen_by_model["layer"][1], states[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(seen_by_model["attention"], weights[0], rtol=1e-5, atol=1e-5)


def test_hidden_states_keep_each_layers_own_prompt_outputs(pixels):
    """Without autograd, the prompt overwrite must not write into the previous layer's
    output: hidden_states[l] holds layer l-1's own outputs in the prompt slots."""
    model = prompted_tower(4, None, "sdpa")
    with torch.no_grad():
        out = model(pixel_values=pixels, output_hidden_states=True)
        states = reference(model.get_base_model(), pixels, record=True)[2]
    prompts = model.get_base_model().encoder.region_prompt_vision["default"]
    slots = region_layout(8, 4, 2, 2).prompt_indices(0)
    for index in (1, 2):
        torch.testing.assert_close(out.hidden_states[index], states[index], rtol=1e-5, atol=1e-5)
        # layer index - 1's output differs from the prompts written over it before layer index
        assert (out.hidden_states[index][:, slots] - prompts[index][0]).abs().max() > 1e-3


@pytest.mark.parametrize("use_reentrant", [False, True])
@pytest.mark.parametrize("depth", [2, None])
def test_gradient_checkpointing_gives_the_same_gradients_and_recomputes(depth, use_reentrant, pixels):
    results = []
    for checkpointing in (False, True):
        model = prompted_tower(4, depth, "sdpa")
        tower = model.get_base_model()
        if checkpointing:
            tower.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": use_reentrant})
        model.train()
        calls = []
        for layer in tower.encoder.base_layer.layers:
            # a pre-hook: the recomputation stops early once it has what backward needs
            layer.mlp.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[1]))
        out = model(pixel_values=pixels)
        forward_calls = len(calls)
        objective(out.last_hidden_state, out.pooler_output).backward()
        grads = [p.grad.clone() for p in trainable(model)]
        results.append((out.last_hidden_state.detach(), grads, forward_calls, len(calls)))
    (plain, plain_grads, plain_forward, plain_total), (ckpt, ckpt_grads, ckpt_forward, ckpt_total) = results
    torch.testing.assert_close(ckpt, plain, rtol=1e-6, atol=1e-6)
    for g, w in zip(ckpt_grads, plain_grads):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
        assert w.abs().sum() > 0
    assert plain_forward == plain_total == ckpt_forward == LAYERS
    assert ckpt_total == 2 * LAYERS  # every layer, the keys/values-only ones included, ran again in backward


def test_masks_built_under_inference_mode_serve_autograd(pixels):
    """A mask first built under inference mode is not an inference tensor: a later
    forward with autograd on the same model works."""
    model = prompted_tower(4, None, "sdpa")
    with torch.inference_mode():
        model(pixel_values=pixels)
    model.train()
    out = model(pixel_values=pixels)
    objective(out.last_hidden_state, out.pooler_output).backward()
    assert all(p.grad is not None for p in trainable(model))


def test_layers_skip_outputs_in_bf16_autocast(pixels):
    model = prompted_tower(4, None, "sdpa")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = model(pixel_values=pixels).last_hidden_state
        expected = reference(model.get_base_model(), pixels)[0]
    torch.testing.assert_close(got.float(), expected.float(), rtol=0.05, atol=0.05)
