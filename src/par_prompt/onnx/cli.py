"""``par-prompt export onnx`` and the ONNX side of ``par-prompt predict --onnx``.

``register(subparsers)`` adds ``export`` (with one format so far, ``onnx``). Exit codes:
0 when the file was written, 2 when it was not (bad option, missing extra, model that
does not load, unwritable output), with one line on stderr saying why.
"""

from __future__ import annotations

import argparse

from ..cli import report_error

COMMAND = "export onnx"


def _opset(text: str) -> int:
    """argparse type: an integer (the supported range is checked with a clearer message later)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``export onnx``."""
    from .export import DEFAULT_OPSET, SUPPORTED_OPSETS, TOLERANCE

    export = subparsers.add_parser(
        "export", help="export a trained model for deployment (ONNX)",
        description="Export a trained PromptPAR model for deployment.",
    )
    formats = export.add_subparsers(dest="format", metavar="FORMAT", required=True)
    onnx = formats.add_parser(
        "onnx", help="one .onnx file for ONNX Runtime",
        description="Write the model as one .onnx file: pixel_values (B, 3, S, S) float32 -> logits and "
                    "probabilities (B, N), with a dynamic batch axis; the text features and the region mask are "
                    "constants of the graph, and the attribute names, sentences, thresholds and image processor "
                    "settings are stored in its metadata, so the file alone is enough to predict "
                    "(`par-prompt predict --onnx FILE IMAGES...`). Before the file is written, the graph is run on "
                    f"ONNX Runtime and compared with PyTorch (tolerance {TOLERANCE['fp32']:g} in probability for "
                    f"fp32, {TOLERANCE['fp16']:g} for fp16). Needs pip install \"par-prompt[onnx]\".",
    )
    onnx.add_argument("--model", required=True, metavar="DIR_OR_HUB_ID",
                      help="a saved PromptPAR model: local directory or Hub repository id")
    onnx.add_argument("--revision", default=None, help="Hub revision of the model (branch, tag or commit)")
    onnx.add_argument("--out", required=True, metavar="FILE.onnx",
                      help="the ONNX file to write (atomically; an existing file is replaced)")
    onnx.add_argument("--opset", type=_opset, default=DEFAULT_OPSET, metavar="N",
                      help=f"ONNX opset, {SUPPORTED_OPSETS.start} to {SUPPORTED_OPSETS.stop - 1} "
                           f"(default {DEFAULT_OPSET})")
    onnx.add_argument("--fp16", action="store_true",
                      help="store the weights in float16 (half the size, for GPUs; input and outputs stay float32)")
    onnx.add_argument("--verbose", action="store_true", help="keep the transformers loading messages")
    onnx.set_defaults(func=run_export_onnx)


def run_export_onnx(args: argparse.Namespace) -> int:
    """Run ``export onnx``: check what can be checked without the model, load it, export."""
    from ..inference.cli import load_predictor as load_model_predictor
    from .export import check_onnx_path, check_opset, export_onnx
    from .extra import MissingExtraError, require

    try:
        check_opset(args.opset)
        for module in ("onnx", "onnxscript", "onnxruntime"):
            require(module, "exporting to ONNX")
        check_onnx_path(args.out)
    except (ValueError, MissingExtraError) as error:
        return report_error(COMMAND, error)
    args.device = "cpu"  # the export runs on the CPU
    predictor = load_model_predictor(args, COMMAND)
    if predictor is None:
        return 2
    try:
        result = export_onnx(predictor.model, args.out, processor=predictor.processor, opset=args.opset,
                             fp16=args.fp16)
    except (ValueError, TypeError, OSError, RuntimeError) as error:
        return report_error(COMMAND, error)
    print(f"wrote {result.path} ({result.num_bytes / 2**20:.1f} MiB, opset {result.opset}, {result.precision}); "
          f"ONNX Runtime matches PyTorch to {result.max_difference:.1e} in probability on a check batch")
    return 0


def load_predictor(args: argparse.Namespace, command: str):
    """The ONNX model of ``--onnx`` on ONNX Runtime (CUDA for ``--device cuda``, else
    the CPU), or None after reporting why not; used by ``predict --onnx``."""
    from .extra import MissingExtraError
    from .predictor import ONNXPromptPARPredictor, providers_for_device

    try:
        return ONNXPromptPARPredictor.from_file(args.onnx, providers=providers_for_device(args.device))
    except (MissingExtraError, ValueError, OSError) as error:
        report_error(command, error)
        return None
