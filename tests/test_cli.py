"""The shared conventions of the ``par-prompt`` command line (par_prompt.cli)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import par_prompt
from par_prompt import cli


def test_flags_are_normalized_to_dashes():
    argv = ["predict", "--batch_size=4", "--top_k", "3", "a_b.jpg", "--", "--not_a_flag"]
    assert cli.normalize_flags(argv) == ["predict", "--batch-size=4", "--top-k", "3", "a_b.jpg", "--", "--not_a_flag"]
    # the value after '=' keeps its underscores
    assert cli.normalize_flags(["--out=my_dir"]) == ["--out=my_dir"]


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"par-prompt {par_prompt.__version__}"


def test_python_dash_m_runs_the_command_line():
    done = subprocess.run([sys.executable, "-m", "par_prompt", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"par-prompt {par_prompt.__version__}"


def test_unexpected_bad_input_becomes_one_line_and_exit_2(capsys, monkeypatch):
    def broken(args):
        raise ValueError("the file\nis bad")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser.set_defaults(func=broken)
    for sub in parser._subparsers._group_actions[0].choices.values():
        sub.set_defaults(func=broken)
    assert cli.main(["predict", "--model", "x", "img.jpg"]) == 2
    err = capsys.readouterr().err
    assert err == "par-prompt predict: error: the file is bad\n"
    monkeypatch.setenv("PAR_PROMPT_DEBUG", "1")
    with pytest.raises(ValueError):
        cli.main(["predict", "--model", "x", "img.jpg"])


def test_key_errors_read_as_missing_keys():
    assert cli.one_line(KeyError("labels")) == "missing key 'labels'"


@pytest.mark.parametrize("argv,command", [
    (["convert", "csv"], "convert"),
    (["evaluate", "--model", "m", "--dataset", "d", "--batch-size", "abc"], "evaluate"),
    (["export", "onnx", "--model", "m"], "export onnx"),
    (["predict", "--model", "m", "--top-k", "-1", "a.jpg"], "predict"),
    (["train", "--epochs", "zero"], "train"),
    ([], ""),
])
def test_usage_errors_of_every_command_are_one_line(capsys, argv, command):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    prefix = f"par-prompt {command}: error: " if command else "par-prompt: error: "
    assert err.startswith(prefix) and err.endswith("(see --help)\n") and err.count("\n") == 1, err


def test_python_warnings_of_a_command_are_one_line(capsys, monkeypatch):
    import warnings

    def warns(args):
        warnings.warn("sentences were made\nfrom a template", UserWarning)
        return 0

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    for sub in parser._subparsers._group_actions[0].choices.values():
        sub.set_defaults(func=warns)
    assert cli.main(["predict", "--model", "x", "img.jpg"]) == 0
    assert capsys.readouterr().err == "par-prompt predict: warning: sentences were made from a template\n"
