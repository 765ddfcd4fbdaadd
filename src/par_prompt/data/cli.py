"""The ``par-prompt convert`` subcommand.

``register(subparsers)`` adds it to the main parser (``par_prompt.cli``); ``run(args)``
executes it and returns the exit code: 0 on success, 2 on bad input (one line on stderr;
no partial output is left), 1 when an optional dependency is missing. ``convert --help``
prints the file layout every converter expects, taken from the reader modules'
docstrings (imported only then).
"""

from __future__ import annotations

import argparse
import inspect
import logging
import pickle
import re
import textwrap

from .converters import KNOWN_DATASETS

logger = logging.getLogger(__name__)

_EXAMPLES = """examples:
  par-prompt convert pa100k --src /data/PA100k --out data/pa100k
  par-prompt convert rapv2 --src /data/RAPv2 --out data/rapv2 --partition 0
  par-prompt convert csv --src labels.csv --images photos/ --out data/mine
  par-prompt convert rethinking --src /data/PETA/dataset_all.pkl --out data/peta"""


def layouts() -> str:
    """The expected files of every converter: each reader module's docstring, as plain text."""
    from .converters import reader_module

    seen, parts = set(), []
    for name in KNOWN_DATASETS:
        module = reader_module(name)
        if module.__name__ in seen:
            continue
        seen.add(module.__name__)
        names = [n for n in KNOWN_DATASETS if reader_module(n) is module]
        text = inspect.cleandoc(module.__doc__ or "")
        text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text).replace("``", "").replace("::\n", ":\n")
        parts.append(f"=== {' / '.join(names)} ===\n{text}")
    return "file layouts:\n\n" + "\n\n".join(parts)


class _HelpWithLayouts(argparse.Action):
    """``-h`` / ``--help``: the usual help, then the file layouts (built only when asked)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.epilog = f"{_EXAMPLES}\n\n{layouts()}"
        parser.print_help()
        parser.exit()


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``convert NAME --src PATH --out DIR [--images DIR] [--partition K] ...``."""
    parser = subparsers.add_parser(
        "convert",
        help="convert a PAR data set (a benchmark, your CSV, a Rethinking_of_PAR pickle) into a "
        "Hugging Face DatasetDict",
        description=textwrap.fill(
            "Convert a pedestrian attribute data set, from its files as downloaded, into a "
            "datasets.DatasetDict saved to --out. Known datasets (any case): " + ", ".join(KNOWN_DATASETS) + ". "
            "--help lists the files each one expects.",
            width=88,
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    parser.add_argument("-h", "--help", action=_HelpWithLayouts, help="show this help and the file layouts")
    parser.add_argument("name", metavar="NAME", help="dataset name: " + ", ".join(KNOWN_DATASETS))
    parser.add_argument(
        "--src", required=True, metavar="PATH",
        help="folder holding the downloaded files (csv, rethinking: the CSV or pickle file)",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR",
        help="output directory: new, empty, or an earlier conversion (with --overwrite)",
    )
    parser.add_argument(
        "--images", metavar="DIR",
        help="folder the image names are relative to (default: found in --src; csv: the CSV's folder; "
        "rethinking: next to the pickle)",
    )
    parser.add_argument(
        "--sentences", metavar="FILE",
        help="one sentence per attribute: a text file, one per line in attribute order, or a JSON object "
        "{attribute: sentence}",
    )
    parser.add_argument(
        "--partition", type=int, default=0, metavar="K", help="which partition (0-based, default 0)"
    )
    parser.add_argument(
        "--seed", type=int, default=None, metavar="N",
        help="csv without a split column: seed of the 80/10/10 random split (default 0)",
    )
    parser.add_argument(
        "--skip-missing", action="store_true", help="skip images missing on disk (count logged)"
    )
    parser.add_argument(
        "--skip-corrupt", action="store_true",
        help="skip unreadable images and listed paths that are no regular files (count logged)",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace an earlier conversion at --out (never any other directory)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``convert`` for parsed ``args``; returns the exit code."""
    from ..cli import report_error
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
            images=args.images,
            sentences=args.sentences,
            seed=args.seed,
        )
    except (ValueError, OSError, pickle.UnpicklingError) as error:  # ParDataError is a ValueError
        return report_error("convert", error)
    except ImportError as error:
        report_error("convert", error)
        return 1
    sizes = ", ".join(f"{split}: {len(split_data)}" for split, split_data in dataset.items())
    print(f"wrote {args.out} ({sizes})")
    return 0
