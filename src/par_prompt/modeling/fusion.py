"""The MM-Former: text and visual tokens fused by frozen ViT layers (docs/method.md §4).

Only the first N output tokens (one per attribute) feed the heads. So the last fusion
layer computes queries, attention outputs, output projection and MLP for those N tokens
only; every token still gives its keys and values (:func:`leading_outputs_layer`).
"""

from __future__ import annotations

from functools import partial
from typing import Optional

import torch
from torch import nn
from transformers import ViTConfig, ViTModel
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.vit.modeling_vit import ViTAttention, ViTLayer, eager_attention_forward

from ..tuner.keys_values import ATTENTION_IMPLEMENTATIONS, like_layer, split_heads, watched


def vit_layers(vit: ViTModel) -> nn.ModuleList:
    """The encoder layers of a ViTModel (``layers`` in transformers >= 5.2x, ``encoder.layer`` before)."""
    layers = getattr(vit, "layers", None)
    return layers if layers is not None else vit.encoder.layer


def can_skip_outputs(layer: nn.Module) -> bool:
    """Whether :func:`leading_outputs_layer` may stand in for ``layer``'s own forward: a
    plain ``ViTLayer`` with eager or sdpa attention, the layer and its attention not
    :func:`~par_prompt.tuner.keys_values.watched` (e.g. by a hook that reads the attention)."""
    attention = getattr(layer, "attention", None)
    if type(layer) is not ViTLayer or type(attention) is not ViTAttention:
        return False
    return attention.config._attn_implementation in ATTENTION_IMPLEMENTATIONS and not watched(layer, attention)


def _leading_outputs(layer: ViTLayer, tokens: torch.Tensor, count: int) -> torch.Tensor:
    attention = layer.attention
    batch = tokens.shape[0]
    normed = layer.layernorm_before(tokens)  # (B, T, F): every token gives keys and values
    queries = split_heads(attention.q_proj(normed[:, :count]), attention.head_dim)
    keys = split_heads(attention.k_proj(normed), attention.head_dim)
    values = split_heads(attention.v_proj(normed), attention.head_dim)
    attend = ALL_ATTENTION_FUNCTIONS.get_interface(attention.config._attn_implementation, eager_attention_forward)
    attended, _ = attend(attention, queries, keys, values, None, scaling=attention.scaling,
                         dropout=attention.attention_dropout if attention.training else 0.0)
    attended = attention.o_proj(attended.reshape(batch, count, -1).contiguous())
    hidden = layer.dropout(attended) + tokens[:, :count]
    return layer.dropout(layer.mlp(layer.layernorm_after(hidden))) + hidden


def leading_outputs_layer(layer: ViTLayer, tokens: torch.Tensor, count: int) -> torch.Tensor:
    """``layer(tokens)[:, :count]`` without computing the other tokens' outputs: their
    keys and values only. ``layer``: a ``ViTLayer`` for which :func:`can_skip_outputs`
    holds; tokens (B, T, F) -> (B, count, F). Checkpointed like the layer's own forward."""
    return like_layer(layer, partial(_leading_outputs, layer, count=count), tokens)


class MMFormer(nn.Module):
    """``fusion_layers`` ViT encoder layers (frozen) followed by the ViT's final layer norm
    (trainable). Input and output: (B, T, F)."""

    def __init__(self, vit_config: ViTConfig, num_layers: int) -> None:
        super().__init__()
        config = ViTConfig.from_dict({**vit_config.to_dict(), "num_hidden_layers": num_layers})
        # Building a ViTModel of ``num_layers`` layers gives ViT's own initialisation for
        # the random case; only its layers and final norm are kept.
        vit = ViTModel(config, add_pooling_layer=False)
        self.layers = vit_layers(vit)
        self.norm = vit.layernorm

    def load_from_vit(self, vit: ViTModel) -> None:
        """Copy the last ``len(self.layers)`` layers and the final norm of a pretrained ViT."""
        source = vit_layers(vit)
        if len(source) < len(self.layers):
            raise ValueError(
                f"The fusion checkpoint has {len(source)} layers, fewer than the {len(self.layers)} fusion layers asked for."
            )
        for target, layer in zip(self.layers, source[len(source) - len(self.layers) :]):
            target.load_state_dict(layer.state_dict())
        self.norm.load_state_dict(vit.layernorm.state_dict())

    def frozen_parameters(self):
        return self.layers.parameters()

    def forward(self, tokens: torch.Tensor, num_outputs: Optional[int] = None) -> torch.Tensor:
        """tokens (B, T, F) -> (B, T, F), or only the first ``num_outputs`` tokens' outputs
        (B, num_outputs, F), for which the last layer skips the other tokens' outputs."""
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            if index == last and num_outputs is not None and can_skip_outputs(layer):
                tokens = leading_outputs_layer(layer, tokens, num_outputs)
            else:
                tokens = layer(tokens)
        return self.norm(tokens if num_outputs is None else tokens[:, :num_outputs])


class SequenceMLP(nn.Module):
    """Paper Table VI's alternative to the MM-Former: a trainable residual MLP that mixes
    tokens along the sequence axis, then a layer norm. Input and output: (B, T, F)."""

    def __init__(self, sequence_length: int, width: int, layer_norm_eps: float = 1e-12) -> None:
        super().__init__()
        self.mix = nn.Sequential(
            nn.Linear(sequence_length, sequence_length), nn.GELU(), nn.Linear(sequence_length, sequence_length)
        )
        self.norm = nn.LayerNorm(width, eps=layer_norm_eps)

    def frozen_parameters(self):
        return iter(())

    def forward(self, tokens: torch.Tensor, num_outputs: Optional[int] = None) -> torch.Tensor:
        """tokens (B, T, F) -> (B, T, F), or the first ``num_outputs`` tokens' outputs."""
        mixed = self.mix(tokens.transpose(1, 2)).transpose(1, 2)
        if num_outputs is not None:
            tokens, mixed = tokens[:, :num_outputs], mixed[:, :num_outputs]
        return self.norm(tokens + mixed)
