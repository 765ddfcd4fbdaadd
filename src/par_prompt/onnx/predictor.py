"""``ONNXPromptPARPredictor``: an exported PromptPAR model on ONNX Runtime.

It gives the same :class:`~par_prompt.inference.AttributePrediction` records as
:class:`~par_prompt.inference.PromptPARPredictor`, through the same code:
:func:`par_prompt.inference.predict` loads and preprocesses the images with the image
processor stored in the file, calls the predictor on each batch of pixels as it would
call the model, and applies the thresholds stored in the file. For that the predictor
offers the small part of the model interface that ``predict`` uses: ``config``,
``device``, ``dtype``, ``training`` and a call on ``pixel_values`` that returns
``logits``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from ..modeling.outputs import PromptPAROutput
from .extra import require
from .graph import INPUT_NAME, OUTPUT_NAMES

PURPOSE = "running ONNX models"


def providers_for_device(device: Optional[str]) -> list:
    """ONNX Runtime execution providers for a torch-style device name: ``cpu`` or None ->
    the CPU; ``cuda`` -> CUDA (GPU 0) then the CPU; ``cuda:N`` -> CUDA on GPU N then the
    CPU. Any other name is a ValueError: ONNX Runtime is not asked to guess."""
    name = "cpu" if device is None else str(device).strip().lower()
    if name == "cpu":
        return ["CPUExecutionProvider"]
    if name == "cuda":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    index = name[len("cuda:"):] if name.startswith("cuda:") else ""
    if index.isdigit():
        return [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]
    raise ValueError(f"--device {device}: an ONNX model runs on cpu, cuda or cuda:N (ONNX Runtime's providers); "
                     "give one of those")


def create_session(model: Union[bytes, str, os.PathLike], providers: Optional[Sequence[str]] = None,
                   session_options=None, threads: Optional[int] = None):
    """An ONNX Runtime inference session on a serialised model or a file, with every
    graph optimisation on (constant folding of the text features, fused layer norms and
    GELUs, ...). ``providers`` default to the CPU; ``threads``: intra-op threads (default:
    ONNX Runtime's, one per physical core)."""
    ort = require("onnxruntime", PURPOSE)
    options = session_options if session_options is not None else ort.SessionOptions()
    if session_options is None:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Errors only: on the CPU a float16 graph draws one warning per node that ONNX
        # Runtime runs in float32 instead (it inserts the casts itself).
        options.log_severity_level = 3
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        options.intra_op_num_threads = threads
    providers = list(providers) if providers is not None else providers_for_device(None)
    available = ort.get_available_providers()
    names = [provider[0] if isinstance(provider, tuple) else provider for provider in providers]
    unavailable = [name for name in names if name not in available]
    if unavailable:
        raise ValueError(
            f"ONNX Runtime here has no {', '.join(unavailable)} (available: {', '.join(available)}); install the "
            "matching onnxruntime build (e.g. onnxruntime-gpu for CUDA) or run on the CPU."
        )
    source = os.fspath(model) if not isinstance(model, (bytes, bytearray)) else bytes(model)
    return ort.InferenceSession(source, sess_options=options, providers=providers)


def load_errors(ort) -> tuple[type[Exception], ...]:
    """The exceptions ONNX Runtime raises for a file it cannot load (they derive from
    ``Exception`` directly)."""
    errors = ort.capi.onnxruntime_pybind11_state
    names = ("Fail", "InvalidProtobuf", "InvalidGraph", "InvalidArgument", "NoSuchFile", "NotImplemented",
             "RuntimeException")
    return tuple(getattr(errors, name) for name in names if hasattr(errors, name))


class ONNXPromptPARPredictor:
    """A PromptPAR model exported by :func:`~par_prompt.onnx.export_onnx`, run by ONNX Runtime.

    Build it with :meth:`from_file`. ``predict`` and ``iter_predictions`` take the same
    arguments and give the same results as those of
    :class:`~par_prompt.inference.PromptPARPredictor` (the global-local branch, a
    training-time loss term, is not in the graph).
    """

    #: The graph takes float32 pixels on the host, whatever its precision inside.
    device = torch.device("cpu")
    dtype = torch.float32
    training = False

    def __init__(self, session, config, image_processor, precision: str, path: Optional[Path] = None) -> None:
        self.session = session
        self.config = config
        self.image_processor = image_processor
        self.precision = precision
        self.path = path

    @classmethod
    def from_file(cls, path: Union[str, os.PathLike], providers: Optional[Sequence[str]] = None,
                  session_options=None, threads: Optional[int] = None) -> "ONNXPromptPARPredictor":
        """Load ``path`` (written by ``par-prompt export onnx``); ``providers``: ONNX Runtime
        execution providers (default: the CPU); ``session_options``: an
        ``onnxruntime.SessionOptions`` to use instead of the default (all optimisations);
        ``threads``: intra-op threads (default: one per physical core)."""
        from .metadata import read_metadata

        ort = require("onnxruntime", PURPOSE)
        path = Path(path)
        if not path.is_file():
            problem = "is a directory" if path.is_dir() else "does not exist"
            raise FileNotFoundError(f"the ONNX model {path} {problem}; give the .onnx file written by "
                                    "`par-prompt export onnx`.")
        try:
            session = create_session(path, providers, session_options, threads)
        except load_errors(ort) as error:  # not an ONNX file, a broken one, or one this ONNX Runtime cannot run
            raise ValueError(f"{path} is not a readable ONNX model: {' '.join(str(error).split())[:300]}") from None
        config, processor, precision = read_metadata(session.get_modelmeta().custom_metadata_map, str(path))
        inputs, outputs = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
        if inputs != [INPUT_NAME] or not set(OUTPUT_NAMES) <= set(outputs):
            raise ValueError(f"{path} has inputs {inputs} and outputs {outputs}; a par-prompt export has the input "
                             f"{INPUT_NAME!r} and the outputs {list(OUTPUT_NAMES)}.")
        width = session.get_outputs()[outputs.index(OUTPUT_NAMES[0])].shape[-1]
        if isinstance(width, int) and width != config.num_attributes:
            raise ValueError(f"{path} outputs {width} logits but its metadata names {config.num_attributes} "
                             "attributes; export the model again.")
        return cls(session, config, processor, precision, path)

    @property
    def attributes(self) -> list[str]:
        return list(self.config.attributes)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(path={str(self.path)!r}, attributes={self.config.num_attributes}, "
                f"precision={self.precision!r}, providers={self.session.get_providers()})")

    # ------------------------------------------------------------------ the graph
    def run(self, pixel_values: Union[np.ndarray, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        """``(logits, probabilities)`` (B, N) float32 of preprocessed ``pixel_values`` (B, 3, S, S)."""
        if isinstance(pixel_values, torch.Tensor):
            pixel_values = pixel_values.detach().cpu().numpy()
        pixels = np.ascontiguousarray(pixel_values, dtype=np.float32)
        size = self.image_processor.size
        if pixels.ndim != 4 or pixels.shape[1:] != (3, size, size):
            raise ValueError(f"pixel_values must have shape (B, 3, {size}, {size}), got {pixels.shape}")
        logits, probabilities = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: pixels})
        return logits, probabilities

    def __call__(self, pixel_values: Union[np.ndarray, torch.Tensor], **kwargs: Any) -> PromptPAROutput:
        """The model-like call used by :func:`par_prompt.inference.predict`: ``logits`` (B, N)
        as a tensor (``gl_logits`` is None: that branch is not exported)."""
        unknown = set(kwargs) - {"compute_gl_logits", "return_dict", "training"}
        if unknown:
            raise TypeError(f"unexpected argument(s) {sorted(unknown)}")
        logits, _ = self.run(pixel_values)
        return PromptPAROutput(logits=torch.from_numpy(logits))

    # ---------------------------------------------------------------- predictions
    def predict(self, images, threshold=None, batch_size: int = 32, *, return_errors: bool = False):
        """Attribute predictions for raw images; see :func:`par_prompt.inference.predict`."""
        from ..inference.predict import predict

        return predict(self, images, threshold=threshold, batch_size=batch_size, processor=self.image_processor,
                       return_errors=return_errors)

    def iter_predictions(self, images, threshold=None, batch_size: int = 32, *, return_errors: bool = False):
        """Like :meth:`predict`, one result at a time; see :func:`par_prompt.inference.iter_predictions`."""
        from ..inference.predict import iter_predictions

        return iter_predictions(self, images, threshold=threshold, batch_size=batch_size,
                                processor=self.image_processor, return_errors=return_errors)
