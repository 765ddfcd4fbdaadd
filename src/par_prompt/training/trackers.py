"""Metric logging through Accelerate's trackers, with a JSON-lines fallback.

``--report-to`` takes any tracker Accelerate supports (tensorboard, wandb, mlflow,
comet_ml, aim, clearml, dvclive, swanlab, trackio), several separated by commas, plus
``jsonl``: :class:`JSONLinesTracker`, which appends one JSON object per ``log`` call to
``OUTPUT/logs/metrics.jsonl``: ``{"step": 12, "time": 1716.2, "train/loss": 3.1, ...}``.
``auto`` (the default) is TensorBoard when installed, else jsonl; ``all`` is jsonl and
every installed tracker; ``none`` logs nowhere. An unknown name, or a tracker whose
package is not installed, is an error before training starts (Accelerate itself would
silently drop it). Only the main process writes.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Optional, Union

from accelerate.tracking import GeneralTracker

__all__ = ["JSONLinesTracker", "JSONL_FILE", "check_trackers_available", "parse_report_to", "select_trackers"]

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


#: pip package of each Accelerate tracker (for the "not installed" message).
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet_ml",
                    "aim": "aim", "clearml": "clearml", "dvclive": "dvclive", "swanlab": "swanlab",
                    "trackio": "trackio"}
SPECIAL_CHOICES = ("auto", "all", "none", "jsonl")


def accelerate_trackers() -> list[str]:
    """Every tracker name Accelerate supports (``accelerate.tracking.LOGGER_TYPE_TO_CLASS``)."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    return sorted(LOGGER_TYPE_TO_CLASS)


def installed_trackers() -> list[str]:
    """The Accelerate trackers whose package is importable here."""
    from accelerate.tracking import get_available_trackers

    return sorted(str(getattr(t, "value", t)) for t in get_available_trackers())


def tensorboard_available() -> bool:
    return "tensorboard" in installed_trackers()


def parse_report_to(report_to: str) -> list[str]:
    """The names in ``--report-to`` (comma-separated), checked to be known (not to be installed)."""
    if not isinstance(report_to, str):
        raise ValueError(f"--report-to must be a string such as tensorboard or wandb,mlflow; got {report_to!r}.")
    names = [name.strip().lower() for name in report_to.split(",") if name.strip()]
    if not names:
        raise ValueError("--report-to is empty; pass none to log nowhere.")
    known = [*SPECIAL_CHOICES, *accelerate_trackers()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"--report-to: unknown tracker {', '.join(map(repr, unknown))}; choose from "
                         f"{', '.join(known)} (several separated by commas).")
    exclusive = [name for name in names if name in ("auto", "none", "all")]
    if exclusive and len(names) > 1:
        raise ValueError(f"--report-to {exclusive[0]} cannot be combined with other trackers; got {report_to!r}.")
    return list(dict.fromkeys(names))


def check_trackers_available(report_to: str) -> None:
    """Refuse a named tracker whose package is not installed (Accelerate would silently drop it)."""
    installed = installed_trackers()
    missing = [name for name in parse_report_to(report_to) if name in TRACKER_PACKAGES and name not in installed]
    if missing:
        packages = " ".join(TRACKER_PACKAGES[name] for name in missing)
        raise ValueError(f"--report-to {', '.join(missing)}: not installed here (pip install {packages}), or choose "
                         f"another tracker; installed: {', '.join(['jsonl', *installed])}.")


def select_trackers(report_to: str, logging_dir: Union[str, os.PathLike]) -> list:
    """The ``log_with`` list for ``Accelerator`` from ``--report-to``."""
    names = parse_report_to(report_to)
    check_trackers_available(report_to)
    if names == ["none"]:
        return []
    if names == ["auto"]:
        return ["tensorboard"] if tensorboard_available() else [JSONLinesTracker(logging_dir)]
    if names == ["all"]:
        return [JSONLinesTracker(logging_dir), *installed_trackers()]
    return [JSONLinesTracker(logging_dir) if name == "jsonl" else name for name in names]
