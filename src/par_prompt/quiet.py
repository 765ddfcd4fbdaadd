"""Quieting what other libraries print while a piece of work runs.

Loading a backbone makes transformers report unused weights and show loading bars,
``torch.onnx`` notes optional packages it does not need, writing a model shows a bar:
useful to a library's own user, noise in par-prompt's output. :func:`quiet_libraries`
is the one way the package hides such output, for one block at a time, restoring every
setting it changed when the block ends. Errors are never hidden.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from typing import Iterator, Union

__all__ = ["quiet_libraries"]


@contextmanager
def quiet_libraries(*loggers: str, bars: bool = False, future_warnings: Union[bool, str] = False,
                    enabled: bool = True) -> Iterator[None]:
    """Within the block: the ``loggers`` (e.g. ``"transformers"``) report errors only;
    ``bars=True`` switches transformers' progress bars off (and with them the package's
    own, see :mod:`par_prompt.progress`); ``future_warnings`` hides ``FutureWarning``\\ s,
    all of them (True) or those raised from the modules matching a regular expression.
    ``enabled=False`` (e.g. for ``--verbose``) changes nothing."""
    if not enabled:
        yield
        return
    from transformers.utils import logging as hf_logging

    levels = {name: logging.getLogger(name).level for name in loggers}
    bars_were_on = bars and hf_logging.is_progress_bar_enabled()
    try:
        for name in loggers:
            logging.getLogger(name).setLevel(logging.ERROR)
        if bars:
            hf_logging.disable_progress_bar()
        with warnings.catch_warnings():
            if future_warnings:
                module = "" if future_warnings is True else future_warnings
                warnings.filterwarnings("ignore", category=FutureWarning, module=module)
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if bars_were_on:
            hf_logging.enable_progress_bar()
