"""Per-attribute heads and the global-local similarity aggregator (docs/method.md §4-§5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def normalise(norm: nn.BatchNorm1d, values: torch.Tensor, use_running_stats: bool) -> torch.Tensor:
    """``norm(values)``; with ``use_running_stats`` normalised by the running statistics,
    as in eval mode, even when ``norm`` is in training mode (its mode and statistics stay
    as they are)."""
    if not use_running_stats or not norm.training or norm.running_mean is None:
        return norm(values)
    return F.batch_norm(values, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps)


class AttributeHeads(nn.Module):
    """For each attribute i a linear F -> 1 on token i, then BatchNorm1d over the N logits.

    The N linear maps are held as one (N, F) weight and an (N,) bias and applied in one
    einsum. Input (B, N, F) -> logits (B, N); ``use_running_stats``: see :func:`normalise`.
    """

    def __init__(self, num_attributes: int, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_attributes, width))
        self.bias = nn.Parameter(torch.empty(num_attributes))
        self.batch_norm = nn.BatchNorm1d(num_attributes)

    def forward(self, tokens: torch.Tensor, use_running_stats: bool = False) -> torch.Tensor:
        logits = torch.einsum("bnf,nf->bn", tokens, self.weight.to(tokens.dtype)) + self.bias.to(tokens.dtype)
        return normalise(self.batch_norm, logits, use_running_stats)


class GlobalLocalAggregator(nn.Module):
    """The "GL" scores of docs/method.md §5, per sample.

    ``class_tokens`` (B, K+1, d): CLS then CLS_1..CLS_K, projected; ``text`` (N, d).
    logits = scale · cos(class token, sentence) -> (B, K+1, N); softmax over the N
    attributes with a learnable temperature; for every sample and attribute the local
    score is the max over the K regions if that max exceeds τ, else the min; the score is
    (local + global) / 2, global being the CLS row; then BatchNorm1d over N.
    With K = 0 there is no local score and the score is the global row.
    ``use_running_stats``: see :func:`normalise`.
    """

    def __init__(self, num_attributes: int, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold
        self.temperature = nn.Parameter(torch.ones(()))
        self.batch_norm = nn.BatchNorm1d(num_attributes)

    def forward(self, class_tokens: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
                use_running_stats: bool = False) -> torch.Tensor:
        class_tokens = F.normalize(class_tokens.float(), dim=-1)
        text = F.normalize(text.float(), dim=-1)
        similarity = logit_scale.exp().float() * torch.einsum("bkd,nd->bkn", class_tokens, text)
        scores = torch.softmax(similarity / self.temperature.float(), dim=-1)  # (B, K+1, N)
        global_scores = scores[:, 0]
        if scores.shape[1] > 1:
            regions = scores[:, 1:]
            best, worst = regions.max(dim=1).values, regions.min(dim=1).values
            local = torch.where(best > self.threshold, best, worst)
            combined = (local + global_scores) / 2
        else:
            combined = global_scores
        return normalise(self.batch_norm, combined.to(self.batch_norm.weight.dtype), use_running_stats)
