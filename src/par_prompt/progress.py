"""Progress bars for long loops (conversion, evaluation, prediction of many images, training).

One rule for the whole package: a bar is shown only when both Hugging Face switches allow
it, ``transformers``' (``transformers.utils.logging.disable_progress_bar()``) and
``datasets``' (``datasets.disable_progress_bars()``, or ``HF_DATASETS_DISABLE_PROGRESS_BARS=1``),
and ``enabled`` is not False. Bars write to stderr, so stdout stays machine-readable.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional


def progress_bars_enabled() -> bool:
    """Whether transformers and datasets both allow progress bars."""
    from transformers.utils import logging as hf_logging

    if not hf_logging.is_progress_bar_enabled():
        return False
    try:
        from datasets.utils.logging import is_progress_bar_enabled
    except ImportError:  # pragma: no cover - datasets is a dependency
        return True
    return bool(is_progress_bar_enabled())


def progress_bar(
    iterable: Optional[Iterable[Any]] = None,
    *,
    total: Optional[int] = None,
    desc: Optional[str] = None,
    unit: str = "it",
    enabled: Optional[bool] = None,
    **kwargs: Any,
):
    """A ``tqdm`` bar over ``iterable`` (or a manual one with ``total``), or a silent
    stand-in with the same ``update`` / ``set_postfix`` / ``close`` methods when bars are
    switched off (see the module docstring)."""
    from tqdm.auto import tqdm

    show = progress_bars_enabled() if enabled is None else (enabled and progress_bars_enabled())
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not show, dynamic_ncols=True, **kwargs)
