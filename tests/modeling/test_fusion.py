"""The MM-Former computes only the outputs the heads read: the first N tokens of its last
layer, equal (outputs and gradients) to the full layers' outputs cut to N."""

from functools import partial

import pytest
import torch

from par_prompt.modeling.fusion import MMFormer, SequenceMLP
from par_prompt.tiny_backbones import tiny_vit_config


def fusion(layers, attn):
    config = tiny_vit_config(fusion_layers=layers)
    config._attn_implementation = attn
    torch.manual_seed(0)
    return MMFormer(config, layers).train()


def full_then_cut(model, tokens, count):
    """The reference: every token through every layer, then the final norm, then the cut."""
    for layer in model.layers:
        tokens = layer(tokens)
    return model.norm(tokens)[:, :count]


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("layers", [1, 2])
def test_first_outputs_equal_the_full_computation(layers, attn):
    model = fusion(layers, attn)
    tokens = torch.randn(3, 20, 48, generator=torch.Generator().manual_seed(1), requires_grad=True)
    calls = []
    model.layers[-1].mlp.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[1]))
    got = model(tokens, num_outputs=5)
    assert calls == [5]  # the last layer's MLP ran on the 5 leading tokens only
    expected = full_then_cut(model, tokens, 5)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    weights = torch.randn(got.shape, generator=torch.Generator().manual_seed(2))
    inputs = [tokens, model.norm.weight, model.norm.bias]
    for g, w in zip(torch.autograd.grad((got * weights).sum(), inputs),
                    torch.autograd.grad((expected * weights).sum(), inputs)):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model(tokens), full_then_cut(model, tokens, 20))


def test_a_hooked_attention_sees_every_token():
    """visualize reads the last fusion attention's input through a hook."""
    model = fusion(1, "sdpa")
    tokens = torch.randn(2, 20, 48)
    seen = []
    model.layers[-1].attention.register_forward_hook(lambda module, args, out: seen.append(args[0].shape))
    with torch.no_grad():
        got = model(tokens, num_outputs=5)
        expected = full_then_cut(model, tokens, 5)
    assert seen[0] == (2, 20, 48)
    torch.testing.assert_close(got, expected)


def test_gradient_checkpointing_recomputes_the_shortened_layer():
    model = fusion(1, "sdpa")
    model.layers[0].gradient_checkpointing = True
    model.layers[0]._gradient_checkpointing_func = partial(torch.utils.checkpoint.checkpoint, use_reentrant=False)
    calls = []
    model.layers[0].mlp.register_forward_pre_hook(lambda module, args: calls.append(1))
    tokens = torch.randn(2, 20, 48, requires_grad=True)
    model(tokens, num_outputs=5).sum().backward()
    assert len(calls) == 2 and tokens.grad is not None


def test_sequence_mlp_first_outputs():
    model = SequenceMLP(20, 48)
    tokens = torch.randn(2, 20, 48)
    torch.testing.assert_close(model(tokens, num_outputs=5), model(tokens)[:, :5])
