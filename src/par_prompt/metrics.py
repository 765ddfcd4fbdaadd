"""Pedestrian-attribute-recognition metrics (docs/method.md §9), in one place.

Inputs are probabilities ``probs`` (M, N) in [0, 1] and labels (M, N) in {0, 1, 2},
2 meaning "uncertain" (RAP). A prediction is positive when ``prob > t`` (strictly
greater, as in the official PromptPAR / Rethinking_of_PAR code), where ``t`` is one
threshold or one threshold per attribute. Uncertain entries are left out of every count.

Label-based (per attribute i, over the certain entries of column i)::

    positive recall  PR_i = TP_i / (TP_i + FN_i)
    negative recall  NR_i = TN_i / (TN_i + FP_i)
    mA_i   = (PR_i + NR_i) / 2                    mA  = mean of mA_i
    Prec_i = TP_i / (TP_i + FP_i)
    F1_i   = 2 Prec_i PR_i / (Prec_i + PR_i)
    AP_i   = sum_k (R_k - R_{k-1}) P_k             mAP = mean of AP_i

AP_i, the average precision, does not depend on the threshold: P_k and R_k are the
precision and recall of predicting "positive" for every probability >= the k-th
largest distinct probability of column i (tied probabilities enter together).

**Attributes without positives or negatives.** An attribute is *scored* when the split
has at least one certain positive and one certain negative for it. For an unscored
attribute, mA_i, Prec_i, F1_i and AP_i are "n/a" (``None``), and so is PR_i without
positives and NR_i without negatives: with one class only these numbers are either
undefined or fixed by the labels, whatever the model predicts. mA, mAP and the means of
Prec_i and F1_i are taken over the scored attributes only (``None`` when there is none);
:attr:`ParMetrics.num_attributes_scored` says how many. The official PromptPAR code
instead counts an empty class's recall as 0 (lowering mA); on the standard test splits
every attribute has both classes, so the two agree there.

Instance-based (per sample j, with G_j = {i : label_ji = 1} and
P_j = {i : prob_ji > t_i and label_ji != 2}), each then averaged over the M samples::

    Acc_j  = |P_j ∩ G_j| / |P_j ∪ G_j|
    Prec_j = |P_j ∩ G_j| / |P_j|
    Rec_j  = |P_j ∩ G_j| / |G_j|
    F1_j   = 2 Prec_j Rec_j / (Prec_j + Rec_j)

Other zero denominators count as 0: a sample with no predicted positive has Prec_j = 0,
one with no true positive label Rec_j = 0, one with neither Acc_j = 0 and F1_j = 0; a
scored attribute that is never predicted positive has Prec_i = 0. Every sample counts in
the instance averages, also one whose labels are all uncertain (it scores 0).

F1 is the mean of the per-sample F1 (docs/method.md: "per sample then averaged"). The
PromptPAR paper's numbers agree with this convention (e.g. PA100K: Prec 89.27,
Rec 91.70, F1 90.15, whereas 2·P·R/(P+R) of the means would be 90.47). Rethinking_of_PAR
instead reports F1 computed from the averaged precision and recall; that value is
available as :attr:`ParMetrics.f1_of_means` for comparison.

Besides :func:`compute_par_metrics` this module offers a streaming
:class:`ParMetricAccumulator`, per-attribute threshold calibration
(:func:`calibrate_thresholds`) and the same computation as an ``evaluate`` metric
(:data:`EVALUATE_METRIC_PATH`, :func:`load_evaluate_metric`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np

from .thresholds import resolve_threshold

__all__ = [
    "EVALUATE_METRIC_PATH",
    "ParMetricAccumulator",
    "ParMetrics",
    "average_precision",
    "calibrate_thresholds",
    "compute_par_metrics",
    "load_evaluate_metric",
    "percent",
]

#: Folder of the ``evaluate`` metric script; ``evaluate.load(EVALUATE_METRIC_PATH)`` loads it.
EVALUATE_METRIC_PATH: str = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "hf_metrics", "par_metrics"
)

_VALID_LABELS = (0, 1, 2)


# --------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------


def _to_numpy(x: Any) -> np.ndarray:
    """numpy view of an array-like; torch tensors are detached and moved to the CPU."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.float()  # numpy has no bfloat16; float32 holds every fp16/bf16 value
        return x.numpy()
    return np.asarray(x)


def _as_2d(x: Any, what: str) -> np.ndarray:
    try:
        array = _to_numpy(x)
    except ValueError as err:  # ragged nested lists
        raise ValueError(f"{what} must be a rectangular (num_samples, num_attributes) array: {err}") from None
    if array.dtype == object:
        raise ValueError(f"{what} must be a rectangular (num_samples, num_attributes) array of numbers")
    if array.ndim != 2:
        raise ValueError(f"{what} must have shape (num_samples, num_attributes), got shape {array.shape}")
    return array


def _check_labels(labels: Any, num_attributes: int | None = None) -> np.ndarray:
    """Labels as an int8 (M, N) array, values checked to lie in {0, 1, 2}."""
    array = _as_2d(labels, "labels")
    if num_attributes is not None and array.shape[1] != num_attributes:
        raise ValueError(f"expected {num_attributes} attributes, got labels of width {array.shape[1]}")
    if array.dtype == bool:
        return array.astype(np.int8)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"labels must be numeric, got dtype {array.dtype}")
    bad = ~np.isin(array, _VALID_LABELS)
    if bad.any():
        values = np.unique(array[bad])
        shown = ", ".join(str(v) for v in values[:10]) + (", ..." if values.size > 10 else "")
        raise ValueError(
            f"labels must be 0 (negative), 1 (positive) or 2 (uncertain); found other values: {shown}"
        )
    return array.astype(np.int8)


def _check_probs(probs: Any, num_attributes: int | None = None) -> np.ndarray:
    """Probabilities as a float64 (M, N) array, checked to lie in [0, 1]."""
    array = _as_2d(probs, "probs")
    if num_attributes is not None and array.shape[1] != num_attributes:
        raise ValueError(f"expected {num_attributes} attributes, got probs of width {array.shape[1]}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"probs must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if np.isnan(array).any():
        raise ValueError("probs contain NaN")
    if array.size and (array.min() < 0.0 or array.max() > 1.0):
        raise ValueError(
            f"probs must be probabilities in [0, 1], got values in [{array.min():.4g}, {array.max():.4g}]; "
            "if these are logits, apply a sigmoid first (e.g. torch.sigmoid(logits))"
        )
    return array


def _check_pair(probs: Any, labels: Any, num_attributes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validated (probs, labels) of one shape (M, N)."""
    probs = _check_probs(probs, num_attributes)
    labels = _check_labels(labels, num_attributes)
    if probs.shape != labels.shape:
        raise ValueError(f"probs and labels must have the same shape, got {probs.shape} and {labels.shape}")
    return probs, labels


def _check_names(attribute_names: Sequence[str] | None, num_attributes: int) -> list[str]:
    if attribute_names is None:
        return [f"attr_{i}" for i in range(num_attributes)]
    names = [str(n) for n in attribute_names]
    if len(names) != num_attributes:
        raise ValueError(f"got {len(names)} attribute names for {num_attributes} attributes")
    return names


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator elementwise, 0 where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


# --------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------


Score = Optional[float]  # None: "n/a" (see the module docstring)


@dataclass
class ParMetrics:
    """PAR metrics of one evaluation; every score is a fraction in [0, 1], or ``None``
    ("n/a") where the split lacks the class it needs (see the module docstring).

    Attributes:
        mA: mean over the scored attributes of (positive recall + negative recall) / 2.
        accuracy, precision, recall, f1: instance-based scores, per sample then averaged.
        threshold: the threshold as given (a float, or a list of N floats).
        positive_recall, negative_recall: per attribute, TP/(TP+FN) and TN/(TN+FP)
            (``None`` where the attribute has no certain positive / negative entry).
        attribute_names: N names (``attr_i`` when none were given).
        num_samples: M.
        num_positives, num_negatives: per attribute, the certain entries labelled 1 / 0.
        num_uncertain: number of entries labelled 2 (excluded everywhere).
        num_attributes_without_positives, num_attributes_without_negatives: how many
            attributes have no certain positive / negative entry.
        f1_of_means: 2·precision·recall/(precision+recall) of the averaged scores
            (Rethinking_of_PAR's F1 convention), for comparison only.
        mAP: mean over the scored attributes of the average precision.
        attribute_precision, attribute_f1, average_precision: per attribute, Prec_i,
            F1_i and AP_i (``None`` for an unscored attribute).
        mean_attribute_precision, mean_attribute_f1: their means over the scored
            attributes (label-based, not to be confused with ``precision`` and ``f1``).
        num_attributes_scored: attributes with both a certain positive and a certain
            negative entry; every mean over attributes is over these.
    """

    mA: Score
    accuracy: float
    precision: float
    recall: float
    f1: float
    threshold: float | list[float]
    positive_recall: list[Score]
    negative_recall: list[Score]
    attribute_names: list[str]
    num_samples: int
    num_positives: list[int] = field(default_factory=list)
    num_negatives: list[int] = field(default_factory=list)
    num_uncertain: int = 0
    num_attributes_without_positives: int = 0
    num_attributes_without_negatives: int = 0
    f1_of_means: float = 0.0
    mAP: Score = None
    attribute_precision: list[Score] = field(default_factory=list)
    attribute_f1: list[Score] = field(default_factory=list)
    average_precision: list[Score] = field(default_factory=list)
    mean_attribute_precision: Score = None
    mean_attribute_f1: Score = None
    num_attributes_scored: int = 0

    @property
    def attribute_mA(self) -> list[Score]:
        """Per-attribute (positive recall + negative recall) / 2; ``None`` for an attribute
        without positives or without negatives."""
        return [None if p is None or n is None else (p + n) / 2
                for p, n in zip(self.positive_recall, self.negative_recall)]

    def as_dict(self) -> dict[str, Any]:
        """All fields as plain Python types (JSON-serialisable; "n/a" is ``None``)."""
        return asdict(self)

    def _threshold_text(self) -> str:
        if isinstance(self.threshold, list):
            return "per-attribute thresholds"
        return f"threshold {self.threshold:g}"

    def paper_row(self) -> str:
        """One line in the paper's format, in percent: ``mA 87.47 | Acc 83.78 | ...``."""
        return (
            f"mA {percent(self.mA)} | Acc {percent(self.accuracy)} | "
            f"Prec {percent(self.precision)} | Rec {percent(self.recall)} | "
            f"F1 {percent(self.f1)} ({self._threshold_text()})"
        )

    def label_row(self) -> str:
        """The label-based means, in percent, and over how many attributes they are taken:
        ``mAP 81.20 | label-based Prec 70.11 | label-based F1 68.40 (means over the 26 of
        26 attributes with positives and negatives in the split)``."""
        return (
            f"mAP {percent(self.mAP)} | label-based Prec {percent(self.mean_attribute_precision)} | "
            f"label-based F1 {percent(self.mean_attribute_f1)} (means over the {self.num_attributes_scored} of "
            f"{len(self.attribute_names)} attributes with positives and negatives in the split)"
        )

    def per_attribute_table(self) -> str:
        """Plain-text table: name, threshold, #pos, #neg, positive / negative recall, mA,
        precision, F1 and AP in percent ("n/a" where undefined); the last row holds the means."""
        names = self.attribute_names
        thresholds = self.threshold if isinstance(self.threshold, list) else [self.threshold] * len(names)
        width = max([len("attribute")] + [len(n) for n in names])
        titles = ("#pos", "#neg", "pos_rec", "neg_rec", "mA", "prec", "F1", "AP")
        header = f"{'attribute':<{width}}  {'thr':>5}" + "".join(f"  {title:>7}" for title in titles)
        lines = [header, "-" * len(header)]

        def column(values: list, i: int) -> Any:
            return values[i] if len(values) == len(names) else "?"

        for i, name in enumerate(names):
            scores = (self.positive_recall[i], self.negative_recall[i], self.attribute_mA[i],
                      column(self.attribute_precision, i), column(self.attribute_f1, i),
                      column(self.average_precision, i))
            lines.append(
                f"{name:<{width}}  {thresholds[i]:>5.2f}  {column(self.num_positives, i):>7}  "
                f"{column(self.num_negatives, i):>7}" + "".join(f"  {percent(v):>7}" for v in scores)
            )
        lines.append("-" * len(header))
        means = (self.mA, self.mean_attribute_precision, self.mean_attribute_f1, self.mAP)
        lines.append(f"{'mean':<{width}}  {'':>5}" + "".join(f"  {'':>7}" for _ in range(4))
                     + "".join(f"  {percent(v):>7}" for v in means))
        return "\n".join(lines)


def percent(value: Any) -> str:
    """A fraction as ``"87.47"``, or ``"n/a"`` for ``None`` (or a non-number such as ``"?"``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{100 * value:.2f}"
    return "n/a" if value is None else str(value)


# --------------------------------------------------------------------------------------
# Computation
# --------------------------------------------------------------------------------------


def _recalls(predicted: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-attribute (positive recall, negative recall, #positives, #negatives); a recall
    of an empty class is 0 here (callers decide whether that means "n/a")."""
    positive = labels == 1
    negative = labels == 0
    num_pos = positive.sum(axis=0)
    num_neg = negative.sum(axis=0)
    true_pos = (positive & predicted).sum(axis=0)
    true_neg = (negative & ~predicted).sum(axis=0)
    return _safe_divide(true_pos, num_pos), _safe_divide(true_neg, num_neg), num_pos, num_neg


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Average precision of ranking ``scores`` (1-D) against the bool ``positive`` (same
    shape, at least one True): the sum over the distinct scores, from the highest, of
    (recall gained) × (precision at that score), tied scores counted together."""
    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], positive[order]
    true_pos = np.cumsum(positive)
    # the last position of each run of equal scores is where that threshold's counts stand
    ends = np.r_[np.flatnonzero(np.diff(scores) != 0), scores.size - 1]
    true_pos = true_pos[ends].astype(np.float64)
    precision = true_pos / (ends + 1)
    recall = true_pos / true_pos[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _mean(values: np.ndarray, mask: np.ndarray) -> Score:
    return float(values[mask].mean()) if mask.any() else None


def _listed(values: np.ndarray, mask: np.ndarray) -> list[Score]:
    return [float(v) if keep else None for v, keep in zip(values, mask)]


def compute_par_metrics(
    probs: Any,
    labels: Any,
    threshold: float | Sequence[float] | np.ndarray = 0.5,
    attribute_names: Sequence[str] | None = None,
) -> ParMetrics:
    """Compute the label-based (mA, mAP, per-attribute precision and F1) and the
    instance-based (Acc / Prec / Rec / F1) metrics; see the module docstring.

    Args:
        probs: (M, N) probabilities in [0, 1] (numpy array, torch tensor or nested lists).
            Logits are rejected: apply a sigmoid first.
        labels: (M, N) labels in {0, 1, 2}; 2 (uncertain) entries are ignored.
        threshold: a float, or N floats (one per attribute), each in [0, 1];
            an entry is predicted positive when ``prob > threshold``.
        attribute_names: optional N names, used by :meth:`ParMetrics.per_attribute_table`.
    """
    probs, labels = _check_pair(probs, labels)
    num_samples, num_attributes = labels.shape
    if num_samples == 0:
        raise ValueError("cannot compute metrics on zero samples")
    names = _check_names(attribute_names, num_attributes)
    choice = resolve_threshold(threshold=threshold, num_attributes=num_attributes, attribute_names=names)
    thresholds = np.asarray(choice.values(num_attributes), dtype=np.float64)

    certain = labels != 2
    predicted = (probs > thresholds[None, :]) & certain  # P, uncertain entries removed
    truth = labels == 1  # G

    pos_recall, neg_recall, num_pos, num_neg = _recalls(predicted, labels)
    has_pos, has_neg = num_pos > 0, num_neg > 0
    scored = has_pos & has_neg
    true_pos = (predicted & truth).sum(axis=0)
    attr_precision = _safe_divide(true_pos, predicted.sum(axis=0))
    attr_f1 = _safe_divide(2 * attr_precision * pos_recall, attr_precision + pos_recall)
    attr_ap = np.array([
        average_precision(probs[certain[:, i], i], truth[certain[:, i], i]) if scored[i] else 0.0
        for i in range(num_attributes)
    ])

    intersection = (predicted & truth).sum(axis=1)
    union = (predicted | truth).sum(axis=1)
    accuracy = _safe_divide(intersection, union)
    precision = _safe_divide(intersection, predicted.sum(axis=1))
    recall = _safe_divide(intersection, truth.sum(axis=1))
    f1 = _safe_divide(2 * precision * recall, precision + recall)

    mean_prec, mean_rec = float(precision.mean()), float(recall.mean())
    return ParMetrics(
        mA=_mean((pos_recall + neg_recall) / 2, scored),
        accuracy=float(accuracy.mean()),
        precision=mean_prec,
        recall=mean_rec,
        f1=float(f1.mean()),
        threshold=choice.value,
        positive_recall=_listed(pos_recall, has_pos),
        negative_recall=_listed(neg_recall, has_neg),
        attribute_names=names,
        num_samples=int(num_samples),
        num_positives=[int(v) for v in num_pos],
        num_negatives=[int(v) for v in num_neg],
        num_uncertain=int((~certain).sum()),
        num_attributes_without_positives=int((~has_pos).sum()),
        num_attributes_without_negatives=int((~has_neg).sum()),
        f1_of_means=float(_safe_divide(2 * mean_prec * mean_rec, mean_prec + mean_rec)),
        mAP=_mean(attr_ap, scored),
        attribute_precision=_listed(attr_precision, scored),
        attribute_f1=_listed(attr_f1, scored),
        average_precision=_listed(attr_ap, scored),
        mean_attribute_precision=_mean(attr_precision, scored),
        mean_attribute_f1=_mean(attr_f1, scored),
        num_attributes_scored=int(scored.sum()),
    )


class ParMetricAccumulator:
    """Collects (probs, labels) batches and computes :class:`ParMetrics` over all of them.

    PAR metrics are not additive over batches (per-sample and per-attribute ratios), so
    the accumulator stores the arrays; :attr:`probs` / :attr:`labels` give them back
    concatenated, e.g. to gather them across processes before :meth:`compute`.

    Example::

        acc = ParMetricAccumulator(num_attributes=26)
        for batch in loader:
            acc.update(torch.sigmoid(model(**batch).logits), batch["labels"])
        print(acc.compute(threshold=0.5).paper_row())
    """

    def __init__(self, num_attributes: int):
        if int(num_attributes) < 1:
            raise ValueError(f"num_attributes must be positive, got {num_attributes}")
        self.num_attributes = int(num_attributes)
        self._probs: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []

    def update(self, probs: Any, labels: Any) -> None:
        """Add a batch: ``probs`` (B, N) in [0, 1], ``labels`` (B, N) in {0, 1, 2}."""
        probs, labels = _check_pair(probs, labels, self.num_attributes)
        self._probs.append(probs)
        self._labels.append(labels)

    @property
    def num_samples(self) -> int:
        return sum(len(p) for p in self._probs)

    @property
    def probs(self) -> np.ndarray:
        """All probabilities so far, (M, N) float64."""
        return np.concatenate(self._probs) if self._probs else np.zeros((0, self.num_attributes))

    @property
    def labels(self) -> np.ndarray:
        """All labels so far, (M, N) int8."""
        return np.concatenate(self._labels) if self._labels else np.zeros((0, self.num_attributes), np.int8)

    def compute(
        self,
        threshold: float | Sequence[float] | np.ndarray = 0.5,
        attribute_names: Sequence[str] | None = None,
    ) -> ParMetrics:
        """:func:`compute_par_metrics` over every sample added so far."""
        if not self._probs:
            raise ValueError("no samples were added; call update() first")
        return compute_par_metrics(self.probs, self.labels, threshold, attribute_names)

    def reset(self) -> None:
        self._probs.clear()
        self._labels.clear()


def calibrate_thresholds(
    probs: Any,
    labels: Any,
    grid: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """Per-attribute thresholds that maximise each attribute's label-based accuracy.

    For each attribute i and each candidate t in ``grid`` the score is
    (PR_i(t) + NR_i(t)) / 2 on the given split (uncertain entries excluded, the recall of
    an empty class counts 0, so such an attribute simply gets the best t of the class it
    has); the best t is kept, ties going to the t
    closest to 0.5 (then to the smaller t). Use a validation split, never the test split.

    Args:
        probs, labels: (M, N) as for :func:`compute_par_metrics`.
        grid: candidate thresholds in [0, 1]; default 0.01, 0.02, ..., 0.99.

    Returns:
        (N,) float64 array of thresholds, usable as ``threshold=`` elsewhere here.
    """
    probs, labels = _check_pair(probs, labels)
    if grid is None:
        grid = np.round(np.linspace(0.01, 0.99, 99), 2)
    grid = np.asarray(_to_numpy(grid), dtype=np.float64).reshape(-1)
    if grid.size == 0 or np.isnan(grid).any() or grid.min() < 0.0 or grid.max() > 1.0:
        raise ValueError("grid must be a non-empty sequence of thresholds in [0, 1]")
    # Visit candidates by preference (closest to 0.5, then smaller) and keep the first
    # maximum: a later candidate replaces the best only when strictly better.
    order = sorted(range(grid.size), key=lambda k: (abs(grid[k] - 0.5), grid[k]))
    certain = labels != 2
    best_score = np.full(labels.shape[1], -np.inf)
    best = np.full(labels.shape[1], 0.5)
    for k in order:
        predicted = (probs > grid[k]) & certain
        pos_recall, neg_recall, _, _ = _recalls(predicted, labels)
        score = (pos_recall + neg_recall) / 2
        better = score > best_score + 1e-12
        best_score[better] = score[better]
        best[better] = grid[k]
    return best


def load_evaluate_metric(**kwargs: Any):
    """``evaluate.load(EVALUATE_METRIC_PATH, **kwargs)``: the same metrics as an ``evaluate`` module.

    Loading reads the local script only (no Hub access). ``compute(predictions=probs,
    references=labels, threshold=0.5)`` returns :meth:`ParMetrics.as_dict`.
    """
    import evaluate

    return evaluate.load(EVALUATE_METRIC_PATH, **kwargs)
