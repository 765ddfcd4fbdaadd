"""``PromptPARImageProcessor``: the PromptPAR input pipeline as a transformers image processor.

Pad to a centred black square, resize (bicubic) to ``size × size``, normalise with the
CLIP processor's mean and std (METHOD.md §1). The operations are those of
:mod:`par_prompt.data.transforms` -- the training pipeline (``ImageTransform``) calls the
very same functions, so training and inference cannot drift apart.

``save_pretrained`` writes ``preprocessor_config.json`` with ``size``, ``image_mean``,
``image_std``, ``pad_fill``, ``resample`` and ``do_pad``; ``from_pretrained`` reads it back.
``do_pad=False`` (models imported from the official code) resizes without padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

from .data.transforms import (
    BICUBIC,
    CLIP_MEAN,
    CLIP_STD,
    DEFAULT_SIZE,
    ImageDecodeError,
    decode_image,
    fit_to_square,
    normalize,
)

__all__ = ["PromptPARImageProcessor", "array_to_pil"]


def _square_side(size: Any) -> int:
    """The side of a square size given as an int, a dict or a transformers ``SizeDict``."""
    if isinstance(size, int):
        return size
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    height, width, shortest = get("height"), get("width"), get("shortest_edge")
    if height is not None and width is not None:
        if height != width:
            raise ValueError(f"PromptPAR needs a square input; got height {height} and width {width}")
        return int(height)
    if shortest is not None:
        return int(shortest)
    raise ValueError(f"cannot read a square size from {size!r}")


def array_to_pil(value: Any, index: int):
    """A numpy array (H×W or H×W×C, C in 1, 3, 4; uint8 or float in 0..1) or a torch tensor
    (C×H×W) as a PIL image; ``ValueError`` naming ``index`` for anything else."""
    import torch
    from PIL import Image

    if isinstance(value, torch.Tensor):
        if value.ndim != 3 or value.shape[0] not in (1, 3, 4):
            raise ValueError(
                f"image {index}: a tensor must be C×H×W with C in (1, 3, 4), "
                f"got shape {tuple(value.shape)}"
            )
        value = value.detach().cpu().permute(1, 2, 0).numpy()
    if isinstance(value, np.ndarray):
        array = value
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
            raise ValueError(
                f"image {index}: an array must be H×W or H×W×C with C in (1, 3, 4), "
                f"got shape {value.shape}"
            )
        if min(array.shape[:2]) < 1:
            raise ValueError(f"image {index}: empty image of shape {value.shape}")
        if np.issubdtype(array.dtype, np.floating):
            if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
                raise ValueError(f"image {index}: float pixels must lie in 0..1")
            array = np.rint(array * 255.0).astype(np.uint8)
        elif array.dtype != np.uint8:
            raise ValueError(f"image {index}: pixels must be uint8 or float in 0..1, got {array.dtype}")
        mode = "L" if array.ndim == 2 else ("RGB" if array.shape[2] == 3 else "RGBA")
        return Image.fromarray(np.ascontiguousarray(array), mode=mode)
    raise ValueError(f"image {index}: unsupported input type {type(value).__name__}")


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
        super().__init__(**kwargs)
        size = _square_side(size)
        if size < 1:
            raise ValueError(f"size must be a positive integer, got {size}")
        if len(image_mean) != 3 or len(image_std) != 3:
            raise ValueError("image_mean and image_std need 3 values each")
        if min(image_std) <= 0:
            raise ValueError(f"image_std must be positive, got {image_std}")
        if not 0 <= int(pad_fill) <= 255:
            raise ValueError(f"pad_fill must be in 0..255, got {pad_fill}")
        self.size = int(size)
        self.image_mean = [float(v) for v in image_mean]
        self.image_std = [float(v) for v in image_std]
        self.pad_fill = int(pad_fill)
        self.resample = int(resample)
        self.do_pad = bool(do_pad)

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

        Files are decoded with ``size_hint=self.size``, so a huge JPEG is decoded at a
        reduced scale instead of at full size."""
        from PIL import Image

        if isinstance(value, (Image.Image, str, Path, bytes, bytearray, dict)):
            return decode_image(value, index, size_hint=self.size if self.do_pad else None)
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
