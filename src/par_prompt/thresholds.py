"""Decision thresholds: which one applies, checked in one place for the whole package.

A threshold turns probabilities into predictions (an attribute is predicted when its
probability is above it): one number in [0, 1] for every attribute, or one per attribute
(e.g. calibrated on a validation split). Prediction, the pipeline, ``visualize``,
evaluation, training and the metrics all take theirs from :func:`resolve_threshold`:

- a threshold given by the caller wins;
- else the model config's ``attribute_thresholds``, when set;
- else the config's ``threshold``.

Every value is checked wherever it comes from (a config can be edited after loading): a
real number, not a bool or a string, in [0, 1] (NaN is refused), and one per attribute
when a sequence. Errors are ``ValueError`` s that name the value and what is expected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np

__all__ = ["Threshold", "ThresholdChoice", "check_threshold", "resolve_threshold"]

#: A threshold as reported (JSON-ready): one float, or one float per attribute.
Threshold = Union[float, list[float]]


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold that applies and where it came from.

    Attributes:
        value: one float, or one float per attribute.
        source: what gave it: the name it was given under (e.g. ``"threshold"``,
            ``"--threshold"``), ``"config.attribute_thresholds"``, ``"config.threshold"``,
            or ``"calibrated on <split>"``.
    """

    value: Threshold
    source: str

    @property
    def per_attribute(self) -> bool:
        return isinstance(self.value, list)

    def describe(self) -> str:
        """``"global 0.50"``, ``"per-attribute (from the model config)"``, or the source
        given: ``"per-attribute (calibrated on validation)"``, ``"per-attribute (--threshold)"``."""
        if not self.per_attribute:
            return f"global {self.value:.2f}"
        if self.source.startswith("config."):
            return "per-attribute (from the model config)"
        return f"per-attribute ({self.source})"

    def values(self, num_attributes: int) -> list[float]:
        """One threshold per attribute."""
        return list(self.value) if self.per_attribute else [float(self.value)] * num_attributes


def check_threshold(value: Any, name: str = "threshold") -> float:
    """``value`` as a float in [0, 1]; a ``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, (bool, str, bytes)) or not _is_scalar(value):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r:.80}")
    number = float(value)
    if math.isnan(number) or not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {number}")
    return number


def resolve_threshold(config: Any = None, threshold: Any = None, *, num_attributes: Optional[int] = None,
                      attribute_names: Optional[Sequence[str]] = None,
                      given_as: str = "threshold") -> ThresholdChoice:
    """The threshold that applies (see the module docstring), checked.

    Args:
        config: a model config (``attributes``, ``threshold``, ``attribute_thresholds``),
            or None when the caller gives the threshold and ``num_attributes``.
        threshold: None (take the config's), one number, or one number per attribute (a
            sequence, numpy array or tensor of shape ``(N,)``).
        num_attributes, attribute_names: N and the names used in messages, when there is
            no config.
        given_as: how messages and :attr:`ThresholdChoice.source` name a given threshold.
    """
    if getattr(config, "attributes", None) is not None:
        attribute_names = list(config.attributes)
        num_attributes = len(attribute_names)
    if threshold is not None:
        return ThresholdChoice(_checked(threshold, num_attributes, attribute_names, given_as), given_as)
    if config is None:
        raise ValueError(f"{given_as} is missing: give a number in [0, 1] or one per attribute")
    per_attribute = getattr(config, "attribute_thresholds", None)
    if per_attribute is not None:
        name = "config.attribute_thresholds"
        return ThresholdChoice(_checked(per_attribute, num_attributes, attribute_names, name, sequence=True), name)
    return ThresholdChoice(check_threshold(getattr(config, "threshold", 0.5), "config.threshold"), "config.threshold")


def _is_scalar(value: Any) -> bool:
    if isinstance(value, (int, float, np.number)):
        return True
    return hasattr(value, "ndim") and hasattr(value, "item") and value.ndim == 0  # numpy / torch 0-d


def _checked(threshold: Any, num_attributes: Optional[int], names: Optional[Sequence[str]], name: str,
             sequence: bool = False) -> Threshold:
    if not sequence and (_is_scalar(threshold) or isinstance(threshold, (bool, str, bytes))):
        return check_threshold(threshold.item() if hasattr(threshold, "item") else threshold, name)
    expected = "a number in [0, 1] or one per attribute" if not sequence else "one number in [0, 1] per attribute"
    if hasattr(threshold, "detach"):  # a torch tensor, wherever it lives
        threshold = threshold.detach().cpu().numpy()
    if isinstance(threshold, (str, bytes, bool)) or not hasattr(threshold, "__len__") or any(
            isinstance(v, (bool, str, bytes)) for v in threshold):
        raise ValueError(f"{name} must be {expected}, got {threshold!r:.80}")
    try:
        array = np.asarray(threshold, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {expected}, got {threshold!r:.80}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be one number or one per attribute (shape (N,)), got shape {array.shape}")
    if num_attributes is not None and array.shape[0] != num_attributes:
        raise ValueError(f"{name}: got {array.shape[0]} thresholds for {num_attributes} attributes; give one per "
                         f"attribute")
    bad = [(names[i] if names is not None and i < len(names) else i, float(v))
           for i, v in enumerate(array) if not 0.0 <= v <= 1.0]  # also catches NaN
    if bad:
        raise ValueError(f"every threshold must lie in [0, 1]; out of range in {name}: {bad[:5]}")
    return [float(v) for v in array]
