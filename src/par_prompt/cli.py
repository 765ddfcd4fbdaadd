"""The ``par-prompt`` command line: one subcommand per task, each defined next to its code.

Subcommand modules are imported only when the command line is parsed, so ``import
par_prompt.cli`` is cheap and nothing runs at import. Each module exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

SUBCOMMAND_MODULES = (
    "par_prompt.data.cli",  # convert
    "par_prompt.evaluation.cli",  # evaluate
    "par_prompt.inference.cli",  # predict, visualize
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="par-prompt", description="PromptPAR pedestrian attribute recognition: data, evaluation and inference."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
