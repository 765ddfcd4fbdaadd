"""The ``par-prompt predict`` and ``par-prompt visualize`` subcommands.

``register(subparsers)`` adds both to the main parser (``par_prompt.cli``). Exit codes:
0 when every image was processed, 1 when some input images of ``predict`` could not be
read (each such error is reported on stderr and the other images are still processed),
2 when nothing could run (``visualize``'s one image included): a bad option or input list (:mod:`par_prompt.inference.inputs`), an output
that cannot be written (checked before the model is loaded), a device that is not
there, a model that does not load or whose image processor does not fit it, or a model
that returns NaN. Output files are written atomically: an interrupted or failed run
leaves no partial file.

The pieces a predictor other than PromptPARPredictor needs (:func:`prepare_predict`,
:func:`resolve_device`, :func:`write_predictions`, and the inputs and writers modules)
are plain functions, shared.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager, nullcontext
from typing import Any, Iterable, Iterator, Optional

from ..cli import report_error, report_warning
from ..quiet import quiet_libraries
from .writers import FORMATS

#: Side of a visualize panel, in pixels (bounded: the picture grows with its square).
MIN_PANEL, MAX_PANEL = 16, 1024


def probability(text: str) -> float:
    """argparse type: a threshold, a number in [0, 1] (:func:`par_prompt.thresholds.check_threshold`)."""
    from ..thresholds import check_threshold

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    try:
        return check_threshold(value, "the threshold")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def bounded_int(low: int, high: Optional[int] = None):
    """argparse type: an integer in ``low..high`` (no upper bound when ``high`` is None)."""

    def integer(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low or (high is not None and value > high):
            span = f"at least {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {value}")
        return value

    return integer


positive_int = bounded_int(1)


#: Attribute panels ``visualize`` draws unless --top-k says otherwise.
DEFAULT_TOP_K = 5


def _model_arguments(parser: argparse.ArgumentParser, onnx: bool = False) -> None:
    source = parser.add_mutually_exclusive_group(required=True) if onnx else parser
    source.add_argument("--model", required=not onnx, metavar="ID_OR_PATH",
                        help="a saved PromptPAR model: local directory or Hub repository id")
    if onnx:
        source.add_argument("--onnx", metavar="FILE.onnx", help="instead of --model: a file written by `par-prompt "
                            'export onnx`, run on ONNX Runtime (needs pip install "par-prompt[onnx]")')
    parser.add_argument("--revision", default=None, help="Hub revision of the model (branch, tag or commit)")
    parser.add_argument("--device", default=None,
                        help="torch device: cpu, cuda, cuda:N or mps (default: cuda when available, else cpu)")
    parser.add_argument("--threshold", type=probability, default=None, metavar="T",
                        help="probability threshold in [0, 1] (default: the model's stored thresholds)")
    parser.add_argument("--verbose", action="store_true", help="keep the transformers loading messages")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``predict`` and ``visualize``."""
    from .inputs import IMAGE_EXTENSIONS

    predict = subparsers.add_parser(
        "predict", help="predict pedestrian attributes of images",
        description="Predict the attributes of each image with a saved PromptPAR model. An INPUT is an image file, "
                    "a folder (its images, sorted by name: extensions " + " ".join(IMAGE_EXTENSIONS)
                    + " in any case; hidden files skipped; subfolders with --recursive) or @LIST, a text file with "
                    "one image path per line (relative paths are relative to the list's folder; blank lines and "
                    "lines starting with # are ignored). An unreadable image is reported on stderr and skipped; "
                    "the exit code is then 1. A progress bar on stderr follows more than one image (off when "
                    "transformers' or datasets' progress bars are disabled).",
    )
    _model_arguments(predict, onnx=True)
    predict.add_argument("images", nargs="+", metavar="INPUT", help="image files, folders or @list.txt files")
    predict.add_argument("--recursive", action="store_true", help="also take the images in subfolders of a folder")
    predict.add_argument("--output", default=None, metavar="FILE",
                         help="write the results to FILE (atomically: complete or not at all) instead of the "
                              "console; the format follows the extension (.jsonl JSON lines, .json JSON, .csv CSV, "
                              ".txt table) unless --format is given")
    predict.add_argument("--format", choices=FORMATS, default=None,
                         help="output format (default: table on the console, else from the --output extension)")
    predict.add_argument("--top-k", type=bounded_int(0), default=0, metavar="K",
                         help="also report the K most probable attributes of each image whatever the threshold, in "
                              "addition to the attributes above the threshold (default 0: off)")
    predict.add_argument("--batch-size", type=positive_int, default=32, metavar="B", help="images per forward pass")
    predict.set_defaults(func=run_predict)

    visualize = subparsers.add_parser(
        "visualize", help="draw where the model looked (region prompts, attribute attention, probabilities)",
        description="Write one PNG: a header (image file, model, threshold); the image with each prompt group's "
                    "attention over it (a region's attention inside its band of rows, scaled within the band, the rest "
                    "greyed out); the fusion attention of the most probable attributes; a colour bar (viridis, low to "
                    "high); and a bar chart of all probabilities. Panels show the image itself: the square padding "
                    "the model sees is cropped. A warning (the PNG is still written) says when --top-k asks for more "
                    "attribute panels than the model can give, or when the model has no region prompts.",
    )
    _model_arguments(visualize)
    visualize.add_argument("image", metavar="IMAGE", help="image file")
    visualize.add_argument("--out", required=True, metavar="FILE.png", help="the PNG to write (atomically)")
    visualize.add_argument("--top-k", type=bounded_int(0), default=None, metavar="K",
                           help=f"attribute panels to draw, most probable first (default {DEFAULT_TOP_K}; at most the model's number "
                                "of attributes, none for a model without a fusion layer)")
    visualize.add_argument("--panel", type=bounded_int(MIN_PANEL, MAX_PANEL), default=160, metavar="PX",
                           help=f"long side of each image panel in pixels, {MIN_PANEL} to {MAX_PANEL} (default 160)")
    visualize.set_defaults(func=run_visualize)


# ---------------------------------------------------------------------------- shared


def _error(command: str, message: Any) -> None:
    """A per-image error on stderr (printed above a progress bar, if one is shown)."""
    from tqdm.auto import tqdm

    tqdm.write(f"par-prompt {command}: error: {message}", file=sys.stderr)


def resolve_device(name: Optional[str]) -> str:
    """The torch device to run on: ``name`` checked to exist here (``ValueError`` with the
    fix otherwise: ``cuda`` without a CUDA build or GPU, ``cuda:3`` on a two-GPU machine,
    ``mps`` off macOS, a misspelt name), or cuda when available, else cpu."""
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"--device {name!r} is not a torch device; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = ("built without CUDA" if torch.version.cuda is None
                     else f"built for CUDA {torch.version.cuda}, but no GPU is visible")
            raise ValueError(
                f"--device {name} was given but CUDA is not available (PyTorch {torch.__version__} is {build}); "
                "use --device cpu, or install a CUDA build of PyTorch on a machine with an NVIDIA GPU"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"--device {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"--device {name} was given but Apple's MPS is not available here; use --device cpu")
    elif device.type == "meta":
        raise ValueError("--device meta holds no weights and cannot predict; use cpu or cuda")
    elif device.type != "cpu":
        backend = getattr(torch, device.type, None)
        available = getattr(backend, "is_available", None)
        if not callable(available) or not available():
            raise ValueError(f"--device {name}: {device.type} is not available here; use --device cpu")
    return name


def load_predictor(args: argparse.Namespace, command: str):
    """The predictor of ``--model`` (a :class:`~par_prompt.inference.PromptPARPredictor`:
    the model on ``--device``, checked, and its processor, checked against it) or of
    ``--onnx``; None after reporting why not."""
    if getattr(args, "onnx", None):  # predict --onnx: the ONNX Runtime predictor
        from ..onnx.cli import load_predictor as load_onnx_predictor

        return load_onnx_predictor(args, command)
    from .predictor import PromptPARPredictor

    try:
        device = resolve_device(args.device)
    except ValueError as error:
        report_error(command, error)
        return None
    try:
        # transformers' loading reports, bars and deprecation warnings, unless --verbose
        with quiet_libraries("transformers", bars=True, future_warnings=True, enabled=not args.verbose):
            return PromptPARPredictor.from_pretrained(args.model, revision=args.revision, device=device)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as error:
        report_error(command, f"cannot load the model {args.model!r}: {error}")
        return None


def check_not_an_input(output: str, inputs: Iterable[str], option: str = "--output") -> None:
    """``ValueError`` if ``output`` is the same file as one of ``inputs`` (an image or a
    list file: writing it would destroy that input)."""
    if not os.path.exists(output):
        return
    name = os.path.basename(output)
    for item in inputs:
        item = str(item)
        if os.path.basename(item) == name and os.path.exists(item) and os.path.samefile(item, output):
            raise ValueError(f"{option} {output} is one of the inputs; writing it would destroy that input. "
                             "Choose another output path")


@contextmanager
def output_stream(path: Optional[str]) -> Iterator[Any]:
    """stdout, or ``path`` opened by :func:`par_prompt.fileio.atomic_open` (the file is
    written only when the block ends without an exception)."""
    from ..fileio import atomic_open

    if path is None:
        yield sys.stdout
        return
    with atomic_open(path, "w", newline="") as handle:
        yield handle


def write_predictions(command: str, results: Iterable[Any], sources: list[str], attributes: list[str], fmt: str,
                      output: Optional[str] = None, top_k: int = 0) -> int:
    """Write ``results`` (one per entry of ``sources``, in order: a prediction, or an
    ``ImageInputError``, which is also reported on stderr) to ``output`` (None: stdout)
    in ``fmt``, with a progress bar when there is more than one image. Returns the number
    of failed inputs. An exception (NaN probabilities, Ctrl-C) leaves no output file."""
    from ..progress import progress_bar
    from .writers import PredictionWriter, is_error

    failures = 0
    bar = progress_bar(total=len(sources), desc=command, unit="image", enabled=len(sources) > 1, file=sys.stderr)
    try:
        with output_stream(output) as stream:
            writer = PredictionWriter(fmt, stream, attributes, sources, top_k)
            # a record printed while the bar is drawn on the same terminal would break the bar's line
            shared_terminal = stream is sys.stdout and not bar.disable and sys.stdout.isatty() and sys.stderr.isatty()
            for result in results:
                if is_error(result):
                    failures += 1
                    _error(command, result)
                with bar.external_write_mode(file=sys.stdout) if shared_terminal else nullcontext():
                    writer.write(result)
                bar.update(1)
            writer.close()
    finally:
        bar.close()
    return failures


# --------------------------------------------------------------------------- predict


def prepare_predict(args: argparse.Namespace, command: str = "predict") -> Optional[tuple[list[str], str]]:
    """The checks of ``predict`` that need no model, done first: (image paths, output
    format), or None after reporting the problem (device, inputs, output path, format)."""
    from ..fileio import check_outside, check_output_file
    from .inputs import expand_inputs
    from .writers import output_format

    try:
        if not getattr(args, "onnx", None):  # ONNX Runtime checks its own providers (load_predictor)
            resolve_device(args.device)
        elif args.revision is not None:
            raise ValueError("--revision names a Hub revision of --model; an --onnx file has none: drop --revision")
        if args.output is not None:
            check_output_file(args.output, "--output")
            check_outside(args.output, {"--model": args.model, "--onnx": getattr(args, "onnx", None)}, "--output")
        fmt = output_format(args.output, args.format)
        images = expand_inputs(args.images, recursive=args.recursive)
        if args.output is not None:
            lists = [a[1:] for a in map(str, args.images) if a.startswith("@")]
            check_not_an_input(args.output, images + lists)
    except ValueError as error:
        report_error(command, error)
        return None
    return images, fmt


def run_predict(args: argparse.Namespace) -> int:
    """Run ``predict``: one output record per image, errors on stderr."""
    from .predict import NonFiniteOutputError

    prepared = prepare_predict(args)
    if prepared is None:
        return 2
    images, fmt = prepared
    predictor = load_predictor(args, "predict")
    if predictor is None:
        return 2
    results = predictor.iter_predictions(images, threshold=args.threshold, batch_size=args.batch_size,
                                         return_errors=True)
    try:
        failures = write_predictions("predict", results, images, list(predictor.config.attributes), fmt,
                                     args.output, args.top_k)
    except (NonFiniteOutputError, OSError) as error:
        return report_error("predict", error)
    if args.output is not None:
        print(f"wrote {args.output} ({len(images)} images, {fmt})")
    if failures:
        _error("predict", f"{failures} of {len(images)} images could not be processed")
        return 1
    return 0


# ------------------------------------------------------------------------- visualize


def run_visualize(args: argparse.Namespace) -> int:
    """Run ``visualize``: write the PNG (atomically), print what was predicted."""
    from ..fileio import atomic_open, check_outside, check_output_file
    from .predict import ImageInputError, NonFiniteOutputError
    from .visualize import attention_maps, check_figure, drawing_warnings, render

    try:
        resolve_device(args.device)
        check_output_file(args.out, "--out", suffix=".png")  # never replaces a photo or a JSON output
        check_not_an_input(args.out, [args.image], "--out")
        check_outside(args.out, {"--model": args.model}, "--out")
    except ValueError as error:
        return report_error("visualize", error)
    predictor = load_predictor(args, "visualize")
    if predictor is None:
        return 2
    model = predictor.model
    config = model.config
    if args.top_k is None:  # the default draws up to 5, as many as the model has: nothing to warn about
        args.top_k = min(DEFAULT_TOP_K, config.num_attributes)
    try:  # the picture's size follows from the config: refuse a huge one before any work
        drawn = min(args.top_k, config.num_attributes) if config.fusion_layers > 0 else 0
        regions = config.num_regions if config.prompts_per_group > 0 else 0
        check_figure(regions, drawn, config.num_attributes, args.panel)
    except ValueError as error:
        return report_error("visualize", error)
    for note in drawing_warnings(config, args.top_k, option="--top-k"):
        report_warning("visualize", note)
    try:
        maps = attention_maps(model, args.image, threshold=args.threshold, model_name=args.model,
                              processor=predictor.processor)
    except (ImageInputError, NonFiniteOutputError) as error:  # its one image: the whole run failed on bad input
        return report_error("visualize", error)
    picture = render(maps, top_k=args.top_k, panel=args.panel)
    try:
        with atomic_open(args.out, "wb") as handle:
            picture.save(handle, format="PNG")
    except OSError as error:
        return report_error("visualize", f"cannot write {args.out}: {error}")
    above = [name for name, p, t in zip(maps.attributes, maps.probabilities, maps.thresholds) if p > t]
    print(f"wrote {args.out} ({picture.width}x{picture.height}); attributes: {', '.join(above) or '(none)'}")
    return 0
