"""The PAR training loss (docs/method.md §6): weighted binary cross-entropy with logits.

For a batch of B samples and N attributes, with logits x (B, N), labels y (B, N) in
{0, 1, 2} (2 = uncertain) and r_i the positive ratio of attribute i in the training split::

    w_bi = exp(1 - r_i)   if y_bi = 1      (rare positives weigh more)
           exp(r_i)       if y_bi = 0
           0              if y_bi = 2      (uncertain: no loss, no gradient)

    L = (1 / B) * sum_b sum_i  w_bi * BCE(x_bi, y_bi),
    BCE(x, y) = -[y log σ(x) + (1 - y) log(1 - σ(x))]

i.e. the per-sample sum over attributes, averaged over the batch. The loss is computed
in float32 whatever the input dtype (also under bf16/fp16 autocast) and on the logits'
device; nothing is moved to a fixed device. PromptPAR uses this loss for the
classification logits and, weighted by α, for the aggregator scores (docs/method.md §5, §6).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "compute_positive_ratios",
    "par_loss_weights",
    "validate_labels",
    "weighted_bce_with_logits",
]


def validate_labels(labels: torch.Tensor, num_attributes: int) -> None:
    """Raise ``ValueError`` unless ``labels`` is (B, num_attributes) with values in {0, 1, 2}.

    Any dtype is accepted (bool, integer or float holding 0., 1., 2.); soft labels such as
    0.9 are rejected, as the weighting needs to know which class an entry belongs to.
    """
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D (batch, num_attributes), got shape {tuple(labels.shape)}")
    if labels.shape[1] != num_attributes:
        raise ValueError(f"expected {num_attributes} attributes, got labels of width {labels.shape[1]}")
    if labels.dtype == torch.bool:
        return
    bad = (labels != 0) & (labels != 1) & (labels != 2)
    if bool(bad.any()):
        values = torch.unique(labels[bad].detach().cpu()).tolist()
        shown = ", ".join(str(v) for v in values[:10]) + (", ..." if len(values) > 10 else "")
        raise ValueError(
            f"labels must be 0 (negative), 1 (positive) or 2 (uncertain); found other values: {shown}"
        )


def _check_ratios(positive_ratios: Any, num_attributes: int, device: torch.device) -> torch.Tensor:
    ratios = torch.as_tensor(positive_ratios).to(device=device, dtype=torch.float32)
    if ratios.shape != (num_attributes,):
        raise ValueError(
            f"positive_ratios must have shape ({num_attributes},), one ratio per attribute, "
            f"got shape {tuple(ratios.shape)}"
        )
    if not bool(((ratios >= 0) & (ratios <= 1)).all()):  # also catches NaN
        raise ValueError("positive_ratios must lie in [0, 1] (fraction of positive labels per attribute)")
    return ratios


def _weights(labels: torch.Tensor, ratios: torch.Tensor) -> torch.Tensor:
    positive = labels == 1
    certain = positive | (labels == 0)
    weights = torch.where(positive, torch.exp(1.0 - ratios), torch.exp(ratios))
    return torch.where(certain, weights, torch.zeros_like(weights))


def par_loss_weights(labels: torch.Tensor, positive_ratios: torch.Tensor) -> torch.Tensor:
    """Per-entry weights (B, N), float32 on ``labels``' device.

    ``exp(1 - r_i)`` on a positive entry, ``exp(r_i)`` on a negative one, 0 on an
    uncertain one (label 2).
    """
    num_attributes = labels.shape[-1] if isinstance(labels, torch.Tensor) and labels.ndim == 2 else 0
    validate_labels(labels, num_attributes)
    ratios = _check_ratios(positive_ratios, num_attributes, labels.device)
    return _weights(labels, ratios)


def weighted_bce_with_logits(
    logits: torch.Tensor,
    labels: torch.Tensor,
    positive_ratios: torch.Tensor,
) -> torch.Tensor:
    """Weighted BCE (see the module docstring): scalar float32 tensor.

    Args:
        logits: (B, N) raw scores (any float dtype; cast to float32).
        labels: (B, N) with values 0 / 1 / 2 (2 = uncertain, weight 0).
        positive_ratios: (N,) positive ratio of each attribute in the training split,
            in [0, 1] (0 and 1 are fine), e.g. from :func:`compute_positive_ratios`.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (batch, num_attributes), got {tuple(logits.shape)}")
    batch_size, num_attributes = logits.shape
    validate_labels(labels, num_attributes)
    if labels.shape[0] != batch_size:
        raise ValueError(f"logits have {batch_size} samples but labels have {labels.shape[0]}")
    if batch_size == 0:
        raise ValueError("cannot compute the loss of an empty batch")
    labels = labels.to(logits.device)
    weights = _weights(labels, _check_ratios(positive_ratios, num_attributes, logits.device))
    targets = (labels == 1).to(torch.float32)
    certain = (labels == 0) | (labels == 1)
    with torch.autocast(device_type=logits.device.type, enabled=False):
        bce = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
        # torch.where rather than a product: an uncertain entry gets exactly 0 loss and
        # 0 gradient even if its logit is infinite (0 * inf would be NaN).
        per_entry = torch.where(certain, weights * bce, torch.zeros_like(bce))
    return per_entry.sum() / batch_size


def compute_positive_ratios(labels: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """r_i = #(label 1) / #(label 0 or 1) per attribute over a split's (M, N) labels.

    Uncertain entries are left out of both counts (the official code averages the raw
    labels, which counts a 2 as two positives). An attribute without any certain entry
    gets 0.5; its entries are all uncertain, so its weight never matters.
    Returns an (N,) tensor of ``dtype`` on the labels' device (CPU for non-tensors).
    """
    labels = torch.as_tensor(labels)
    num_attributes = labels.shape[-1] if labels.ndim == 2 else 0
    validate_labels(labels, num_attributes)
    positives = (labels == 1).sum(dim=0).to(dtype)
    certain = ((labels == 0) | (labels == 1)).sum(dim=0).to(dtype)
    ratios = positives / certain.clamp(min=1)
    return torch.where(certain > 0, ratios, torch.full_like(ratios, 0.5))
