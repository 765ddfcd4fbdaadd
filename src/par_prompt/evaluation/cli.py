"""The ``par-prompt evaluate`` subcommand (also run by ``examples/evaluate_par.py``).

``register(subparsers)`` adds it to the main parser (``par_prompt.cli``);
:func:`add_arguments` adds its options to any parser; ``run(args)`` executes it and
returns the exit code: 0 on success, 2 on bad input (a one-line message on stderr).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional

logger = logging.getLogger(__name__)

PROG = "par-prompt evaluate"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options of ``evaluate`` to ``parser``."""
    parser.add_argument(
        "--model", required=True, metavar="ID_OR_PATH", help="saved PromptPAR model: a directory or a Hub id",
    )
    parser.add_argument(
        "--dataset", required=True, metavar="PATH_OR_HUB_ID",
        help="PAR data set: a directory from `par-prompt convert` / save_to_disk, or a Hub id",
    )
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument(
        "--threshold", type=float, default=None, metavar="T",
        help="global threshold in [0, 1] (default: the model's per-attribute thresholds if it has them, else "
        "config.threshold)",
    )
    parser.add_argument("--batch-size", type=int, default=32, metavar="B", help="images per batch (default 32)")
    parser.add_argument("--num-workers", type=int, default=0, metavar="W", help="data loader workers (default 0)")
    parser.add_argument("--output", default=None, metavar="FILE.json", help="also write the results as JSON")
    parser.add_argument(
        "--calibrate", action="store_true",
        help="calibrate per-attribute thresholds on the validation split and evaluate with them",
    )
    parser.add_argument(
        "--save-calibrated", default=None, metavar="DIR",
        help="with --calibrate: save the model with the calibrated thresholds in its config to DIR",
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    return parser


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``evaluate --model ID_OR_PATH --dataset PATH_OR_HUB_ID [...]`` to the main parser."""
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a PromptPAR model on a PAR data set (mA, Acc, Prec, Rec, F1)",
        description=(
            "Evaluate a saved PromptPAR model on a split of a PAR data set. Prints the paper-format row "
            "(mA, Acc, Prec, Rec, F1 in percent) with the threshold used, and a per-attribute table; "
            "--output writes both as JSON."
        ),
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def _fail(message: object) -> int:
    text = " ".join(str(message).split())  # one line, whatever the exception held
    print(f"{PROG}: error: {text}", file=sys.stderr)
    return 2


def _check_options(args: argparse.Namespace) -> Optional[str]:
    """The first problem with the options alone (before anything is loaded), or None."""
    from .evaluate import EvaluationError, check_threshold

    if args.threshold is not None:
        try:
            check_threshold(args.threshold)
        except EvaluationError as error:
            return str(error)
        if args.calibrate:
            return "--threshold and --calibrate exclude each other: calibration sets one threshold per attribute."
    if args.save_calibrated is not None and not args.calibrate:
        return "--save-calibrated needs --calibrate (there are no calibrated thresholds to save otherwise)."
    if args.batch_size < 1:
        return f"--batch-size must be a positive integer, got {args.batch_size}."
    if args.num_workers < 0:
        return f"--num-workers must be 0 or more, got {args.num_workers}."
    return None


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run(args: argparse.Namespace) -> int:
    """Run ``evaluate`` for parsed ``args``; returns the exit code."""
    problem = _check_options(args)
    if problem:
        return _fail(problem)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from .. import PromptPARModel
    from ..data import load
    from ..data.common import ParDataError
    from ..data.transforms import ImageDecodeError
    from .evaluate import (
        VALIDATION_SPLIT, EvaluationError, check_split, evaluate_model, save_with_thresholds, write_json,
    )

    # the data first: it is cheaper to load, so a wrong split fails before the model is fetched
    try:
        data = load(args.dataset)
        check_split(data, args.split)
        if args.calibrate:
            check_split(data, VALIDATION_SPLIT, "calibrate the thresholds on")
    except EvaluationError as error:
        return _fail(error)
    except (ParDataError, OSError, ValueError, KeyError) as error:
        return _fail(f"cannot load the data set {args.dataset!r}: {error}")
    try:
        model = PromptPARModel.from_pretrained(args.model, device=args.device or _default_device())
    except (OSError, ValueError) as error:  # missing / not a PromptPAR folder / bad base
        return _fail(f"cannot load the model {args.model!r}: {error}")
    try:
        result = evaluate_model(
            model, data, args.split, threshold=args.threshold, calibrate=args.calibrate,
            batch_size=args.batch_size, num_workers=args.num_workers,
            model_id=str(args.model), dataset_id=str(args.dataset),
        )
    except (EvaluationError, ParDataError, ImageDecodeError) as error:
        return _fail(error)

    print(result.report())
    saved = None
    if args.save_calibrated is not None:
        saved = save_with_thresholds(model, result.threshold.value, args.save_calibrated)
        print(f"\nsaved the model with the calibrated thresholds to {saved}")
    if args.output is not None:
        payload = result.to_json_dict()
        payload["saved_calibrated_model"] = None if saved is None else str(saved)
        print(f"wrote {write_json(payload, args.output)}")
    return 0
