"""Attribute prediction on raw images: :func:`predict`.

The path of one image::

    input --load_image--> PIL image --processor's image processor--> (3, S, S)
          --model forward, torch.inference_mode--> logits --sigmoid--> probabilities
          --thresholds--> attributes

* The model holds no image processor: the caller gives the processor
  (``predict(model, images, processor=PromptPARProcessor.from_pretrained(MODEL))``, or
  :class:`~par_prompt.inference.PromptPARPredictor`, which holds both). It is checked
  first (:func:`check_image_processor`): its settings must be valid and its ``size``
  must equal the image size of the model's CLIP tower, so a broken processor config
  fails before any image is read.
* Loading: a path is checked to exist and to be a regular file (a FIFO, a device or a
  socket would block or never end) and decoded (a large JPEG at reduced scale, so a
  10000×10000 photo never sits in memory at full size, upright by its EXIF
  orientation); an ``http(s)://`` URL, a ``data:image/...;base64,`` URI or a bare base64
  string is fetched and decoded by transformers' own ``load_image``; arrays and tensors
  become PIL images. Images smaller than :data:`MIN_IMAGE_SIDE` pixels on a side are
  refused: they carry no attribute information (a 1×1 input is a broken file, not a
  pedestrian).
* Each image goes through the processor right after it is decoded, so a batch holds
  ``batch_size`` resized ``(3, S, S)`` tensors, never ``batch_size`` full-size images.
* Every failure of one input raises :class:`ImageInputError` naming its position and
  source, before any model work on its batch; with ``return_errors=True`` the error
  takes the input's place in the results instead and the other inputs are processed.
* A probability that is not a finite number (NaN weights, an overflow) raises
  :class:`NonFiniteOutputError`: it is never reported as "no attribute".
* The text tower runs once: PromptPARModel caches its sentence features without
  autograd, so every batch after the first runs the vision tower, the fusion layer and
  the heads.
* The model computes as in eval mode (``forward(training=False)``) without its mode or
  any other state being changed, so prediction is safe from several threads and on a
  model that is training.
* An attribute is predicted when its probability is strictly above its threshold, as in
  :mod:`par_prompt.metrics`. The threshold is the one passed, else the calibrated
  per-attribute thresholds of the config (``attribute_thresholds``), else its global
  ``threshold``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import re

import numpy as np
import torch

from ..data.transforms import ImageDecodeError, decode_image, decode_size_hint
from ..thresholds import Threshold, resolve_threshold

#: Smallest accepted width and height of an input image, in pixels.
MIN_IMAGE_SIDE = 8
#: Seconds to wait for an image URL (transformers' ``load_image`` has no limit by default).
URL_TIMEOUT = 30.0
URL_PREFIXES = ("http://", "https://")
DATA_URI_PREFIX = "data:image/"
#: A string this long of base64 characters only, that names no file, is taken as an
#: encoded image (no image file encodes to fewer characters).
MIN_BASE64_LENGTH = 64
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")


class ImageInputError(ValueError):
    """One input image could not be used; names its position and, when known, its file."""

    def __init__(self, index: Optional[int], source: Optional[str], reason: str) -> None:
        self.index = index
        self.source = source
        self.reason = reason
        # index None: the caller does not know the position (a pipeline sees one image at a time)
        where = (f"input {index}" if index is not None else "an input image") + (f" ({source})" if source else "")
        super().__init__(f"{where}: {reason}")


class NonFiniteOutputError(ValueError):
    """The model returned a probability that is not a finite number (NaN or inf)."""


@dataclass(frozen=True)
class AttributePrediction:
    """The prediction for one image.

    Attributes:
        probabilities: every attribute's probability, in the model's attribute order.
        attributes: the attributes whose probability is above their threshold, in
            attribute order.
        threshold: the threshold used: one float, or one per attribute.
        source: the file the image came from, when known.
        index: the image's position in the input.
    """

    probabilities: dict[str, float]
    attributes: list[str]
    threshold: Threshold
    source: Optional[str] = None
    index: int = 0

    def top(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` most probable attributes as ``(name, probability)``, most probable
        first (ties in attribute order), whatever the threshold."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"k must be an integer >= 0, got {k!r}")
        ranked = sorted(self.probabilities.items(), key=lambda item: -item[1])  # sorted() is stable
        return ranked[:k]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (plain floats, lists and strings)."""
        return {
            "index": self.index,
            "source": self.source,
            "attributes": list(self.attributes),
            "probabilities": dict(self.probabilities),
            "threshold": list(self.threshold) if isinstance(self.threshold, list) else self.threshold,
        }


# ------------------------------------------------------------------------ thresholds


def resolve_thresholds(config, threshold: Union[None, float, Sequence[float]] = None) -> tuple[torch.Tensor, Threshold]:
    """The per-attribute thresholds ``(N,)`` as a tensor and the JSON form of what was
    chosen: :func:`par_prompt.thresholds.resolve_threshold` (the given threshold, else
    the config's ``attribute_thresholds``, else its ``threshold``; all checked)."""
    choice = resolve_threshold(config, threshold)
    return torch.tensor(choice.values(config.num_attributes)), choice.value


# --------------------------------------------------------------------------- inputs


def _is_single_image(value: Any) -> bool:
    from PIL import Image

    if isinstance(value, (str, Path, bytes, bytearray, dict, Image.Image)):
        return True
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.ndim <= 3
    return False


def iter_inputs(images: Any) -> Iterator[Any]:
    """One image, a list / tuple / iterable of images, or a 4-D array or tensor (a stack
    of images), as a stream of single images."""
    if _is_single_image(images):
        yield images
    elif isinstance(images, (np.ndarray, torch.Tensor)):
        if images.ndim != 4:
            raise ValueError(f"an array of images must have 4 dimensions (a stack), got shape {tuple(images.shape)}")
        yield from images
    elif isinstance(images, Iterable):
        yield from images
    else:
        raise TypeError(
            f"images must be an image (PIL image, file path, numpy array, tensor) or a list of them, "
            f"got {type(images).__name__}"
        )


def encoded_image_kind(value: Any) -> Optional[str]:
    """``"URL"`` or ``"base64"`` for a string that is an image URL or an encoded image
    (see :func:`load_image`), else None (a path, or not a string)."""
    if not isinstance(value, str):
        return None
    if value.startswith(URL_PREFIXES):
        return "URL"
    if value.startswith(DATA_URI_PREFIX):
        return "base64"
    if len(value) >= MIN_BASE64_LENGTH and _BASE64.fullmatch(value) and not os.path.exists(value):
        return "base64"
    return None


def describe_source(value: Any) -> Optional[str]:
    """The file or URL an input comes from, when it names one (an encoded image: None)."""
    kind = encoded_image_kind(value)
    if kind is not None:
        return value if kind == "URL" else None
    if isinstance(value, (str, Path)):
        return str(value)
    if isinstance(value, dict):
        return value.get("path")
    return getattr(value, "filename", None) or None


def check_image_file(path: Path, index: int, source: Optional[str]) -> None:
    """:class:`ImageInputError` unless ``path`` is an existing regular file (a FIFO,
    device or socket is refused before it is opened: reading it could block forever)."""
    import stat

    try:
        mode = path.stat().st_mode  # follows symbolic links
    except FileNotFoundError:
        raise ImageInputError(index, source, "the file does not exist") from None
    except OSError as error:
        raise ImageInputError(index, source, f"cannot read the file: {error.strerror or error}") from None
    if stat.S_ISDIR(mode):
        raise ImageInputError(index, source, "this is a directory, not an image file")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise ImageInputError(index, source, f"this is {kind}, not an image file; give a regular image file")


def load_image(value: Any, index: int, size_hint: Optional[int] = None, timeout: Optional[float] = None):
    """``value`` as a decoded PIL image; :class:`ImageInputError` naming it otherwise.

    ``size_hint`` (the model's input side) lets a large JPEG be decoded at reduced scale.
    A URL or an encoded image (:func:`encoded_image_kind`) goes through transformers'
    ``load_image`` (upright by its EXIF orientation, RGB), waiting at most ``timeout``
    seconds (default :data:`URL_TIMEOUT`) for a URL.
    """
    from ..image_processing import array_to_pil

    source = describe_source(value)
    kind = encoded_image_kind(value)
    try:
        if kind is not None:
            image = _load_encoded(value, kind, URL_TIMEOUT if timeout is None else timeout)
        elif isinstance(value, (str, Path)):
            path = Path(value)
            check_image_file(path, index, source)
            image = decode_image(path, index, size_hint=size_hint)
        elif isinstance(value, (np.ndarray, torch.Tensor)):
            image = array_to_pil(value, index)
        else:
            if isinstance(value, dict) and value.get("bytes") is None and value.get("path") is not None:
                check_image_file(Path(value["path"]), index, source)
            image = decode_image(value, index, size_hint=size_hint)
    except ImageInputError:
        raise
    except (ImageDecodeError, ValueError, OSError) as error:
        raise ImageInputError(index, source, str(error)) from error
    width, height = image.size
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ImageInputError(
            index, source,
            f"the image is {width}×{height} pixels; PromptPAR needs at least {MIN_IMAGE_SIDE}×{MIN_IMAGE_SIDE} "
            "(a pedestrian crop)",
        )
    return image


def _load_encoded(value: str, kind: str, timeout: float):
    """A URL or base64 image through transformers' ``load_image``; its errors (network,
    undecodable data) become ValueError naming the kind of input."""
    from transformers.image_utils import load_image as transformers_load_image

    try:
        return transformers_load_image(value, timeout=timeout)
    except Exception as error:  # httpx, base64, PIL raise many types
        if kind == "URL":
            raise ValueError(f"the image URL could not be read ({type(error).__name__}: "
                             f"{' '.join(str(error).split())[:200]})") from None
        # transformers' message repeats the whole string: not worth a line
        raise ValueError("the base64 data is not an image; give a base64-encoded image file (PNG, JPEG, ...), or "
                         "a data:image/...;base64, URI") from None


def preprocess_image(processor, value: Any, index: int, timeout: Optional[float] = None) -> torch.Tensor:
    """Load and preprocess one input: ``(3, S, S)`` float32. The decoded image is dropped
    as soon as it is resized, so only the tensor outlives the call."""
    image = load_image(value, index, size_hint=decode_size_hint(processor), timeout=timeout)
    return _process_one(processor, image, index, describe_source(value))


def model_image_size(model) -> int:
    """The side of the square images the model's CLIP vision tower takes."""
    return int(model.config.get_clip_config().vision_config.image_size)


def image_processor_from(processor: Any):
    """The image processor of ``processor``: a PromptPARProcessor's, or ``processor``
    itself when it is an image processor."""
    return getattr(processor, "image_processor", processor)


def check_image_processor(model, processor: Any):
    """The image processor of ``processor`` (a PromptPARProcessor or a
    PromptPARImageProcessor) for ``model``, checked: present, with valid settings, and
    with ``size`` equal to the image size of the model's CLIP vision tower.
    ``ValueError`` with the fix otherwise."""
    if processor is None:
        raise ValueError(
            "No processor was given, and the model holds none: pass processor=PromptPARProcessor.from_pretrained("
            "MODEL) (the folder or Hub id the model came from), or use "
            "par_prompt.inference.PromptPARPredictor.from_pretrained(MODEL), which loads both."
        )
    processor = image_processor_from(processor)
    validate = getattr(processor, "validate", None)
    if callable(validate):
        validate()
    expected, size = model_image_size(model), getattr(processor, "size", None)
    if size != expected:
        raise ValueError(
            f"the image processor resizes images to {size!r} pixels but the model's CLIP vision tower takes "
            f"{expected}×{expected}; set \"size\": {expected} in the processor's config (processor_config.json), or "
            f"use PromptPARImageProcessor(size={expected})"
        )
    return processor


def _process_one(processor, image, index: int, source: Optional[str]) -> torch.Tensor:
    """One loaded image through the processor: ``(3, S, S)``; :class:`ImageInputError` on failure."""
    try:
        return processor(image, return_tensors="pt")["pixel_values"][0]
    except (ValueError, OSError) as error:
        raise ImageInputError(index, source, str(error)) from error


# ---------------------------------------------------------------------------- model


def predict_probabilities(model, pixel_values: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Attribute probabilities ``(B, N)`` (float32, CPU) of preprocessed ``pixel_values``
    ``(B, 3, S, S)``: the model's forward under ``torch.inference_mode``, computed as in
    eval mode without changing the model's mode."""
    _check_batch_size(batch_size)
    device, dtype = model.device, model.dtype
    chunks = []
    with torch.inference_mode():
        for start in range(0, pixel_values.shape[0], batch_size):
            batch = pixel_values[start : start + batch_size].to(device=device, dtype=dtype)
            logits = model(pixel_values=batch, compute_gl_logits=False, training=False).logits
            chunks.append(torch.sigmoid(logits.float()).cpu())
    if not chunks:
        return torch.empty(0, model.config.num_attributes)
    return torch.cat(chunks)


def _check_batch_size(batch_size: Any) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def check_finite(probabilities: torch.Tensor, entries: list[tuple[int, Optional[str]]]) -> None:
    """:class:`NonFiniteOutputError` naming the first inputs whose probabilities (B, N)
    hold NaN or inf; ``entries`` gives each row's (index, source)."""
    bad_rows = (~torch.isfinite(probabilities)).any(dim=1).nonzero().flatten().tolist()
    if not bad_rows:
        return
    named = ", ".join(f"input {entries[r][0]}" + (f" ({entries[r][1]})" if entries[r][1] else "")
                      for r in bad_rows[:3])
    more = f" and {len(bad_rows) - 3} more" if len(bad_rows) > 3 else ""
    raise NonFiniteOutputError(
        f"the model returned NaN or infinite probabilities for {named}{more}: its weights or its image processor "
        "settings hold NaN/inf values (or the computation overflowed in half precision). Re-download or re-save the "
        "model, or run it in float32."
    )


def to_predictions(config, probabilities: torch.Tensor, thresholds: torch.Tensor, shown: Threshold,
                   entries: list[tuple[int, Optional[str]]]) -> list[AttributePrediction]:
    """One :class:`AttributePrediction` per row of ``probabilities`` (B, N); ``entries``
    gives each row's (index, source), ``shown`` the threshold as reported.
    :class:`NonFiniteOutputError` if a probability is NaN or infinite."""
    check_finite(probabilities, entries)
    names = config.attributes
    above = (probabilities > thresholds[None, :]).tolist()
    results = []
    for (index, source), row, flags in zip(entries, probabilities.tolist(), above):
        results.append(AttributePrediction(
            probabilities=dict(zip(names, row)),
            attributes=[name for name, flag in zip(names, flags) if flag],
            threshold=list(shown) if isinstance(shown, list) else shown,
            source=source,
            index=index,
        ))
    return results


def iter_predictions(
    model,
    images: Any,
    threshold: Union[None, float, Sequence[float]] = None,
    batch_size: int = 32,
    *,
    processor: Any = None,
    return_errors: bool = False,
) -> Iterator[Union[AttributePrediction, ImageInputError]]:
    """Like :func:`predict`, one result at a time, in input order. Inputs are read
    lazily, ``batch_size`` at a time."""
    _check_batch_size(batch_size)
    processor = check_image_processor(model, processor)
    thresholds, shown = resolve_thresholds(model.config, threshold)
    inputs = enumerate(iter_inputs(images))
    while chunk := [item for _, item in zip(range(batch_size), inputs)]:
        yield from _predict_chunk(model, processor, chunk, thresholds, shown, batch_size, return_errors)


def _predict_chunk(model, processor, chunk, thresholds, shown, batch_size, return_errors) -> list:
    """Results for up to ``batch_size`` (index, input) pairs, in order: each input is
    loaded, checked and resized on its own (only its ``(3, S, S)`` tensor is kept), then
    the tensors go through the model as one batch."""
    results: list[Union[None, AttributePrediction, ImageInputError]] = [None] * len(chunk)
    kept, tensors = [], []  # (position in chunk, index, source), (3, S, S)
    for position, (index, value) in enumerate(chunk):
        try:
            tensors.append(preprocess_image(processor, value, index))
            kept.append((position, index, describe_source(value)))
        except ImageInputError as error:
            if not return_errors:
                raise
            results[position] = error
    if kept:
        try:
            probabilities = predict_probabilities(model, torch.stack(tensors), batch_size)
        except Exception as error:
            if hasattr(error, "add_note"):  # Python >= 3.11
                error.add_note(f"(while running the model on inputs {chunk[0][0]} to {chunk[-1][0]})")
            raise
        del tensors
        entries = [(index, source) for _, index, source in kept]
        for (position, *_), prediction in zip(kept, to_predictions(model.config, probabilities, thresholds,
                                                                    shown, entries)):
            results[position] = prediction
    return results


def predict(
    model,
    images: Any,
    threshold: Union[None, float, Sequence[float]] = None,
    batch_size: int = 32,
    *,
    processor: Any = None,
    return_errors: bool = False,
) -> list[Union[AttributePrediction, ImageInputError]]:
    """Predict the attributes of each image.

    Args:
        model: a :class:`~par_prompt.PromptPARModel` (or a model-like predictor: the
            ONNX one).
        images: a PIL image, a file path, an image URL, a base64-encoded image (or
            ``data:image/...;base64,`` URI), a numpy array (``H×W×C`` or ``H×W``), a
            tensor (``C×H×W``), or a list of these; grey and RGBA images are converted
            to RGB.
        threshold: None (the config's thresholds), a float in [0, 1], or one per attribute.
        batch_size: images per forward pass.
        processor: the model's :class:`~par_prompt.PromptPARProcessor` (or its
            :class:`~par_prompt.PromptPARImageProcessor`), e.g.
            ``PromptPARProcessor.from_pretrained(MODEL)``; required.
        return_errors: put an :class:`ImageInputError` in the place of each input that
            cannot be read, instead of raising it.

    Returns:
        One :class:`AttributePrediction` per image, in input order.

    Raises:
        ImageInputError: an input cannot be read (missing file, not a regular file,
            corrupt image, wrong array shape, smaller than :data:`MIN_IMAGE_SIDE`),
            naming its index.
        NonFiniteOutputError: the model returned NaN or infinite probabilities.
        ValueError: a threshold outside [0, 1], a bad ``batch_size``, or a processor
            that is missing, invalid or sized for another model.
    """
    return list(iter_predictions(model, images, threshold, batch_size, processor=processor,
                                 return_errors=return_errors))

