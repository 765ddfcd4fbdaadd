"""The ``par-prompt evaluate`` subcommand (also run by ``examples/evaluate_par.py``).

``register(subparsers)`` adds it to the main parser (``par_prompt.cli``);
:func:`add_arguments` adds its options to any parser; ``run(args)`` executes it and
returns the exit code: 0 on success, 2 on bad input (a one-line message on stderr).
Everything that can be checked without the model is checked before anything is loaded:
the options, the device, and that ``--output`` and ``--save-calibrated`` can be written
(so a long evaluation never ends in "cannot write"). A progress bar on stderr follows
each split's batches (off when transformers' or datasets' progress bars are disabled).
"""

from __future__ import annotations

import argparse
import logging
from typing import Optional

logger = logging.getLogger(__name__)

COMMAND = "evaluate"


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
        "config.threshold, 0.5 unless set). The official PromptPAR evaluation uses 0.45: pass --threshold 0.45 "
        "to compare with its numbers; 0.5 is par-prompt's default",
    )
    parser.add_argument("--batch-size", type=int, default=32, metavar="B", help="images per batch (default 32)")
    parser.add_argument("--num-workers", type=int, default=0, metavar="W", help="data loader workers (default 0)")
    parser.add_argument("--output", default=None, metavar="FILE.json",
                        help="also write the results as JSON (atomically; the folder must exist)")
    parser.add_argument(
        "--calibrate", action="store_true",
        help="calibrate per-attribute thresholds on the validation split and evaluate with them",
    )
    parser.add_argument(
        "--save-calibrated", default=None, metavar="DIR",
        help="with --calibrate: save the model with the calibrated thresholds in its config to DIR",
    )
    parser.add_argument("--device", default=None,
                        help="torch device: cpu, cuda, cuda:N or mps (default: cuda if available, else cpu)")
    return parser


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``evaluate --model ID_OR_PATH --dataset PATH_OR_HUB_ID [...]`` to the main parser."""
    parser = subparsers.add_parser(
        COMMAND,
        help="evaluate a PromptPAR model on a PAR data set (mA, mAP, Acc, Prec, Rec, F1)",
        description=(
            "Evaluate a saved PromptPAR model on a split of a PAR data set. Prints the paper-format row "
            "(mA, Acc, Prec, Rec, F1 in percent) with the threshold used, the label-based mAP and mean "
            "per-attribute precision and F1, and a per-attribute table; --output writes all of it as JSON. "
            "An attribute without positives (or without negatives) in the split shows n/a for the scores that "
            "need them, and the means over attributes (mA, mAP, ...) are over the attributes that have both."
        ),
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def _fail(message: object) -> int:
    from ..cli import report_error

    return report_error(COMMAND, message)


def _check_options(args: argparse.Namespace) -> Optional[str]:
    """The first problem with the options alone (before anything is loaded), or None."""
    from ..thresholds import check_threshold

    if args.threshold is not None:
        try:
            check_threshold(args.threshold, "--threshold")
        except ValueError as error:
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


def _check_destinations(args: argparse.Namespace) -> None:
    """``ValueError`` unless ``--output`` and ``--save-calibrated`` can be written now."""
    from pathlib import Path

    from ..fileio import check_outside, check_output_file

    read = {"--model": args.model, "--dataset": args.dataset}
    if args.output is not None:
        check_output_file(args.output, "--output")
        check_outside(args.output, read, "--output")
    if args.save_calibrated is not None:
        check_outside(args.save_calibrated, read, "--save-calibrated")
        directory = Path(args.save_calibrated)
        if directory.exists() and not directory.is_dir():
            raise ValueError(f"--save-calibrated {directory} exists and is not a directory; give a directory")
        # the model's files go into the directory: it must be writable (or creatable) now
        check_output_file(directory / "config.json" if directory.is_dir() else directory, "--save-calibrated")


def run(args: argparse.Namespace) -> int:
    """Run ``evaluate`` for parsed ``args``; returns the exit code."""
    from ..inference.cli import resolve_device

    problem = _check_options(args)
    if problem:
        return _fail(problem)
    try:
        device = resolve_device(args.device)
        _check_destinations(args)
    except ValueError as error:
        return _fail(error)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from .. import PromptPARModel, PromptPARProcessor
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
        processor = PromptPARProcessor.from_pretrained(args.model)
        model = PromptPARModel.from_pretrained(args.model, device=device)
    except (OSError, ValueError, TypeError, KeyError) as error:  # missing / not a PromptPAR folder / bad base
        return _fail(f"cannot load the model {args.model!r}: {error}")
    try:
        result = evaluate_model(
            model, data, args.split, threshold=args.threshold, calibrate=args.calibrate,
            batch_size=args.batch_size, num_workers=args.num_workers,
            model_id=str(args.model), dataset_id=str(args.dataset), processor=processor,
        )
    except (EvaluationError, ParDataError, ImageDecodeError) as error:
        return _fail(error)

    print(result.report())
    saved = None
    if args.save_calibrated is not None:
        saved = save_with_thresholds(model, result.threshold.value, args.save_calibrated, processor=processor)
        print(f"\nsaved the model with the calibrated thresholds to {saved}")
    if args.output is not None:
        payload = result.to_json_dict()
        payload["saved_calibrated_model"] = None if saved is None else str(saved)
        try:
            print(f"wrote {write_json(payload, args.output)}")
        except OSError as error:  # checked at the start; the disk may have filled up since
            return _fail(f"cannot write --output {args.output}: {error}")
    return 0
