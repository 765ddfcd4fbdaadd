"""The ``par-prompt convert`` subcommand.

``register(subparsers)`` adds it to the main parser (``par_prompt.cli``); ``run(args)``
executes it and returns the exit code: 0 on success, 2 on bad input (the message goes
to stderr; no partial output is left), 1 when an optional dependency is missing.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .converters import KNOWN_DATASETS

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``convert NAME --src DIR --out DIR [--partition K] [--skip-missing] ...``."""
    parser = subparsers.add_parser(
        "convert",
        help="convert a PAR benchmark into a Hugging Face DatasetDict",
        description=(
            "Convert a pedestrian attribute benchmark, from the files as downloaded, into a "
            "datasets.DatasetDict saved to --out. Known datasets: " + ", ".join(KNOWN_DATASETS) + "."
        ),
    )
    parser.add_argument("name", metavar="NAME", help="dataset name: " + ", ".join(KNOWN_DATASETS))
    parser.add_argument("--src", required=True, metavar="DIR", help="directory holding the downloaded files")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (must not exist)")
    parser.add_argument(
        "--partition", type=int, default=0, metavar="K", help="which partition (0-based, default 0)"
    )
    parser.add_argument(
        "--skip-missing", action="store_true", help="skip images missing on disk (count logged)"
    )
    parser.add_argument("--skip-corrupt", action="store_true", help="skip unreadable images (count logged)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``convert`` for parsed ``args``; returns the exit code."""
    from .common import ParDataError
    from .converters import convert

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        dataset = convert(
            args.name,
            args.src,
            args.out,
            partition=args.partition,
            skip_missing=args.skip_missing,
            skip_corrupt=args.skip_corrupt,
            overwrite=args.overwrite,
        )
    except (ParDataError, ValueError, FileExistsError) as error:
        print(f"par-prompt convert: error: {error}", file=sys.stderr)
        return 2
    except ImportError as error:
        print(f"par-prompt convert: error: {error}", file=sys.stderr)
        return 1
    sizes = ", ".join(f"{split}: {len(split_data)}" for split, split_data in dataset.items())
    print(f"wrote {args.out} ({sizes})")
    return 0
