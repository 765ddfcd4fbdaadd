"""Evaluation of PromptPAR models: predictions over a split, paper metrics, thresholds.

Public names::

    collect_predictions(model, dataloader, accelerator=None) -> (probs, labels)
    evaluate_model(model, data, split="test", ..., processor=PROCESSOR) -> EvaluationResult
    predict_split(model, data, split, batch_size=32, num_workers=0, processor=PROCESSOR) -> (probs, labels)
    calibrate_on_split(model, data, split="validation", ..., processor=PROCESSOR) -> thresholds
    save_with_thresholds(model, thresholds, directory, processor=None)

PROCESSOR is the model's PromptPARProcessor (or its image processor); the functions that
read images refuse to run without it rather than guess the image settings.
    EvaluationResult, ThresholdChoice, resolve_threshold, check_attributes, check_split, write_json

The ``par-prompt evaluate`` command lives in :mod:`par_prompt.evaluation.cli`.
"""

from .evaluate import (
    EvaluationError,
    EvaluationResult,
    ThresholdChoice,
    calibrate_on_split,
    check_attributes,
    check_split,
    evaluate_model,
    predict_split,
    resolve_threshold,
    save_with_thresholds,
    write_json,
)
from .predictions import collect_predictions

__all__ = [
    "EvaluationError",
    "EvaluationResult",
    "ThresholdChoice",
    "calibrate_on_split",
    "check_attributes",
    "check_split",
    "collect_predictions",
    "evaluate_model",
    "predict_split",
    "resolve_threshold",
    "save_with_thresholds",
    "write_json",
]
