"""``PromptPARImageProcessor``: the PromptPAR input pipeline as a transformers image processor.

Pad to a centred black square, resize (bicubic) to ``size × size``, normalise with the
CLIP processor's mean and std (docs/method.md §1). The operations are those of
:mod:`par_prompt.data.transforms` -- the training pipeline (``ImageTransform``) calls the
very same functions, so training and inference cannot drift apart.

``save_pretrained`` writes ``preprocessor_config.json`` with ``size``, ``image_mean``,
``image_std``, ``pad_fill``, ``resample`` and ``do_pad``; ``from_pretrained`` reads it back.
``do_pad=False`` (models imported from the official code) resizes without padding. Every
setting is checked when the processor is built (and so when the file is read): a NaN,
an infinite or out-of-range value, a size above :data:`MAX_IMAGE_SIZE` or a value of the
wrong JSON type is refused with a message naming the setting, before any image is
processed (:func:`check_settings` holds the rules).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

from .data.transforms import (
    BICUBIC,
    CLIP_MEAN,
    CLIP_STD,
    DEFAULT_SIZE,
    ImageDecodeError,
    decode_image,
    decode_size_hint,
    fit_to_square,
    normalize,
)

__all__ = ["MAX_IMAGE_SIZE", "PromptPARImageProcessor", "array_to_pil", "check_settings"]

#: Largest accepted ``size`` (pixels per side). CLIP towers take 224 or 336; a larger
#: value is a broken config, and one image at 20000² would take 4.8 GB as float32.
MAX_IMAGE_SIZE = 2048
#: PIL's resampling filters: NEAREST, LANCZOS, BILINEAR, BICUBIC, BOX, HAMMING.
RESAMPLE_FILTERS = (0, 1, 2, 3, 4, 5)


def _is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _side(value: Any, name: str) -> int:
    if not _is_integer(value):
        raise ValueError(f"image processor {name} must be an integer number of pixels, got {value!r}")
    if not 1 <= value <= MAX_IMAGE_SIZE:
        raise ValueError(
            f"image processor {name} must lie in 1..{MAX_IMAGE_SIZE} pixels, got {value}; it must equal the "
            "image size of the model's CLIP vision tower (e.g. 224)"
        )
    return int(value)


def _square_side(size: Any) -> int:
    """The side of a square size given as an int, a dict or a transformers ``SizeDict``."""
    if _is_integer(size):
        return _side(size, "size")
    if isinstance(size, dict):
        get = size.get
    elif hasattr(size, "height") or hasattr(size, "shortest_edge"):  # transformers' SizeDict
        get = lambda key: getattr(size, key, None)  # noqa: E731
    else:
        raise ValueError(
            f"image processor size must be an integer or a dict with height and width, got {size!r}"
        )
    height, width, shortest = get("height"), get("width"), get("shortest_edge")
    if height is not None and width is not None:
        height, width = _side(height, "size height"), _side(width, "size width")
        if height != width:
            raise ValueError(f"PromptPAR needs a square input; got image processor size height {height} and "
                             f"width {width}")
        return height
    if shortest is not None:
        return _side(shortest, "size shortest_edge")
    raise ValueError(f"cannot read a square size from image processor size {size!r}")


def _channel_values(value: Any, name: str, low: float, high: float, low_open: bool = False) -> list[float]:
    """Three finite numbers in [low, high] ((low, high] with ``low_open``); one number is
    used for every channel."""
    values = [value] * 3 if isinstance(value, (int, float, np.number)) else value
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if isinstance(values, (str, bytes, dict)) or not isinstance(values, Sequence) or len(values) != 3:
        raise ValueError(f"image processor {name} must be 3 numbers (one per RGB channel), got {value!r}")
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number)):
            raise ValueError(f"image processor {name} must be 3 numbers (one per RGB channel), got {value!r}")
        v = float(v)
        inside = (low < v if low_open else low <= v) and v <= high  # False for NaN
        if not inside:
            bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]"
            raise ValueError(f"image processor {name} values must be finite and lie in {bounds}, got {value!r}")
        out.append(v)
    return out


def check_settings(
    size: Any, image_mean: Any, image_std: Any, pad_fill: Any, resample: Any, do_pad: Any = True
) -> dict[str, Any]:
    """The processor settings, checked and normalised: ``size`` an integer in
    1..:data:`MAX_IMAGE_SIZE` (or a square ``{"height", "width"}`` dict), ``image_mean``
    3 numbers in [0, 1], ``image_std`` 3 numbers in (0, 1], ``pad_fill`` an integer in
    0..255, ``resample`` one of PIL's filters 0..5, ``do_pad`` a boolean. ``ValueError``
    naming the setting otherwise (NaN and infinities included)."""
    if not isinstance(do_pad, bool):
        raise ValueError(f"image processor do_pad must be true or false, got {do_pad!r}")
    if not _is_integer(pad_fill) or not 0 <= pad_fill <= 255:
        raise ValueError(f"image processor pad_fill must be an integer in 0..255, got {pad_fill!r}")
    if not _is_integer(resample) or int(resample) not in RESAMPLE_FILTERS:
        raise ValueError(
            f"image processor resample must be a PIL resampling filter (0 nearest, 1 lanczos, 2 bilinear, "
            f"3 bicubic, 4 box, 5 hamming), got {resample!r}"
        )
    return {
        "size": _square_side(size),
        "image_mean": _channel_values(image_mean, "image_mean", 0.0, 1.0),
        "image_std": _channel_values(image_std, "image_std", 0.0, 1.0, low_open=True),
        "pad_fill": int(pad_fill),
        "resample": int(resample),
        "do_pad": do_pad,
    }


def array_to_pil(value: Any, index: Optional[int]):
    """A numpy array (H×W or H×W×C, C in 1, 3, 4; uint8 or float in 0..1) or a torch tensor
    (C×H×W) as a PIL image; ``ValueError`` naming ``index`` for anything else."""
    import torch
    from PIL import Image

    which = f"image {index}" if index is not None else "the image"

    if isinstance(value, torch.Tensor):
        if value.ndim != 3 or value.shape[0] not in (1, 3, 4):
            raise ValueError(
                f"{which}: a tensor must be C×H×W with C in (1, 3, 4), "
                f"got shape {tuple(value.shape)}"
            )
        value = value.detach().cpu().permute(1, 2, 0).numpy()
    if isinstance(value, np.ndarray):
        array = value
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
            raise ValueError(
                f"{which}: an array must be H×W or H×W×C with C in (1, 3, 4), "
                f"got shape {value.shape}"
            )
        if min(array.shape[:2]) < 1:
            raise ValueError(f"{which}: empty image of shape {value.shape}")
        if np.issubdtype(array.dtype, np.floating):
            if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
                raise ValueError(f"{which}: float pixels must lie in 0..1")
            array = np.rint(array * 255.0).astype(np.uint8)
        elif array.dtype != np.uint8:
            raise ValueError(f"{which}: pixels must be uint8 or float in 0..1, got {array.dtype}")
        mode = "L" if array.ndim == 2 else ("RGB" if array.shape[2] == 3 else "RGBA")
        return Image.fromarray(np.ascontiguousarray(array), mode=mode)
    raise ValueError(f"{which}: unsupported input type {type(value).__name__}")


class PromptPARImageProcessor(BaseImageProcessor):
    """Image processor for PromptPAR: RGB, pad to a centred square, resize, normalise.

    Args:
        size: side of the square model input in pixels (CLIP: 224).
        image_mean, image_std: per-channel normalisation (default: CLIP's).
        pad_fill: value of the padding pixels (0 = black, as in the paper).
        resample: PIL resampling filter for the resize (default bicubic).
        do_pad: pad to a square first (default); False stretches the image to the square,
            as the official PromptPAR code does.

    Call it on a PIL image, a numpy array (``H×W×C`` uint8 with C in 1, 3, 4, or ``H×W``
    grey; float arrays in 0..1 are accepted too), a torch tensor (``C×H×W``, uint8 or
    float in 0..1), a path, or a list of these. Returns ``BatchFeature`` with
    ``pixel_values`` of shape ``(B, 3, size, size)``. An input that cannot be decoded or
    has the wrong shape raises ``ValueError`` naming its index.
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        size: int = DEFAULT_SIZE,
        image_mean: Sequence[float] = CLIP_MEAN,
        image_std: Sequence[float] = CLIP_STD,
        pad_fill: int = 0,
        resample: int = BICUBIC,
        do_pad: bool = True,
        **kwargs: Any,
    ):
        kwargs.pop("image_processor_type", None)
        settings = check_settings(size, image_mean, image_std, pad_fill, resample, do_pad)
        super().__init__(**kwargs)
        self.size = settings["size"]
        self.image_mean = settings["image_mean"]
        self.image_std = settings["image_std"]
        self.pad_fill = settings["pad_fill"]
        self.resample = settings["resample"]
        self.do_pad = settings["do_pad"]

    def validate(self) -> None:
        """Check the current settings again (they are plain attributes a caller may have
        changed since construction); ``ValueError`` naming the bad one."""
        check_settings(self.size, self.image_mean, self.image_std, self.pad_fill, self.resample, self.do_pad)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any):
        """transformers' loading, with an invalid ``preprocessor_config.json`` reported as
        one ``ValueError`` that names the file and the bad setting."""
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"the image processor config (preprocessor_config.json) of {str(pretrained_model_name_or_path)!r} "
                f"is invalid: {error}. Fix the file, or save the model again."
            ) from error

    @classmethod
    def from_clip_processor(cls, clip_image_processor: Any, **kwargs: Any) -> PromptPARImageProcessor:
        """Copy the crop size and mean/std of a ``CLIPImageProcessor``."""
        size = getattr(clip_image_processor, "crop_size", None) or clip_image_processor.size
        return cls(
            size=size,
            image_mean=list(clip_image_processor.image_mean),
            image_std=list(clip_image_processor.image_std),
            **kwargs,
        )

    # ----------------------------------------------------------------------- inputs

    def _to_pil(self, value: Any, index: int):
        """One input as a decoded PIL image (ValueError naming ``index`` otherwise).

        Files are decoded with ``size_hint=self.size`` when the image is padded, so a huge
        JPEG is decoded at a reduced scale instead of at full size (see
        :func:`~par_prompt.data.transforms.decode_size_hint`)."""
        from PIL import Image

        if isinstance(value, (Image.Image, str, Path, bytes, bytearray, dict)):
            return decode_image(value, index, size_hint=decode_size_hint(self))
        return array_to_pil(value, index)

    # ------------------------------------------------------------------- processing

    def __call__(self, images: Any, return_tensors: str | None = "pt", **kwargs: Any) -> BatchFeature:
        return self.preprocess(images, return_tensors=return_tensors, **kwargs)

    def preprocess(self, images: Any, return_tensors: str | None = "pt", **kwargs: Any) -> BatchFeature:
        """Process one image or a list: ``pixel_values`` float32 ``(B, 3, size, size)``.

        ``return_tensors``: ``"pt"`` (torch, default), ``"np"`` (numpy) or ``None``
        (numpy). No other keyword arguments are accepted.
        """
        import torch

        if kwargs:
            raise TypeError(f"unexpected argument(s) {sorted(kwargs)}")
        if return_tensors not in ("pt", "np", None):
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
        batch = list(images) if isinstance(images, (list, tuple)) else [images]
        if not batch:
            raise ValueError("no images given")
        arrays = []
        for index, value in enumerate(batch):
            try:
                image = self._to_pil(value, index)
            except ImageDecodeError as error:
                raise ValueError(f"image {index}: {error}") from error
            arrays.append(fit_to_square(image, self.size, self.pad_fill, self.resample, self.do_pad))
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # view; normalize copies once
        values = normalize(pixels, self.image_mean, self.image_std)
        if return_tensors != "pt":
            values = values.numpy()
        return BatchFeature(data={"pixel_values": values})
