"""Evaluate a PromptPAR model on a split of a PAR data set.

The steps, each its own function so the CLI, the example script and the training loop
share them:

1. :func:`check_attributes`: the data set must name the model's attributes, in order.
2. :func:`predict_split`: probabilities and labels of one split, through the model's
   processor (``PromptPARProcessor``, checked against the model first), with a progress bar
   (:func:`~par_prompt.evaluation.predictions.collect_predictions`). A NaN or infinite
   probability is an :class:`EvaluationError`.
3. :func:`par_prompt.thresholds.resolve_threshold` (the package's one resolver): an
   explicit threshold, else the model config's ``attribute_thresholds``, else
   ``config.threshold``; or thresholds calibrated on the validation split
   (:func:`calibrate_on_split`), never on the evaluated split.
4. :func:`~par_prompt.metrics.compute_par_metrics`, wrapped in an
   :class:`EvaluationResult` that prints the paper row, the label-based means (mAP,
   per-attribute precision and F1) and the per-attribute table, and serialises to JSON
   (:meth:`EvaluationResult.to_json_dict`, :func:`write_json`). Scores that are "n/a"
   (an attribute without positives or negatives in the split) are ``None`` in JSON.

Threshold conventions: par-prompt's default is 0.5 (``config.threshold``); the official
PromptPAR evaluation uses 0.45, so pass ``threshold=0.45`` (``--threshold 0.45``) to
compare with numbers computed by its scripts.

:func:`evaluate_model` runs them in order; :func:`save_with_thresholds` stores
calibrated thresholds in a saved copy of the model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np

from ..fileio import write_json_atomic
from ..metrics import ParMetrics, calibrate_thresholds, compute_par_metrics, percent
from ..progress import progress_bar
from ..thresholds import ThresholdChoice, resolve_threshold
from .predictions import collect_predictions

if TYPE_CHECKING:  # pragma: no cover
    from ..data.pardata import ParData

__all__ = [
    "EvaluationError",
    "EvaluationResult",
    "ThresholdChoice",
    "calibrate_on_split",
    "check_attributes",
    "check_split",
    "evaluate_model",
    "predict_split",
    "resolve_threshold",
    "save_with_thresholds",
    "write_json",
]

logger = logging.getLogger(__name__)

VALIDATION_SPLIT = "validation"
PAPER_COLUMNS = (("mA", "mA"), ("Acc", "accuracy"), ("Prec", "precision"), ("Rec", "recall"), ("F1", "f1"))


class EvaluationError(ValueError):
    """Input that cannot be evaluated (mismatched attributes, unknown split, bad threshold, ...).

    The message names the problem and how to fix it.
    """


# ------------------------------------------------------------------------ checks


def check_attributes(
    model_attributes: Sequence[str], data_attributes: Sequence[str], label_width: Optional[int] = None
) -> None:
    """Raise :class:`EvaluationError` unless the data set's attributes equal the model's.

    Names and order must match: the model's output ``i`` is scored against label column
    ``i``. ``label_width`` (values per label row in the data) is checked too. The error
    names the first differing positions and the names only one side has.
    """
    model_attributes, data_attributes = list(model_attributes), list(data_attributes)
    problems = []
    if label_width is not None and label_width != len(model_attributes):
        problems.append(
            f"the labels hold {label_width} values per image but the model predicts {len(model_attributes)}"
        )
    if model_attributes != data_attributes:
        if len(model_attributes) != len(data_attributes):
            problems.append(f"the model has {len(model_attributes)} attributes, the data set {len(data_attributes)}")
        only_model = [a for a in model_attributes if a not in set(data_attributes)]
        only_data = [a for a in data_attributes if a not in set(model_attributes)]
        if only_model:
            problems.append(f"only the model has {_first(only_model)}")
        if only_data:
            problems.append(f"only the data set has {_first(only_data)}")
        pairs = enumerate(zip(model_attributes, data_attributes, strict=False))  # lengths may differ
        differing = [f"#{i}: model {m!r} vs data {d!r}" for i, (m, d) in pairs if m != d]
        if differing:
            problems.append("first differences: " + "; ".join(differing[:3]))
    if problems:
        raise EvaluationError(
            "The data set does not match the model's attributes (" + "; ".join(problems) + "). Evaluate the model "
            "on the data set it was trained for, or convert the data with the model's attribute list "
            "(model.config.attributes)."
        )


def _first(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_split(data: ParData, split: str, purpose: str = "evaluate") -> None:
    """Raise :class:`EvaluationError` listing the available splits unless ``data`` has ``split``."""
    if split not in data.splits:
        raise EvaluationError(
            f"The data set has no {split!r} split to {purpose}; available splits: {', '.join(data.splits)}."
        )


def _label_width(dataset: Any) -> Optional[int]:
    length = getattr(dataset.features.get("labels"), "length", None)
    return length if isinstance(length, int) and length >= 0 else None


# ------------------------------------------------------------------- predictions


def _image_transform(model: Any, processor: Any = None):
    """The evaluation pipeline (no augmentation) of ``processor`` (the model's
    PromptPARProcessor or its image processor), after checking it against the model
    (:class:`EvaluationError` otherwise, also when there is none: guessed image settings
    would change every probability without a word, e.g. for an imported official model)."""
    from ..data.transforms import ImageTransform
    from ..inference.predict import check_image_processor

    if processor is None:
        raise EvaluationError("No processor was given: pass processor=PromptPARProcessor.from_pretrained(MODEL), "
                              "the model's own image settings.")
    try:
        image_processor = check_image_processor(model, processor)
    except ValueError as error:
        raise EvaluationError(f"The model's image processor cannot be used: {error}.") from error
    return ImageTransform.from_processor(image_processor, train=False)


def predict_split(
    model: Any, data: ParData, split: str, batch_size: int = 32, num_workers: int = 0,
    progress: Optional[bool] = None, processor: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels of ``data[split]``, in data set order (no augmentation).

    Images go through :class:`~par_prompt.data.ImageTransform` built from ``processor``
    (the model's PromptPARProcessor), i.e. the same size, padding and normalisation as
    at inference.
    ``progress``: show a progress bar over the batches (None: unless transformers' or
    datasets' progress bars are switched off; see :mod:`par_prompt.progress`).
    :class:`EvaluationError` when the model returns NaN or infinite probabilities.
    """
    from torch.utils.data import DataLoader

    check_split(data, split, "evaluate")
    if int(batch_size) < 1:
        raise EvaluationError(f"batch_size must be a positive integer, got {batch_size}.")
    if int(num_workers) < 0:
        raise EvaluationError(f"num_workers must be 0 or more, got {num_workers}.")
    dataset = data.with_image_transforms(_image_transform(model, processor), train_split=None)[split]
    loader = DataLoader(dataset, batch_size=int(batch_size), shuffle=False, num_workers=int(num_workers))
    bar = progress_bar(loader, total=len(loader), desc=f"evaluate {split}", unit="batch", enabled=progress)
    try:
        probs, labels = collect_predictions(model, bar)
    finally:
        bar.close()
    bad = ~np.isfinite(probs)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise EvaluationError(
            f"The model returned NaN or infinite probabilities for {rows.size} of {len(probs)} images of the "
            f"{split!r} split (first: image {int(rows[0])}): its weights or its image processor settings hold "
            "NaN/inf values, or the computation overflowed in half precision. Re-download or re-save the model."
        )
    return probs, labels


def calibrate_on_split(
    model: Any,
    data: ParData,
    split: str = VALIDATION_SPLIT,
    batch_size: int = 32,
    num_workers: int = 0,
    grid: Optional[Sequence[float]] = None,
    processor: Any = None,
) -> np.ndarray:
    """Per-attribute thresholds maximising each attribute's mA on ``data[split]``
    (:func:`~par_prompt.metrics.calibrate_thresholds`); a (N,) float64 array."""
    check_split(data, split, "calibrate the thresholds on")
    check_attributes(model.config.attributes, data.attributes, _label_width(data.splits[split]))
    probs, labels = predict_split(model, data, split, batch_size, num_workers, processor=processor)
    return calibrate_thresholds(probs, labels, grid=grid)


# ------------------------------------------------------------------------ result


@dataclass
class EvaluationResult:
    """The metrics of one evaluation and what they were computed on.

    Attributes:
        metrics: the :class:`~par_prompt.metrics.ParMetrics` (fractions in [0, 1]).
        threshold: the :class:`ThresholdChoice` used.
        model: the model id or path evaluated.
        dataset: the data set id or path.
        split: the evaluated split.
        calibration_split: the split the thresholds were calibrated on, if any.
        calibration_images: its number of images.
    """

    metrics: ParMetrics
    threshold: ThresholdChoice
    model: Optional[str]
    dataset: Optional[str]
    split: str
    calibration_split: Optional[str] = None
    calibration_images: Optional[int] = None

    @property
    def num_images(self) -> int:
        return self.metrics.num_samples

    def paper_numbers(self) -> dict[str, Optional[float]]:
        """mA, Acc, Prec, Rec, F1 in percent, rounded to two decimals (the paper's format);
        ``None`` for "n/a" (mA when no attribute has both positives and negatives)."""
        return {title: _percent(getattr(self.metrics, field)) for title, field in PAPER_COLUMNS}

    def paper_row(self) -> str:
        """``mA 87.47 | Acc 83.78 | Prec 89.27 | Rec 91.70 | F1 90.15 | threshold global 0.50``."""
        cells = [f"{title} {percent(getattr(self.metrics, field))}" for title, field in PAPER_COLUMNS]
        return " | ".join(cells + [f"threshold {self.threshold.describe()}"])

    def report(self) -> str:
        """The text the CLI prints: a header, the paper row, the label-based means and the
        per-attribute table."""
        header = (
            f"PromptPAR evaluation of {self.model or 'the model'} on {self.dataset or 'the data set'}, "
            f"split {self.split!r} ({self.num_images} images)"
        )
        return "\n".join([header, "", self.paper_row(), self.metrics.label_row(), "",
                          self.metrics.per_attribute_table()])

    def to_json_dict(self) -> dict[str, Any]:
        """Everything printed, as JSON-ready data.

        ``paper_row``, ``label_based`` and ``per_attribute`` are in percent with two
        decimals, as printed; ``metrics`` holds the unrounded fractions of
        :meth:`ParMetrics.as_dict`. "n/a" is ``None`` everywhere.
        """
        m = self.metrics
        thresholds = self.threshold.values(len(m.attribute_names))
        per_attribute = [
            {
                "attribute": name,
                "threshold": thresholds[i],
                "num_positives": m.num_positives[i],
                "num_negatives": m.num_negatives[i],
                "positive_recall": _percent(m.positive_recall[i]),
                "negative_recall": _percent(m.negative_recall[i]),
                "mA": _percent(m.attribute_mA[i]),
                "precision": _percent(m.attribute_precision[i]),
                "f1": _percent(m.attribute_f1[i]),
                "average_precision": _percent(m.average_precision[i]),
            }
            for i, name in enumerate(m.attribute_names)
        ]
        return {
            "model": self.model,
            "dataset": self.dataset,
            "split": self.split,
            "num_images": self.num_images,
            "threshold": {
                "description": self.threshold.describe(),
                "source": self.threshold.source,
                "per_attribute": self.threshold.per_attribute,
                "value": None if self.threshold.per_attribute else self.threshold.value,
                "values": thresholds,
            },
            "calibration": (
                None if self.calibration_split is None
                else {"split": self.calibration_split, "num_images": self.calibration_images}
            ),
            "units": {"paper_row": "percent", "label_based": "percent", "per_attribute": "percent",
                      "metrics": "fraction"},
            "paper_row": self.paper_numbers(),
            "label_based": {
                "mA": _percent(m.mA),
                "mAP": _percent(m.mAP),
                "precision": _percent(m.mean_attribute_precision),
                "f1": _percent(m.mean_attribute_f1),
                "num_attributes_scored": m.num_attributes_scored,
                "num_attributes": len(m.attribute_names),
            },
            "per_attribute": per_attribute,
            "metrics": m.as_dict(),
        }


def _percent(value: Optional[float]) -> Optional[float]:
    """A fraction in percent with two decimals; ``None`` ("n/a") stays ``None``."""
    return None if value is None else round(100 * value, 2)


def write_json(data: dict[str, Any], path: Union[str, os.PathLike]) -> Path:
    """Write ``data`` as indented JSON, atomically (a temporary file renamed into place),
    creating missing folders. (The ``evaluate`` command checks its ``--output`` with
    :func:`par_prompt.fileio.check_output_file` before evaluating.)"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(path, data)


# ---------------------------------------------------------------------- pipeline


def evaluate_model(
    model: Any,
    data: ParData,
    split: str = "test",
    *,
    threshold: Optional[float] = None,
    calibrate: bool = False,
    calibration_split: str = VALIDATION_SPLIT,
    batch_size: int = 32,
    num_workers: int = 0,
    model_id: Optional[str] = None,
    dataset_id: Optional[str] = None,
    processor: Any = None,
) -> EvaluationResult:
    """Evaluate ``model`` on ``data[split]``.

    Args:
        model: a :class:`~par_prompt.PromptPARModel`.
        processor: its :class:`~par_prompt.PromptPARProcessor` (the images are prepared
            as at inference); without one, CLIP's mean and std at the model's size.
        data: the :class:`~par_prompt.data.ParData` (its attributes must equal the model's).
        split: the split to score.
        threshold: a global threshold in [0, 1] overriding the model config's.
        calibrate: calibrate per-attribute thresholds on ``calibration_split`` and score
            with them. Refused when ``split`` is that split: thresholds tuned on the
            labels they are scored against give optimistic numbers.
        batch_size, num_workers: of the data loader.
        model_id, dataset_id: recorded in the result (for the report and the JSON).

    Returns:
        The :class:`EvaluationResult`; with ``calibrate``, ``result.threshold.value`` is
        the list of calibrated thresholds (e.g. for :func:`save_with_thresholds`).
    """
    check_split(data, split, "evaluate")
    if calibrate:
        if threshold is not None:
            raise EvaluationError(
                "Give either a threshold or calibrate, not both: calibration chooses one threshold per attribute."
            )
        if split == calibration_split:
            raise EvaluationError(
                f"Cannot calibrate on the {split!r} split and evaluate on it too: thresholds tuned on the labels "
                "they are scored against inflate the metrics. Evaluate another split (e.g. test) with calibration, "
                "or evaluate this split without it."
            )
        check_split(data, calibration_split, "calibrate the thresholds on")
    else:
        try:
            choice = resolve_threshold(model.config, threshold, given_as="--threshold")
        except ValueError as error:
            raise EvaluationError(str(error)) from None
    check_attributes(model.config.attributes, data.attributes, _label_width(data.splits[split]))

    calibration_images = None
    if calibrate:
        calibrated = calibrate_on_split(model, data, calibration_split, batch_size, num_workers,
                                        processor=processor)
        calibration_images = len(data.splits[calibration_split])
        choice = ThresholdChoice([float(t) for t in calibrated], f"calibrated on {calibration_split}")

    probs, labels = predict_split(model, data, split, batch_size, num_workers, processor=processor)
    metrics = compute_par_metrics(probs, labels, threshold=choice.value, attribute_names=model.config.attributes)
    return EvaluationResult(
        metrics=metrics, threshold=choice, model=model_id, dataset=dataset_id, split=split,
        calibration_split=calibration_split if calibrate else None, calibration_images=calibration_images,
    )


def save_with_thresholds(model: Any, thresholds: Sequence[float], directory: Union[str, os.PathLike],
                         processor: Any = None) -> Path:
    """Save ``model`` to ``directory`` with ``config.attribute_thresholds = thresholds``,
    and ``processor`` (its PromptPARProcessor) with it when given.

    ``save_pretrained`` writes atomically. The in-memory model's config is restored
    afterwards, so the call has no lasting side effect on ``model``.
    """
    try:
        values = resolve_threshold(model.config, list(thresholds), given_as="thresholds").values(
            model.config.num_attributes)
    except TypeError:
        raise EvaluationError(f"thresholds must be one number per attribute, got {type(thresholds).__name__} "
                              f"{thresholds!r}.") from None
    except ValueError as error:
        raise EvaluationError(str(error)) from None
    previous = model.config.attribute_thresholds
    model.config.attribute_thresholds = values
    try:
        model.save_pretrained(directory)
        if processor is not None:
            processor.save_pretrained(directory)
    finally:
        model.config.attribute_thresholds = previous
    return Path(directory)
