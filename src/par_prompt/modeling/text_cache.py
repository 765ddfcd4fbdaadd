"""When PromptPARModel may reuse its text features (docs/method.md §3).

The text features depend on the sentences and the prompts, not on the image, so
prediction computes them once. A cached value is reused only when nothing it depends on
has changed. The rule, checked on every use:

* it was computed without autograd and is used without autograd (a cached tensor never
  carries a graph into a second backward, and is never an inference-mode tensor);
* the same tensors decide it: every parameter and buffer of the text tower (the prompts
  of every adapter included) and of the text projection, and the sentence ids, by
  identity, storage and version counter (in-place updates, optimizer steps, loads);
* they hold the same values: the prompts, the sentence ids and every small or integer
  tensor are compared element by element, the large frozen weights by their norms.
  Writes through ``.data`` change no version counter; this catches them (in the large
  frozen weights, unless the write keeps every tensor's norm, e.g. a permutation);
* the same adapter is active (or adapters are disabled), on the same device, under the
  same autocast setting.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Optional

import torch

#: Other tensors with at most this many elements are compared by value, larger ones by norm.
EXACT_COMPARE_LIMIT = 1 << 16


@dataclass(frozen=True)
class TextCacheEntry:
    """One cached result and what it was computed from."""

    key: tuple
    values: tuple[torch.Tensor, ...]
    norms: tuple[torch.Tensor, ...]
    features: torch.Tensor


def _split(exact: list[torch.Tensor], others: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(tensors compared by value, tensors compared by norm), each in a fixed order."""
    normed = []
    exact = list(exact)
    for tensor in others:
        small = tensor.numel() <= EXACT_COMPARE_LIMIT or not tensor.is_floating_point()
        (exact if small else normed).append(tensor)
    return exact, normed


def _norms(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Float32 L2 norms of ``tensors``, one stacked tensor per device."""
    by_device: dict[torch.device, list[torch.Tensor]] = defaultdict(list)
    for tensor in tensors:
        by_device[tensor.device].append(tensor.detach())
    return tuple(torch.stack(torch._foreach_norm(group, 2, dtype=torch.float32)) for group in by_device.values())


def state_key(exact: list[torch.Tensor], others: list[torch.Tensor], context: tuple) -> tuple:
    """Identity, storage, version, shape and dtype of every tensor, plus the caller's ``context``."""
    return context + tuple((id(t), t.data_ptr(), t._version, tuple(t.shape), t.dtype) for t in (*exact, *others))


def lookup(entry: Optional[TextCacheEntry], exact: list[torch.Tensor], others: list[torch.Tensor],
           context: tuple) -> Optional[torch.Tensor]:
    """The cached features if ``entry`` was computed from the same tensors, holding the
    same values, in the same ``context``; else None.

    ``exact``: tensors always compared by value (the prompts, the sentence ids);
    ``others``: every other tensor the features depend on."""
    if entry is None or torch.is_grad_enabled() or entry.key != state_key(exact, others, context):
        return None
    exact, normed = _split(exact, others)
    if not all(torch.equal(old, new) for old, new in zip(entry.values, exact)):
        return None
    if not all(torch.equal(old, new) for old, new in zip(entry.norms, _norms(normed))):
        return None
    return entry.features


def store(exact: list[torch.Tensor], others: list[torch.Tensor], context: tuple,
          features: torch.Tensor) -> TextCacheEntry:
    """A cache entry for ``features`` computed from ``exact`` and ``others`` in ``context``.

    Compute ``features`` and call this outside inference mode and without autograd (see
    :meth:`PromptPARModel.text_features`): the entry must serve later no-grad forwards
    of either kind."""
    key = state_key(exact, others, context)
    exact, normed = _split(exact, others)
    return TextCacheEntry(key, tuple(t.detach().clone() for t in exact), _norms(normed), features)
