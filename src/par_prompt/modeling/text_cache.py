"""When PromptPARModel may reuse its text features (docs/method.md §3).

The text features depend on the sentences and the prompts, not on the image, so
prediction computes them once. A cached value is reused only when nothing it depends on
has changed. The rule, checked on every use:

* it was computed without autograd and is used without autograd (a cached tensor never
  carries a graph into a second backward, and is never an inference-mode tensor);
* the same adapter is active (or adapters are disabled), on the same device, under the
  same autocast setting;
* the same tensors, by identity, storage, shape, dtype and version counter: every
  parameter and buffer of the text tower (every adapter's prompts included) and of the
  text projection, and the sentence ids. In-place writes (an optimizer step,
  ``load_state_dict``, ``copy_``) bump the version counter; a replaced module or
  ``.data`` assignment changes identity or storage;
* the same values in the tensors that require grad (the prompts, and anything a user
  unfroze) and in the sentence ids: writes through ``.data``, the way around autograd
  for such tensors, bump no version counter. Small tensors are compared element by
  element, large ones by their norms.

Not caught: a write through ``.data`` into a frozen weight (there the plain in-place
write works and is seen). Checking the values of every frozen weight would read the
whole text tower on every forward (30 ms for ViT-L/14's on one CPU thread).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

#: Watched tensors with at most this many elements are compared by value, larger ones by norm.
EXACT_COMPARE_LIMIT = 1 << 20


@dataclass(frozen=True)
class TextCacheEntry:
    """One cached result and what it was computed from."""

    key: tuple
    values: tuple[torch.Tensor, ...]
    norms: Optional[torch.Tensor]
    features: torch.Tensor


def state_key(tensors: list[torch.Tensor], context: tuple) -> tuple:
    """Identity, storage, shape, dtype, version and grad flag of every tensor, plus ``context``."""
    return context + tuple((id(t), t.data_ptr(), t.shape, t.dtype, t._version, t.requires_grad) for t in tensors)


def _watched(tensors: list[torch.Tensor], sentence_ids: torch.Tensor) -> tuple[list, list]:
    """The tensors whose values are checked: (compared element by element, compared by norm)."""
    watched = [sentence_ids, *(t for t in tensors if t.requires_grad)]
    exact = [t for t in watched if t.numel() <= EXACT_COMPARE_LIMIT or not t.is_floating_point()]
    return exact, [t for t in watched if t.numel() > EXACT_COMPARE_LIMIT and t.is_floating_point()]


def _norms(tensors: list[torch.Tensor]) -> Optional[torch.Tensor]:
    return torch.stack([torch.linalg.vector_norm(t.detach(), dtype=torch.float32).cpu() for t in tensors]) \
        if tensors else None


def lookup(entry: Optional[TextCacheEntry], tensors: list[torch.Tensor], sentence_ids: torch.Tensor,
           context: tuple) -> Optional[torch.Tensor]:
    """The cached features if ``entry`` was computed in the same ``context`` from the same
    ``tensors`` (and ``sentence_ids``), unchanged; else None (always None with autograd on)."""
    if entry is None or torch.is_grad_enabled() or entry.key != state_key([sentence_ids, *tensors], context):
        return None
    exact, normed = _watched(tensors, sentence_ids)
    if not all(torch.equal(old, new) for old, new in zip(entry.values, exact)):
        return None
    norms = _norms(normed)
    if norms is not None and not torch.equal(norms, entry.norms):
        return None
    return entry.features


def store(tensors: list[torch.Tensor], sentence_ids: torch.Tensor, context: tuple,
          features: torch.Tensor) -> TextCacheEntry:
    """A cache entry for ``features`` computed from ``tensors`` and ``sentence_ids`` in
    ``context``. Compute ``features`` and call this outside inference mode and without
    autograd (see :meth:`PromptPARModel.text_features`): the entry must serve later
    no-grad forwards of either kind."""
    exact, normed = _watched(tensors, sentence_ids)
    return TextCacheEntry(state_key([sentence_ids, *tensors], context), tuple(t.detach().clone() for t in exact),
                          _norms(normed), features)
