"""``export_onnx``: a trained PromptPAR model as one self-contained ``.onnx`` file.

The exporter is PyTorch's own, ``torch.onnx.export(..., dynamo=True)``: it captures the
model with ``torch.export`` (non-strict), so the model's Python forward runs as
written, and translates the captured graph with onnxscript's torchlib. The batch axis
is dynamic; the text features and the region mask are constants of the graph
(:mod:`par_prompt.onnx.graph`); the attributes, sentences, thresholds and image
processor settings go into the file's metadata (:mod:`par_prompt.onnx.metadata`).
After the export the graph is run once on ONNX Runtime and compared with PyTorch, and
only then is the file written, atomically.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import torch

from ..quiet import quiet_libraries
from .extra import require
from .graph import INPUT_NAME, OUTPUT_NAMES, PromptPARInferenceGraph

#: Opsets the exporter writes natively (torch's torchlib starts at 18; torch 2.13 stops at 23).
SUPPORTED_OPSETS = range(18, 24)
#: torch.onnx's default opset.
DEFAULT_OPSET = 20
#: Largest |ONNX Runtime - PyTorch| probability accepted by the check after export. fp32:
#: the same arithmetic in another order (measured: 5e-7 on a full-size ViT-B/16). fp16:
#: weights and activations in half precision, compared with the float32 model (measured:
#: 4e-4 on a full-size random ViT-B/16; see benchmarks/RESULTS.md).
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}
#: Batch of the example input: 2, because torch.export specialises a size-1 axis to 1.
EXAMPLE_BATCH = 2
#: protobuf refuses to serialise a model of 2 GiB or more into one file.
PROTOBUF_LIMIT = 2**31


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_onnx` wrote."""

    path: Path
    opset: int
    precision: str
    num_bytes: int
    #: max |probability| difference between ONNX Runtime and PyTorch on the check batch
    #: (None when the check was skipped).
    max_difference: Union[float, None]


def check_opset(opset) -> int:
    """``opset`` as an int if the exporter supports it, else ``ValueError`` with the range."""
    if isinstance(opset, bool) or not isinstance(opset, int) or opset not in SUPPORTED_OPSETS:
        raise ValueError(
            f"ONNX opset {opset!r} is not supported: use {SUPPORTED_OPSETS.start} to {SUPPORTED_OPSETS.stop - 1} "
            f"(default {DEFAULT_OPSET})."
        )
    return opset


def check_onnx_path(path: Union[str, os.PathLike]) -> Path:
    """``path`` if an ONNX file can be written there: it ends in ``.onnx`` (so that a typo
    cannot overwrite some other file) and its folder exists and is writable."""
    from ..fileio import check_output_file

    return check_output_file(Path(path), "the ONNX file", suffix=".onnx")


def _check_model(model, processor):
    """The image processor to record for ``model`` (checked against it)."""
    from ..inference.predict import check_image_processor
    from ..modeling import PromptPARModel

    if not isinstance(model, PromptPARModel):
        raise TypeError(
            f"export_onnx exports a PromptPARModel, got {type(model).__name__}; load one with "
            "PromptPARModel.from_pretrained(DIR_OR_HUB_ID)."
        )
    if processor is None:
        raise ValueError(
            "export_onnx needs the model's processor, whose image settings the ONNX file records: pass "
            "processor=PromptPARProcessor.from_pretrained(DIR_OR_HUB_ID)."
        )
    return check_image_processor(model, processor)


def _graph_for(model, precision: str) -> PromptPARInferenceGraph:
    """The graph module on the CPU at ``precision``, for ``model`` in eval mode; the text
    features are computed by ``model`` itself (in its own precision), once."""
    dtype = torch.float16 if precision == "fp16" else torch.float32
    with torch.no_grad():
        text = model.text_features().detach().to("cpu", torch.float32)
    if model.training or model.device.type != "cpu" or model.dtype != dtype:
        model = copy.deepcopy(model).to("cpu", dtype)  # the caller's model (mode included) is left as it is
    return PromptPARInferenceGraph(model, text.to(dtype)).eval()


def export_onnx(
    model,
    path: Union[str, os.PathLike],
    *,
    processor=None,
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    check: bool = True,
) -> ExportResult:
    """Export ``model`` (a PromptPARModel) to the ONNX file ``path``, with the image
    settings of ``processor`` (its PromptPARProcessor, or PromptPARImageProcessor).

    The file holds one graph, ``pixel_values`` (B, 3, S, S) float32 -> ``logits`` and
    ``probabilities`` (B, N) float32 with a dynamic batch axis B, and the metadata that
    :class:`~par_prompt.onnx.ONNXPromptPARPredictor` (or any ONNX Runtime user) needs to
    preprocess images and threshold the probabilities.

    Args:
        opset: ONNX opset, in :data:`SUPPORTED_OPSETS`.
        fp16: store the weights and run the graph in float16 (half the file size; meant
            for GPUs; probabilities within :data:`TOLERANCE` ``["fp16"]`` of float32).
        check: run the exported graph on ONNX Runtime and refuse to write it if its
            probabilities differ from PyTorch's by more than :data:`TOLERANCE`.

    The file is written atomically (a complete file or none); an existing file of that
    name is replaced. The model is left as it was (mode, device, precision).
    """
    image_processor = _check_model(model, processor)
    opset = check_opset(opset)
    path = check_onnx_path(path)
    onnx = require("onnx", "exporting to ONNX")
    require("onnxscript", "exporting to ONNX")
    if check:
        require("onnxruntime", "checking the ONNX export (check=True)")
    from ..fileio import atomic_open
    from .metadata import build_metadata

    precision = "fp16" if fp16 else "fp32"
    size = image_processor.size
    example = torch.randn(EXAMPLE_BATCH, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        graph = _graph_for(model, precision)
        graph(example)  # an eager run first: any error shows as a plain PyTorch error
        # torch.onnx's notes about optional packages it does not need here (torchvision), and the
        # deprecation warnings that torch.export's internals raise about themselves
        with quiet_libraries("torch.onnx", future_warnings="copyreg"):
            program = torch.onnx.export(
                graph, (example,), dynamo=True, opset_version=opset, verbose=False,
                input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch")}},
            )
    del graph  # (an fp16 export's copy of the model)
    proto = program.model_proto
    del program
    onnx.helper.set_model_props(proto, build_metadata(model, image_processor, precision))
    num_bytes = proto.ByteSize()
    if num_bytes >= PROTOBUF_LIMIT:
        raise ValueError(
            f"The ONNX graph is {num_bytes / 2**30:.1f} GiB, beyond protobuf's 2 GiB limit for one file; export with "
            "fp16=True (--fp16), which halves it."
        )
    data = proto.SerializeToString()
    del proto
    difference = _check_against_pytorch(data, model, example, precision) if check else None
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return ExportResult(path=path, opset=opset, precision=precision, num_bytes=len(data), max_difference=difference)


def _check_against_pytorch(data: bytes, model, example: torch.Tensor, precision: str) -> float:
    """Max |probability| difference between the serialised graph on ONNX Runtime and
    ``model`` in PyTorch on ``example``; ``RuntimeError`` beyond the tolerance."""
    from ..inference.predict import predict_probabilities
    from .predictor import create_session

    session = create_session(data)
    (probabilities,) = session.run([OUTPUT_NAMES[1]], {INPUT_NAME: example.numpy()})
    reference = predict_probabilities(model, example, batch_size=EXAMPLE_BATCH)
    difference = float((torch.from_numpy(probabilities) - reference).abs().max())
    if not difference <= TOLERANCE[precision]:  # also catches NaN
        raise RuntimeError(
            f"The exported graph's probabilities differ from PyTorch's by {difference:.3g} (tolerance "
            f"{TOLERANCE[precision]:g} for {precision}); the file was not written. Please report this with your "
            "torch, onnx, onnxscript and onnxruntime versions."
        )
    return difference
