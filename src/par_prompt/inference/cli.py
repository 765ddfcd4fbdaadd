"""The ``par-prompt predict`` and ``par-prompt visualize`` subcommands.

``register(subparsers)`` adds both to the main parser (``par_prompt.cli``). Exit codes:
0 when every image was processed, 1 when some input could not be read (each such error
is reported on stderr and the other images are still processed), 2 when nothing could
run (the model does not load, the output cannot be written).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from contextlib import contextmanager
from typing import Any, Iterator, TextIO

FORMATS = ("table", "json", "csv")


def probability(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _model_arguments(parser: argparse.ArgumentParser, onnx: bool = False) -> None:
    source = parser.add_mutually_exclusive_group(required=True) if onnx else parser
    source.add_argument("--model", required=not onnx, metavar="ID_OR_PATH",
                        help="a saved PromptPAR model: local directory or Hub repository id")
    if onnx:
        source.add_argument("--onnx", metavar="FILE.onnx", help="instead of --model: a file written by `par-prompt "
                            'export onnx`, run on ONNX Runtime (needs pip install "par-prompt[onnx]")')
    parser.add_argument("--revision", default=None, help="Hub revision of the model (branch, tag or commit)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--threshold", type=probability, default=None, metavar="T",
                        help="probability threshold in [0, 1] (default: the model's stored thresholds)")
    parser.add_argument("--verbose", action="store_true", help="keep the transformers loading messages")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``predict`` and ``visualize``."""
    predict = subparsers.add_parser(
        "predict", help="predict pedestrian attributes of images",
        description="Predict the attributes of each image with a saved PromptPAR model. An unreadable image is "
                    "reported on stderr and skipped; the exit code is then 1.",
    )
    _model_arguments(predict, onnx=True)
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    predict.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    predict.add_argument("--batch-size", type=positive_int, default=32, metavar="B", help="images per forward pass")
    predict.set_defaults(func=run_predict)

    visualize = subparsers.add_parser(
        "visualize", help="draw where the model looked (region prompts, attribute attention, probabilities)",
        description="Write one PNG: the image with each region prompt group's attention over the patches, the "
                    "fusion attention of the most probable attributes, and a bar chart of all probabilities.",
    )
    _model_arguments(visualize)
    visualize.add_argument("image", metavar="IMAGE", help="image file")
    visualize.add_argument("--out", required=True, metavar="FILE.png", help="the PNG to write")
    visualize.add_argument("--top-k", type=int, default=5, metavar="K", help="attributes to draw (default 5)")
    visualize.add_argument("--panel", type=positive_int, default=160, metavar="PX", help="panel side in pixels")
    visualize.set_defaults(func=run_visualize)


# ---------------------------------------------------------------------------- shared


def _error(command: str, message: Any) -> None:
    print(f"par-prompt {command}: error: {message}", file=sys.stderr)


@contextmanager
def _quiet_transformers(verbose: bool) -> Iterator[None]:
    """Silence transformers' loading reports, progress bars and deprecation warnings
    (FutureWarning) unless ``verbose``."""
    import warnings

    from transformers.utils import logging as hf_logging

    if verbose:
        yield
        return
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_model(args: argparse.Namespace, command: str):
    """The model named by ``--model`` on ``--device``, or None after reporting why not."""
    if getattr(args, "onnx", None):  # predict --onnx: the ONNX Runtime predictor
        from ..onnx.cli import load_predictor

        return load_predictor(args, command)
    import torch

    from ..modeling import PromptPARModel

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        with _quiet_transformers(args.verbose):
            return PromptPARModel.from_pretrained(args.model, revision=args.revision, device=device)
    except (OSError, ValueError, RuntimeError) as error:
        _error(command, f"cannot load the model {args.model!r}: {error}")
        return None


# --------------------------------------------------------------------------- predict


class _Writer:
    """Writes results to ``out`` as they come, in one of :data:`FORMATS`."""

    def __init__(self, fmt: str, out: TextIO, attributes: list[str], sources: list[str]) -> None:
        self.fmt, self.out, self.attributes = fmt, out, attributes
        self.records: list[dict] = []
        self.width = max(len("image"), *(len(s) for s in sources))
        if fmt == "csv":
            self.csv = csv.writer(out)
            self.csv.writerow(["index", "image", "attributes", "error", *attributes])
        elif fmt == "table":
            out.write(f"{'image':<{self.width}}  attributes above threshold (probability)\n")

    def write(self, result) -> None:
        from .predict import ImageInputError

        failed = isinstance(result, ImageInputError)
        if self.fmt == "json":
            self.records.append({"index": result.index, "source": result.source, "error": result.reason}
                                if failed else result.to_dict())
        elif self.fmt == "csv":
            if failed:
                self.csv.writerow([result.index, result.source, "", result.reason, *([""] * len(self.attributes))])
            else:
                row = [f"{result.probabilities[name]:.4f}" for name in self.attributes]
                self.csv.writerow([result.index, result.source, ";".join(result.attributes), "", *row])
        else:
            text = (f"ERROR: {result.reason}" if failed else
                    ", ".join(f"{name} ({result.probabilities[name]:.2f})" for name in result.attributes) or "(none)")
            self.out.write(f"{result.source:<{self.width}}  {text}\n")
        self.out.flush()

    def close(self) -> None:
        if self.fmt == "json":
            json.dump(self.records, self.out, indent=2)
            self.out.write("\n")


def run_predict(args: argparse.Namespace) -> int:
    """Run ``predict``: one output record per image, errors on stderr."""
    from .predict import ImageInputError, iter_predictions

    model = load_model(args, "predict")
    if model is None:
        return 2
    writer = _Writer(args.format, sys.stdout, list(model.config.attributes), list(args.images))
    failures = 0
    for result in iter_predictions(model, args.images, threshold=args.threshold, batch_size=args.batch_size,
                                   return_errors=True):
        if isinstance(result, ImageInputError):
            failures += 1
            _error("predict", result)
        writer.write(result)
    writer.close()
    if failures:
        _error("predict", f"{failures} of {len(args.images)} images could not be processed")
        return 1
    return 0


# ------------------------------------------------------------------------- visualize


def run_visualize(args: argparse.Namespace) -> int:
    """Run ``visualize``: write the PNG, print what was predicted."""
    from pathlib import Path

    from .predict import ImageInputError
    from .visualize import attention_maps, render

    out = Path(args.out)
    if out.parent and not out.parent.is_dir():
        _error("visualize", f"the directory of --out ({out.parent}) does not exist")
        return 2
    if args.top_k < 0:
        _error("visualize", f"--top-k must be 0 or more, got {args.top_k}")
        return 2
    model = load_model(args, "visualize")
    if model is None:
        return 2
    try:
        maps = attention_maps(model, args.image, threshold=args.threshold)
    except ImageInputError as error:
        _error("visualize", error)
        return 1
    picture = render(maps, top_k=args.top_k, panel=args.panel)
    try:
        picture.save(out, format="PNG")
    except OSError as error:
        _error("visualize", f"cannot write {out}: {error}")
        return 2
    above = [name for name, p, t in zip(maps.attributes, maps.probabilities, maps.thresholds) if p > t]
    print(f"wrote {out} ({picture.width}x{picture.height}); attributes: {', '.join(above) or '(none)'}")
    return 0
