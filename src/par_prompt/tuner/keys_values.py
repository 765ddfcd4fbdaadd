"""Deep prompts as keys and values only: one CLIP encoder layer without its prompt outputs.

Before every prompted layer l < D the prompt slots are overwritten with layer l's prompts
(docs/method.md §2). So in every prompted layer but the last, what the layer computes for
the prompt slots themselves (their queries, attention outputs, output projection and MLP)
is thrown away; the only thing the other tokens read from the prompts is their keys and
values. :func:`keys_values_layer` runs one ``CLIPEncoderLayer`` that way:

* the ordinary tokens (class tokens and patches) go through the whole layer;
* the prompts go through the layer's first LayerNorm and its key and value projections
  only, once for the whole batch (they are the same for every image);
* the ordinary tokens attend to their own keys followed by the prompts' keys, under the
  matching columns of the region mask.

It calls the layer's own submodules in the layer's own order (``layer_norm1``,
``self_attn.{q,k,v,out}_proj``, the attention function of ``config._attn_implementation``,
``layer_norm2``, ``mlp``), so it gives what the whole layer gives for those tokens, up to
float rounding. :func:`can_skip_prompt_outputs` says when a caller may use it: not while
transformers records hidden states or attention weights (they need every token of every
layer), and not on a layer whose own forward or attention forward a hook or a wrapper
(accelerate's offloading, FSDP) must see.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Optional

import torch
from torch.nn.modules import module as torch_module
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.clip.modeling_clip import CLIPAttention, CLIPEncoderLayer, eager_attention_forward

try:  # where transformers keeps the outputs its hooks are recording in this context
    from transformers.utils.output_capturing import _active_collector
except ImportError:  # another layout: assume outputs may be recorded, and take the full path
    _active_collector = None

ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa")
CAPTURE_HOOKS_MODULE = "transformers.utils.output_capturing"
RECORDING_FLAGS = ("output_attentions", "output_hidden_states")


def recording_outputs(kwargs: dict[str, Any]) -> bool:
    """Whether this forward records per-layer outputs (``output_hidden_states`` or
    ``output_attentions``, passed or set in the config)."""
    if any(kwargs.get(flag) for flag in RECORDING_FLAGS):
        return True
    if _active_collector is None:
        return True
    return bool(_active_collector.get())


def _hooks(module: torch.nn.Module) -> list:
    names = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return [hook for name in names for hook in getattr(module, name, {}).values()]


def _global_hooks() -> bool:
    names = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
             "_global_backward_pre_hooks")
    return any(getattr(torch_module, name, None) for name in names)


def watched(*modules: torch.nn.Module) -> bool:
    """Whether something must see these modules' own forward run: a forward or backward
    hook on one of them (transformers' output-recording hooks excepted: they record
    nothing unless :func:`recording_outputs`), a global module hook, or a forward replaced
    on the instance (accelerate's offloading does that)."""
    if _global_hooks():
        return True
    for module in modules:
        if "forward" in vars(module) or hasattr(module, "_hf_hook"):
            return True
        if any(getattr(hook, "__module__", None) != CAPTURE_HOOKS_MODULE for hook in _hooks(module)):
            return True
    return False


def can_skip_prompt_outputs(layer: torch.nn.Module) -> bool:
    """Whether :func:`keys_values_layer` may stand in for ``layer``'s own forward: a plain
    ``CLIPEncoderLayer`` with eager or sdpa attention, the layer and its attention not
    :func:`watched`. Hooks on the submodules it calls (layer norms, projections, MLP)
    run as usual."""
    attention = getattr(layer, "self_attn", None)
    if type(layer) is not CLIPEncoderLayer or type(attention) is not CLIPAttention:
        return False
    return attention.config._attn_implementation in ATTENTION_IMPLEMENTATIONS and not watched(layer, attention)


def split_heads(tensor: torch.Tensor, head_dim: int) -> torch.Tensor:
    """(B, T, width) -> (B, heads, T, head_dim)."""
    return tensor.unflatten(-1, (-1, head_dim)).transpose(1, 2)


def _layer_forward(layer: CLIPEncoderLayer, hidden: torch.Tensor, prompts: torch.Tensor,
                   mask: Optional[torch.Tensor]) -> torch.Tensor:
    attention = layer.self_attn
    batch, length, _ = hidden.shape
    residual = hidden
    normed = layer.layer_norm1(hidden)  # (B, T, w)
    prompt_normed = layer.layer_norm1(prompts.to(hidden.dtype))  # (P, w): once for the whole batch

    def keys_of(projection):
        own, shared = projection(normed), projection(prompt_normed)
        return split_heads(torch.cat([own, shared.expand(batch, -1, -1)], dim=1), attention.head_dim)

    queries = split_heads(attention.q_proj(normed), attention.head_dim)
    keys, values = keys_of(attention.k_proj), keys_of(attention.v_proj)
    attend = ALL_ATTENTION_FUNCTIONS.get_interface(attention.config._attn_implementation, eager_attention_forward)
    attended, _ = attend(attention, queries, keys, values, mask, scaling=attention.scale,
                         dropout=attention.dropout if attention.training else 0.0)
    hidden = residual + attention.out_proj(attended.reshape(batch, length, -1).contiguous())
    return hidden + layer.mlp(layer.layer_norm2(hidden))


def keys_values_layer(layer: CLIPEncoderLayer, hidden: torch.Tensor, prompts: torch.Tensor,
                      mask: Optional[torch.Tensor]) -> torch.Tensor:
    """``layer`` on the ordinary tokens, with the prompts as extra keys and values only.

    Args:
        layer: a ``CLIPEncoderLayer`` for which :func:`can_skip_prompt_outputs` holds.
        hidden: (B, T, w), the ordinary tokens (no prompt slots).
        prompts: (P, w), this layer's prompts, the same for every image.
        mask: None, or an additive mask (1, 1, T, T + P) whose columns are the T ordinary
            tokens followed by the P prompts.

    Returns:
        (B, T, w): what ``layer`` gives for the ordinary tokens of the full sequence.

    Under the layer's gradient checkpointing the call is checkpointed (:func:`like_layer`).
    """
    return like_layer(layer, partial(_layer_forward, layer, mask=mask), hidden, prompts)


def like_layer(layer: torch.nn.Module, function, *tensors: torch.Tensor) -> torch.Tensor:
    """``function(*tensors)`` standing in for ``layer``'s forward: checkpointed with the
    layer's own checkpoint function when its forward would be (gradient checkpointing
    enabled, training, autograd on)."""
    if getattr(layer, "gradient_checkpointing", False) and layer.training and torch.is_grad_enabled():
        return layer._gradient_checkpointing_func(function, *tensors)
    return function(*tensors)
