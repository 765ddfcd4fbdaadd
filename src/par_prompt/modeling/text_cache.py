"""When PromptPARModel may reuse its text features (docs/method.md §3).

The text features depend on the sentences and the prompts, not on the image, so
prediction computes them once. A cached value is reused only when nothing it depends on
has changed. The rule, checked on every use:

* it was computed without autograd and is used without autograd (a cached tensor never
  carries a graph into a second backward, and is never an inference-mode tensor);
* the same adapter is active (or adapters are disabled), on the same device, under the
  same autocast setting;
* the tensors it depends on hold the same values: the sentence ids, the text prompts (of
  every adapter) and the integer buffers element by element; every floating parameter
  and buffer of the text tower and of the text projection by its norm. Comparing values,
  not version counters, also catches writes through ``.data``, which no version counter
  sees, and replaced modules. Not caught: a write into a frozen tower weight that keeps
  that tensor's norm (e.g. a permutation of its values).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class TextCacheEntry:
    """One cached result and what it was computed from."""

    context: tuple
    values: tuple[torch.Tensor, ...]
    norms: tuple[tuple[torch.device, torch.Tensor], ...]
    features: torch.Tensor


def _split(exact: list[torch.Tensor], others: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(tensors compared by value, tensors compared by norm), each in a fixed order."""
    return [*exact, *(t for t in others if not t.is_floating_point())], [t for t in others if t.is_floating_point()]


def _norms(tensors: list[torch.Tensor]) -> tuple[tuple[torch.device, torch.Tensor], ...]:
    """Float32 L2 norms of ``tensors``: one stacked tensor per device, in order of appearance."""
    groups: dict[torch.device, list[torch.Tensor]] = {}
    for tensor in tensors:
        groups.setdefault(tensor.device, []).append(tensor.detach())
    return tuple((device, torch.stack(torch._foreach_norm(group, 2, dtype=torch.float32)))
                 for device, group in groups.items())


def _same(old: torch.Tensor, new: torch.Tensor) -> bool:
    return old.shape == new.shape and old.dtype == new.dtype and old.device == new.device and torch.equal(old, new)


def lookup(entry: Optional[TextCacheEntry], exact: list[torch.Tensor], others: list[torch.Tensor],
           context: tuple) -> Optional[torch.Tensor]:
    """The cached features if ``entry`` was computed in the same ``context`` from tensors
    holding the same values; else None (always None with autograd on).

    ``exact``: tensors compared by value (the prompts, the sentence ids); ``others``: every
    other tensor the features depend on."""
    if entry is None or torch.is_grad_enabled() or entry.context != context:
        return None
    values, normed = _split(exact, others)
    if len(values) != len(entry.values) or not all(_same(old, new) for old, new in zip(entry.values, values)):
        return None
    norms = _norms(normed)
    if len(norms) != len(entry.norms):
        return None
    for (old_device, old), (device, new) in zip(entry.norms, norms):
        if old_device != device or not _same(old, new):
            return None
    return entry.features


def store(exact: list[torch.Tensor], others: list[torch.Tensor], context: tuple,
          features: torch.Tensor) -> TextCacheEntry:
    """A cache entry for ``features`` computed from ``exact`` and ``others`` in ``context``.

    Compute ``features`` and call this outside inference mode and without autograd (see
    :meth:`PromptPARModel.text_features`): the entry must serve later no-grad forwards
    of either kind."""
    values, normed = _split(exact, others)
    return TextCacheEntry(context, tuple(t.detach().clone() for t in values), _norms(normed), features)
