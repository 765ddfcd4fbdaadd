"""Run a model over a data loader and collect its probabilities and labels.

This is the one place where evaluation turns batches into arrays; the evaluate command
and the training loop's validation both call :func:`collect_predictions`.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

import numpy as np
import torch

__all__ = ["collect_predictions"]


def _input_device_and_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first floating parameter (CPU/float32 if none)."""
    for param in model.parameters():
        if param.is_floating_point():
            return param.device, param.dtype
    return torch.device("cpu"), torch.float32


def _logits_of(output: Any) -> torch.Tensor:
    """``output.logits``, or the first element of a tuple output (``return_dict=False``)."""
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, (tuple, list)):
        logits = output[0]
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"the model returned {type(output).__name__} without logits")
    return logits


def collect_predictions(
    model: torch.nn.Module,
    dataloader: Iterable[dict[str, Any]],
    accelerator: Optional[Any] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels of every example of ``dataloader``, in its order.

    Args:
        model: a PromptPAR model (or a wrapper of one, e.g. prepared by ``accelerate``):
            ``model(pixel_values=...)`` must return an output with ``logits`` (B, N).
        dataloader: yields dicts with ``pixel_values`` (B, 3, S, S) and ``labels``
            (B, N, values 0 / 1 / 2).
        accelerator: an ``accelerate.Accelerator`` whose ``prepare`` the loader went
            through. Predictions are then gathered from every process with
            ``gather_for_metrics``, which drops the duplicates padding the last batch, so
            each process returns the full arrays. Without one, ``pixel_values`` are
            moved to the model's device and floating dtype.

    Returns:
        ``(probs, labels)``: ``sigmoid(logits)`` as float32 (M, N) and the labels as
        int8 (M, N).

    The model computes as in eval mode (``forward(training=False)``) under
    ``torch.inference_mode()``; its mode and state are left as they are.
    """
    device, dtype = _input_device_and_dtype(model)
    probs_parts: list[np.ndarray] = []
    label_parts: list[np.ndarray] = []
    with torch.inference_mode():
        for index, batch in enumerate(dataloader):
            missing = {"pixel_values", "labels"} - set(batch)
            if missing:
                raise KeyError(
                    f"batch {index} lacks {sorted(missing)} (it has {sorted(batch)}); the loader must yield "
                    "dicts with 'pixel_values' and 'labels', e.g. from ParData.with_image_transforms()."
                )
            pixel_values, labels = batch["pixel_values"], torch.as_tensor(batch["labels"])
            if accelerator is None:
                pixel_values = pixel_values.to(device=device, dtype=dtype)
            probs = torch.sigmoid(_logits_of(model(pixel_values=pixel_values, training=False)).float())
            if labels.shape != probs.shape:
                raise ValueError(
                    f"batch {index}: labels have shape {tuple(labels.shape)} but the model predicts "
                    f"{tuple(probs.shape)}; the data set and the model have different attribute counts."
                )
            if accelerator is not None:
                probs, labels = accelerator.gather_for_metrics((probs, labels.to(probs.device)))
            probs_parts.append(probs.cpu().numpy().astype(np.float32, copy=False))
            label_parts.append(labels.cpu().numpy().astype(np.int8))
    if not probs_parts:
        raise ValueError("the data loader yielded no batches; there is nothing to evaluate.")
    return np.concatenate(probs_parts), np.concatenate(label_parts)
