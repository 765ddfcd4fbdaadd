"""The ``par-prompt`` command line: one subcommand per task, each defined next to its code.

Subcommand modules are imported only when the command line is parsed, so ``import
par_prompt.cli`` is cheap and nothing runs at import. Each module exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.

Conventions shared by every subcommand (kept here, once):

* flags are accepted with dashes or underscores (``--batch-size`` = ``--batch_size``);
* bad input ends in one line on stderr, ``par-prompt COMMAND: error: ...``, and exit
  code 2 (:func:`report_error`); a warning is one line too, ``par-prompt COMMAND:
  warning: ...``, and the command goes on (:func:`report_warning`). Subcommands report the errors they expect themselves; :func:`main` is the
  safety net for the rest of the bad-input exceptions (:data:`BAD_INPUT_ERRORS`), so a
  wrong file never ends in a traceback. ``PAR_PROMPT_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pickle
import sys
import warnings
from typing import Optional, Sequence

SUBCOMMAND_MODULES = (
    "par_prompt.data.cli",  # convert
    "par_prompt.evaluation.cli",  # evaluate
    "par_prompt.inference.cli",  # predict, visualize
    "par_prompt.official.cli",  # import-official
    "par_prompt.training.cli",  # train
    "par_prompt.onnx.cli",  # export onnx
)

#: Exceptions that mean "the input is wrong", not "par-prompt has a bug": reported in one
#: line with exit code 2. (OSError covers missing, unreadable and unwritable paths;
#: UnpicklingError covers refused pickles; ValueError covers JSON errors and bad values.)
BAD_INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError, OSError, pickle.UnpicklingError)


def one_line(message: object) -> str:
    """``message`` as a single line (whitespace, newlines included, collapsed)."""
    text = " ".join(str(message).split())
    if isinstance(message, KeyError) and text.startswith("'") and text.endswith("'"):
        text = f"missing key {text}"
    return text or type(message).__name__


def report_error(command: str, message: object) -> int:
    """Print ``par-prompt COMMAND: error: MESSAGE`` on stderr; returns 2, the bad-input exit code."""
    _report(command, "error", message)
    return 2


def report_warning(command: str, message: object) -> None:
    """Print ``par-prompt COMMAND: warning: MESSAGE`` on stderr, one line; the command goes on."""
    _report(command, "warning", message)


def _report(command: str, kind: str, message: object) -> None:
    prefix = f"par-prompt {command}" if command else "par-prompt"
    print(f"{prefix}: {kind}: {one_line(message)}", file=sys.stderr)


def normalize_flags(argv: Sequence[str]) -> list[str]:
    """Spell every long option with dashes: ``--batch_size=4`` -> ``--batch-size=4``.

    Only the option name changes (a value after ``=`` is kept as is), and nothing after
    a bare ``--`` is touched.
    """
    out: list[str] = []
    rest = False
    for token in argv:
        if rest or not token.startswith("--") or token == "--":
            rest = rest or token == "--"
            out.append(token)
            continue
        name, sep, value = token.partition("=")
        out.append("--" + name[2:].replace("_", "-") + sep + value)
    return out


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("par-prompt")
    except PackageNotFoundError:  # running from a source tree without an install
        from . import __version__

        return __version__


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (``par-prompt COMMAND: error:
    ... (see --help)``) with exit code 2, not argparse's usage block; the subcommands'
    parsers (``convert csv``, ``export onnx``, ...) are made of this class too."""

    def error(self, message: str):  # type: ignore[override]
        command = self.prog[len("par-prompt"):].strip() if self.prog.startswith("par-prompt") else self.prog
        report_error(command, f"{message} (see --help)")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="par-prompt",
        description="PromptPAR pedestrian attribute recognition: data, training, evaluation and inference. "
        "Flags may be written with dashes or underscores.",
    )
    parser.add_argument("--version", action="version", version=f"par-prompt {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=OneLineParser)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = normalize_flags(sys.argv[1:] if argv is None else [str(a) for a in argv])
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            # Python warnings (the package's own, e.g. sentences made from a template) as one
            # line each, like every other message of the command line
            warnings.showwarning = lambda message, *rest, **kw: report_warning(args.command, message)
            return int(args.func(args) or 0)
    except BAD_INPUT_ERRORS as error:
        if os.environ.get("PAR_PROMPT_DEBUG", "").strip() not in ("", "0"):
            raise
        return report_error(args.command, error)


if __name__ == "__main__":
    sys.exit(main())
