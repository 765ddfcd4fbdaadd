"""Progress bars honour the transformers and datasets switches (par_prompt.progress)."""

from __future__ import annotations

import datasets
from transformers.utils import logging as hf_logging

from par_prompt.progress import progress_bar, progress_bars_enabled


def _shown(capsys) -> bool:
    list(progress_bar(range(3), desc="work", mininterval=0))
    return "work" in capsys.readouterr().err


def test_progress_bars_follow_both_switches(capsys):
    try:
        hf_logging.enable_progress_bar()
        datasets.enable_progress_bars()
        assert progress_bars_enabled() and _shown(capsys)
        hf_logging.disable_progress_bar()
        assert not progress_bars_enabled() and not _shown(capsys)
        hf_logging.enable_progress_bar()
        datasets.disable_progress_bars()
        assert not progress_bars_enabled() and not _shown(capsys)
    finally:
        hf_logging.enable_progress_bar()
        datasets.enable_progress_bars()


def test_enabled_false_silences_and_items_still_flow(capsys):
    assert list(progress_bar(range(4), desc="quiet", enabled=False)) == [0, 1, 2, 3]
    assert "quiet" not in capsys.readouterr().err
