"""PromptPARModel.gradient_checkpointing_enable(): same loss and gradients, layers really
recomputed in backward, far fewer activations kept."""

import warnings

import pytest
import torch

from .conftest import build, trained


def step(model, pixels, labels):
    """One training forward and backward: (loss, gradients, MLP runs in forward and in
    total, bytes of tensors saved for backward)."""
    runs = []
    for name, module in model.named_modules():
        if name.endswith(".mlp"):  # every CLIP encoder layer (both towers) and fusion layer
            # a pre-hook: a checkpoint's recomputation stops early once backward has what it needs
            module.register_forward_pre_hook(lambda module, args: runs.append(1))
    saved = []

    def pack(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(pixels, labels=labels).loss
    forward_runs = len(runs)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads, forward_runs, len(runs), sum(saved)


@pytest.mark.parametrize("kwargs", [{}, {"gradient_checkpointing_kwargs": {"use_reentrant": True}}])
def test_same_gradients_and_really_checkpointed(backbones, pixels, labels, kwargs):
    plain_model = trained(build(backbones)).train()
    checkpointed = trained(build(backbones)).train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers 5 prefers activation_checkpointing_enable
        checkpointed.gradient_checkpointing_enable(**kwargs)
    loss, grads, forward_runs, total_runs, saved = step(plain_model, pixels, labels)
    ckpt_loss, ckpt_grads, ckpt_forward_runs, ckpt_total_runs, ckpt_saved = step(checkpointed, pixels, labels)

    torch.testing.assert_close(ckpt_loss, loss, rtol=1e-6, atol=1e-6)
    assert grads.keys() == ckpt_grads.keys() and grads
    for name, grad in grads.items():
        torch.testing.assert_close(ckpt_grads[name], grad, rtol=1e-5, atol=1e-6, msg=lambda text: f"{name}: {text}")
    layers = 2 + 2 + 1  # vision, text, fusion
    assert forward_runs == total_runs == ckpt_forward_runs == layers
    assert ckpt_total_runs == 2 * layers  # each layer ran again in backward
    assert ckpt_saved < 0.5 * saved
