"""The MM-Former: text and visual tokens fused by frozen ViT layers (METHOD.md §4)."""

from __future__ import annotations

import torch
from torch import nn
from transformers import ViTConfig, ViTModel


def vit_layers(vit: ViTModel) -> nn.ModuleList:
    """The encoder layers of a ViTModel (``layers`` in transformers >= 5.2x, ``encoder.layer`` before)."""
    layers = getattr(vit, "layers", None)
    return layers if layers is not None else vit.encoder.layer


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

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            tokens = layer(tokens)
        return self.norm(tokens)


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

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mixed = self.mix(tokens.transpose(1, 2)).transpose(1, 2)
        return self.norm(tokens + mixed)
