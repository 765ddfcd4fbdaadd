"""Metric logging through Accelerate's trackers, with a JSON-lines fallback.

``--report-to auto`` uses TensorBoard when the ``tensorboard`` package is importable and
otherwise :class:`JSONLinesTracker`, which appends one JSON object per ``log`` call to
``OUTPUT/logs/metrics.jsonl``: ``{"step": 12, "time": 1716.2, "train/loss": 3.1, ...}``.
Only the main process writes.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Optional, Union

from accelerate.tracking import GeneralTracker

__all__ = ["JSONLinesTracker", "JSONL_FILE", "select_trackers"]

JSONL_FILE = "metrics.jsonl"


def _plain(value: Any) -> Any:
    """A JSON-safe scalar (tensors and numpy scalars become Python numbers; NaN stays a string)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class JSONLinesTracker(GeneralTracker):
    """An Accelerate tracker that appends JSON lines to ``<logging_dir>/metrics.jsonl``."""

    name = "jsonl"
    requires_logging_directory = True
    main_process_only = True

    def __init__(self, logging_dir: Union[str, os.PathLike]) -> None:
        super().__init__()
        self.path = Path(logging_dir) / JSONL_FILE

    @property
    def tracker(self) -> Path:
        return self.path

    def _append(self, record: dict[str, Any]) -> None:
        from accelerate import PartialState

        if not PartialState().is_main_process:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def store_init_configuration(self, values: dict) -> None:
        self._append({"config": {key: _plain(value) for key, value in values.items()}, "time": time.time()})

    def log(self, values: dict, step: Optional[int] = None, **kwargs: Any) -> None:
        record: dict[str, Any] = {"step": step, "time": round(time.time(), 3)}
        record.update({key: _plain(value) for key, value in values.items()})
        self._append(record)


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None


def select_trackers(report_to: str, logging_dir: Union[str, os.PathLike]) -> list:
    """The ``log_with`` list for ``Accelerator`` from ``--report-to``."""
    if report_to == "none":
        return []
    if report_to == "tensorboard":
        if not tensorboard_available():
            raise ValueError("--report-to tensorboard: the tensorboard package is not installed (pip install "
                             "tensorboard), or use --report-to jsonl.")
        return ["tensorboard"]
    if report_to == "jsonl":
        return [JSONLinesTracker(logging_dir)]
    if report_to == "all":
        return [JSONLinesTracker(logging_dir)] + (["tensorboard"] if tensorboard_available() else [])
    return ["tensorboard"] if tensorboard_available() else [JSONLinesTracker(logging_dir)]
