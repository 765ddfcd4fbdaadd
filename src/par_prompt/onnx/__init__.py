"""Deployment on ONNX Runtime: export a trained PromptPAR model to one ``.onnx`` file
and predict with it.

    from par_prompt.onnx import ONNXPromptPARPredictor, export_onnx

    export_onnx(model, "promptpar.onnx", processor=processor)  # a PromptPARModel and its processor
    predictor = ONNXPromptPARPredictor.from_file("promptpar.onnx")
    predictions = predictor.predict(["walker.jpg"])           # AttributePrediction records

This package imports without its optional dependencies; exporting needs onnx and
onnxscript, predicting needs onnxruntime (``pip install "par-prompt[onnx]"``), and
using a feature without them raises :class:`MissingExtraError` saying so.
"""

from .export import DEFAULT_OPSET, SUPPORTED_OPSETS, TOLERANCE, ExportResult, export_onnx
from .extra import INSTALL_COMMAND, MissingExtraError
from .metadata import read_metadata
from .predictor import ONNXPromptPARPredictor

__all__ = [
    "DEFAULT_OPSET",
    "INSTALL_COMMAND",
    "SUPPORTED_OPSETS",
    "TOLERANCE",
    "ExportResult",
    "MissingExtraError",
    "ONNXPromptPARPredictor",
    "export_onnx",
    "read_metadata",
]
