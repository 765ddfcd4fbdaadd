"""The package's one way to quiet other libraries (par_prompt.quiet) and its one-line CLI warnings."""

from __future__ import annotations

import logging
import warnings

import pytest
from transformers.utils import logging as hf_logging

from par_prompt.cli import report_warning
from par_prompt.progress import progress_bars_enabled
from par_prompt.quiet import quiet_libraries


@pytest.fixture
def settings():
    """Known starting settings, restored afterwards."""
    names = ("transformers", "torch.onnx")
    before = {name: logging.getLogger(name).level for name in names}
    bars = hf_logging.is_progress_bar_enabled()
    logging.getLogger("transformers").setLevel(logging.INFO)
    logging.getLogger("torch.onnx").setLevel(logging.NOTSET)
    hf_logging.enable_progress_bar()
    yield
    for name, level in before.items():
        logging.getLogger(name).setLevel(level)
    (hf_logging.enable_progress_bar if bars else hf_logging.disable_progress_bar)()


def test_loggers_and_bars_are_quiet_inside_and_restored_after_even_on_error(settings):
    with pytest.raises(RuntimeError, match="boom"):
        with quiet_libraries("transformers", "torch.onnx", bars=True):
            assert logging.getLogger("transformers").level == logging.ERROR
            assert logging.getLogger("torch.onnx").level == logging.ERROR
            assert not progress_bars_enabled()
            raise RuntimeError("boom")
    assert logging.getLogger("transformers").level == logging.INFO
    assert logging.getLogger("torch.onnx").level == logging.NOTSET
    assert hf_logging.is_progress_bar_enabled()


def test_bars_already_off_stay_off(settings):
    hf_logging.disable_progress_bar()
    with quiet_libraries(bars=True):
        pass
    assert not hf_logging.is_progress_bar_enabled()


def test_only_what_is_asked_for_is_quieted(settings):
    with quiet_libraries("torch.onnx"):
        assert logging.getLogger("transformers").level == logging.INFO and hf_logging.is_progress_bar_enabled()
    with quiet_libraries("transformers", bars=True, enabled=False):  # e.g. --verbose
        assert logging.getLogger("transformers").level == logging.INFO and hf_logging.is_progress_bar_enabled()


def test_future_warnings_all_or_by_module(settings):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_libraries(future_warnings=True):
            warnings.warn("old", FutureWarning)
            warnings.warn("kept", UserWarning)
        with quiet_libraries(future_warnings="some_other_module"):
            warnings.warn("from here", FutureWarning)
        warnings.warn("after", FutureWarning)
    assert [str(w.message) for w in caught] == ["kept", "from here", "after"]


def test_a_warning_is_one_line_and_names_the_command(capsys):
    report_warning("visualize", "top_k 9 asks for\nmore attributes")
    assert capsys.readouterr().err == "par-prompt visualize: warning: top_k 9 asks for more attributes\n"
