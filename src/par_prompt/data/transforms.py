"""The image pipeline of docs/method.md §1, shared by training and inference.

One implementation, used by both :class:`ImageTransform` (``datasets`` ``with_transform``
batches) and :class:`par_prompt.image_processing.PromptPARImageProcessor`:

1. :func:`decode_image` opens bytes / a file / a ``datasets`` image dict and fully
   decodes it (an unreadable image -> :class:`ImageDecodeError` naming the file, or the
   example index when there is no file name; a path that is not a regular file, such as
   a FIFO or a device, is refused before it is opened, so it can never block). With a
   ``size_hint`` each image is made small right after decoding, before the next one is
   read: a large JPEG is decoded at reduced scale (``Image.draft``), any other large
   image is shrunk by an integer factor (:func:`shrink`; 16-bit images through a lookup
   table, never a wide integer copy). Finally the EXIF orientation tag is applied
   (``PIL.ImageOps.exif_transpose`` semantics), on the already shrunk image.
2. :func:`fit_to_square`: very large images are first shrunk by an integer factor
   (``Image.reduce``) to at most ``4 × size`` on the long side, so a 10000×10000 input
   never gets padded at full size; then :func:`to_rgb`; then :func:`pad_to_square`
   (black, centred, aspect ratio kept); then a bicubic resize to ``size × size``. The
   result is a uint8 array ``(size, size, 3)``. With ``pad=False`` (``do_pad`` of the
   processor) the image is only converted to RGB and resized, as in the official code.
3. Training only, on the uint8 batch: :func:`random_pad_crop_flip` pads 10 black pixels
   on every side, crops a random ``size × size`` window and flips horizontally with
   probability 0.5, drawing from torch's RNG (so ``torch.manual_seed`` and the
   DataLoader's per-worker seeding make it reproducible).
4. :func:`normalize`: one vectorised step ``(x / 255 - mean) / std`` to float32, with
   the CLIP processor's mean and std by default.

Peak memory per image is one decoded image plus its shrunk copy; a batch holds only the
``size × size`` results (``benchmarks/bench_decode_memory.py`` measures it).
"""

from __future__ import annotations

import copy
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

logger = logging.getLogger(__name__)

#: The CLIP image processor's normalisation constants (openai/clip-vit-*).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_SIZE = 224
BICUBIC = 3  # PIL.Image.Resampling.BICUBIC

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
#: 16-bit value -> 8-bit value, ``round(v * 255 / 65535)`` (a table: no wide integer copies)
_SIXTEEN_TO_EIGHT = ((np.arange(65536, dtype=np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
#: Pixels converted at a time by the 16-bit path (a strip of rows)
_STRIP_PIXELS = 1 << 18
#: :func:`shrink` keeps at least this many pixels on the short side
MIN_SHRUNK_SIDE = 16
#: EXIF tag number of the orientation
EXIF_ORIENTATION = 0x0112
_ALPHA = ("LA", "La", "RGBA", "RGBa", "PA")
_REDUCIBLE = ("L", "LA", "La", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "I", "F")


class ImageDecodeError(ValueError):
    """An image that cannot be opened or decoded; the message names the file or index."""


# -------------------------------------------------------------------------- single image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    - ``RGB``: returned as is; ``L``, ``1``, ``CMYK``, ``YCbCr``, ...: PIL's conversion.
    - 16-bit grey (``I;16*``, and ``I``, read as 0..65535 and clipped): scaled to 0..255
      by ``round(v * 255 / 65535)``, not truncated.
    - With alpha (``LA``, ``RGBA``, ``P`` with transparency, ...): composited on black,
      so transparent pixels match the black padding.
    """
    from PIL import Image

    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT:
        return sixteen_bit_to_l(image).convert("RGB")
    if mode == "P":
        if "transparency" not in image.info:
            return image.convert("RGB")
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (0, 0, 0))
        canvas.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def sixteen_bit_to_l(image: Image.Image, factor: int = 1) -> Image.Image:
    """A 16-bit grey image (``I;16*``, or ``I`` read as 0..65535 and clipped) as 8-bit ``L``.

    Values are scaled by ``round(v * 255 / 65535)`` through a lookup table, a strip of
    rows at a time. With ``factor > 1`` each strip is also reduced (``Image.reduce``, the
    same result as reducing the whole image), so the only full-size pixels ever held are
    the input's.
    """
    from PIL import Image

    width, height = image.size
    out = Image.new("L", ((width + factor - 1) // factor, (height + factor - 1) // factor))
    rows = factor * max(1, _STRIP_PIXELS // max(1, width * factor))
    for top in range(0, height, rows):
        strip = np.asarray(image.crop((0, top, width, min(height, top + rows))))
        if image.mode == "I":
            strip = np.clip(strip, 0, 65535)
        grey = Image.fromarray(_SIXTEEN_TO_EIGHT[strip], mode="L")
        out.paste(grey.reduce(factor) if factor > 1 else grey, (0, top // factor))
    return out


def pad_to_square(image: Image.Image, fill: int = 0) -> Image.Image:
    """Pad to a square of side ``max(width, height)``, image centred, aspect ratio kept.

    The image is pasted at ``((side - w) // 2, (side - h) // 2)``: when the padding is
    odd, the extra pixel goes to the right / bottom. ``fill`` is the value of every
    band of the padding (0 = black).
    """
    from PIL import Image

    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    bands = len(image.getbands())
    canvas = Image.new(image.mode, (side, side), fill if bands == 1 else (fill,) * bands)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def shrink(image: Image.Image, limit: int) -> Image.Image:
    """Reduce by an integer factor so the long side is below ``2 × limit`` (no-op when small).

    Cheap box reduction for huge inputs before any padding. The factor never takes the
    short side below :data:`MIN_SHRUNK_SIDE` pixels (a very thin strip is reduced less).
    16-bit grey is scaled to 8-bit and reduced strip by strip (:func:`sixteen_bit_to_l`);
    other modes ``Image.reduce`` cannot average (palette, 1-bit) are converted with
    :func:`to_rgb` first.
    """
    factor = min(max(image.size) // max(1, limit), min(image.size) // MIN_SHRUNK_SIDE)
    if factor < 2:
        return image
    if image.mode in _SIXTEEN_BIT:
        return sixteen_bit_to_l(image, factor)
    if image.mode not in _REDUCIBLE:
        image = to_rgb(image)
    return image.reduce(factor)


def fit_to_square(
    image: Image.Image, size: int, fill: int = 0, resample: int = BICUBIC, pad: bool = True
) -> np.ndarray:
    """RGB, padded to a centred square and resized: uint8 array ``(size, size, 3)``.

    ``pad=False`` resizes the whole image to the square instead (aspect ratio not kept,
    no shrinking first), as the official PromptPAR code does."""
    if not pad:
        image = to_rgb(image)
        if image.size != (size, size):
            image = image.resize((size, size), resample)
        return np.array(image, dtype=np.uint8)
    image = shrink(image, 2 * size)
    image = pad_to_square(to_rgb(image), fill)
    if image.size != (size, size):
        image = image.resize((size, size), resample)
    return np.array(image, dtype=np.uint8)  # writable (np.asarray of a PIL image is read-only)


def _describe(name: str | None, index: int | None) -> str:
    if name:
        return f"image {name}"
    return "image" if index is None else f"image at index {index}"


#: EXIF orientation value -> the ``PIL.Image.Transpose`` that turns the stored pixels
#: upright (the table of ``PIL.ImageOps.exif_transpose``; 1 and unknown values: unchanged)
_ORIENTATION_METHODS = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}
#: ``Image.info`` keys that can carry an orientation (EXIF and XMP)
_ORIENTATION_INFO = ("exif", "xmp", "XML:com.adobe.xmp")


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag of ``image`` (1..8; 1 when absent or unreadable)."""
    try:
        value = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block must not make the image unreadable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def apply_orientation(image: Image.Image, orientation: int) -> Image.Image:
    """``image`` turned upright for an EXIF ``orientation`` (``exif_transpose`` semantics).

    Returns ``image`` itself for orientation 1. The result carries no EXIF or XMP block
    (so no orientation tag): turning it again changes nothing.
    """
    from PIL.Image import Transpose

    method = _ORIENTATION_METHODS.get(orientation)
    if method is None:
        return image
    turned = image.transpose(getattr(Transpose, method))
    turned.info = {key: value for key, value in image.info.items() if key not in _ORIENTATION_INFO}
    return turned


def _open(value: Any, index: int | None, size_hint: int | None) -> tuple[Image.Image, str | None]:
    """Open and fully decode ``value`` as stored (no reduction after decoding, no EXIF)."""
    from PIL import Image, UnidentifiedImageError

    from .common import ParDataError
    from .files import open_regular

    name: str | None = None
    handle = None
    try:
        if isinstance(value, Image.Image):
            image = value
            name = getattr(value, "filename", None) or None
        else:
            if isinstance(value, dict):
                data, name = value.get("bytes"), value.get("path")
                if data is None and name is None:
                    raise ImageDecodeError(f"{_describe(None, index)} has neither bytes nor a path")
            elif isinstance(value, (bytes, bytearray, memoryview)):
                data = bytes(value)
            elif isinstance(value, (str, Path)):
                data, name = None, str(value)
            else:
                raise ImageDecodeError(f"{_describe(None, index)}: unsupported type {type(value).__name__}")
            if data is not None:
                source = io.BytesIO(data)
            else:
                try:
                    source = handle = open_regular(name, "image")
                except ParDataError as error:
                    raise ImageDecodeError(str(error)) from None
            image = Image.open(source)
            if size_hint and image.format == "JPEG" and max(image.size) > 4 * size_hint:
                image.draft(image.mode, (2 * size_hint, 2 * size_hint))
        image.load()
    except ImageDecodeError:
        raise
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise ImageDecodeError(f"cannot decode {_describe(name, index)}: {error}") from error
    finally:
        if handle is not None:
            handle.close()
    return image, name


def decode_size_hint(processor: Any) -> int | None:
    """The ``size_hint`` of :func:`decode_image` for images that ``processor`` (an image
    processor or an :class:`ImageTransform`) will resize: its side when it pads to a square
    (shrinking first changes nothing then), None when it stretches (``do_pad=False``,
    e.g. an imported official model), where only the full image gives the same result as
    the stretch of the original."""
    size = getattr(processor, "size", None)
    return size if size and getattr(processor, "do_pad", True) else None


def decode_image(
    value: Any, index: int | None = None, size_hint: int | None = None, *, orient: bool = True
) -> Image.Image:
    """Open and fully decode ``value``; errors name the file (or the index).

    ``value`` may be a PIL image, a path, raw bytes, or a ``datasets`` image dict
    ``{"bytes": ..., "path": ...}`` (as given by ``Image(decode=False)``). A path must
    name a regular file: a FIFO, device or directory is refused before it is opened.

    With ``size_hint`` (the model's input side) the image is made small right after it
    is decoded: a JPEG more than four times larger is decoded at a reduced scale
    (``Image.draft``, still at least ``2 × size_hint`` on each side), and any image whose
    long side is at least ``4 × size_hint`` is then shrunk by an integer factor
    (:func:`shrink`). Without it the image keeps its full size.

    With ``orient`` (the default) the EXIF orientation is applied last, to the shrunk
    image (as ``PIL.ImageOps.exif_transpose`` would, also for a PIL image passed in, whose
    tag that function clears once applied).
    """
    image, name = _open(value, index, size_hint)
    orientation = exif_orientation(image) if orient else 1
    if size_hint:
        image = shrink(image, 2 * int(size_hint))
    try:
        return apply_orientation(image, orientation)
    except (OSError, ValueError) as error:
        raise ImageDecodeError(f"cannot orient {_describe(name, index)}: {error}") from error


# ------------------------------------------------------------------------------- batches


def normalize(
    pixels: torch.Tensor, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD
) -> torch.Tensor:
    """uint8 ``(B, 3, H, W)`` -> contiguous float32 ``(x / 255 - mean) / std``.

    ``pixels`` may be a strided view (e.g. a permuted ``(B, H, W, 3)`` array): the type
    conversion and the layout change happen in one copy, then two in-place passes.
    """
    import torch

    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    out = torch.empty(tuple(pixels.shape), dtype=torch.float32)
    out.copy_(pixels)
    return out.mul_(1.0 / (255.0 * std_t)).sub_(mean_t / std_t)


def random_pad_crop_flip(
    pixels: torch.Tensor, pad: int = 10, flip_prob: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Training augmentation on a uint8 batch ``(B, C, H, W)`` (a strided view is fine).

    Each image is padded with ``pad`` black pixels on every side, a random ``H × W``
    window is cropped back (offsets uniform in ``0..2·pad``), and it is flipped
    left-right with probability ``flip_prob``. The padded image is never built: each
    window is copied straight from the source. Randomness comes from ``generator``, or
    torch's global RNG when ``None`` (seeded per DataLoader worker by torch).
    """
    import torch

    batch, _, height, width = pixels.shape
    if pad > 0 and batch:
        offsets = torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator).tolist()
        out = torch.zeros_like(pixels)
        for b, (oy, ox) in enumerate(offsets):
            dy, dx = oy - pad, ox - pad  # window origin in source coordinates
            y0, y1, x0, x1 = max(0, dy), min(height, height + dy), max(0, dx), min(width, width + dx)
            out[b, :, y0 - dy : y1 - dy, x0 - dx : x1 - dx] = pixels[b, :, y0:y1, x0:x1]
    else:
        out = pixels.clone()
    flips = torch.rand(batch, generator=generator) < flip_prob
    if flips.any():
        out[flips] = out[flips].flip(-1)
    return out


class ImageTransform:
    """Batch transform for ``Dataset.with_transform``: images + labels -> model inputs.

    Takes ``{"image": [...], "labels": [[...], ...]}`` (images as PIL images, paths,
    bytes or ``Image(decode=False)`` dicts) and returns ``{"pixel_values": float32
    (B, 3, S, S), "labels": int64 (B, N)}`` (``labels`` only when the batch has them).
    Nothing is materialised: every access decodes and transforms afresh.

    With ``train=True`` the augmentation of :func:`random_pad_crop_flip` is applied.
    A corrupt image raises :class:`ImageDecodeError` naming the file; with
    ``skip_corrupt=True`` it is dropped from the batch instead (the batch shrinks), a
    warning is logged and :attr:`skipped` counts the skips of this copy of the transform
    (each DataLoader worker holds its own copy).
    """

    def __init__(
        self,
        size: int = DEFAULT_SIZE,
        image_mean: Sequence[float] = CLIP_MEAN,
        image_std: Sequence[float] = CLIP_STD,
        *,
        train: bool = False,
        pad_fill: int = 0,
        augment_pad: int = 10,
        flip_prob: float = 0.5,
        skip_corrupt: bool = False,
        resample: int = BICUBIC,
        do_pad: bool = True,
        image_column: str = "image",
        label_column: str = "labels",
    ):
        if int(size) < 1:
            raise ValueError(f"size must be a positive integer, got {size}")
        if len(image_mean) != 3 or len(image_std) != 3 or min(image_std) <= 0:
            raise ValueError("image_mean and image_std need 3 values each, std > 0")
        self.size = int(size)
        self.image_mean = tuple(float(v) for v in image_mean)
        self.image_std = tuple(float(v) for v in image_std)
        self.train = bool(train)
        self.pad_fill = int(pad_fill)
        self.augment_pad = int(augment_pad)
        self.flip_prob = float(flip_prob)
        self.skip_corrupt = bool(skip_corrupt)
        self.resample = int(resample)
        self.do_pad = bool(do_pad)
        self.image_column = image_column
        self.label_column = label_column
        self.skipped = 0

    @classmethod
    def from_processor(cls, processor: Any, **kwargs: Any) -> ImageTransform:
        """Same size / mean / std / padding as a :class:`PromptPARImageProcessor`."""
        return cls(
            processor.size,
            processor.image_mean,
            processor.image_std,
            pad_fill=processor.pad_fill,
            resample=processor.resample,
            do_pad=getattr(processor, "do_pad", True),
            **kwargs,
        )

    def for_training(self, train: bool = True) -> ImageTransform:
        """A copy with augmentation switched on or off."""
        other = copy.copy(self)
        other.train = bool(train)
        other.skipped = 0
        return other

    def __repr__(self) -> str:
        return (
            f"ImageTransform(size={self.size}, train={self.train}, augment_pad={self.augment_pad}, "
            f"flip_prob={self.flip_prob}, skip_corrupt={self.skip_corrupt})"
        )

    def pixels(self, images: Sequence[Any]) -> tuple[torch.Tensor, list[int]]:
        """uint8 ``(B, 3, S, S)`` (a channels-last view) of the decodable images, and their indices."""
        import torch

        arrays, kept = [], []
        for i, value in enumerate(images):
            try:
                image = decode_image(value, i, size_hint=decode_size_hint(self))
            except ImageDecodeError as error:
                if not self.skip_corrupt:
                    raise
                self.skipped += 1
                logger.warning("skipping corrupt image (%d skipped so far): %s", self.skipped, error)
                continue
            arrays.append(fit_to_square(image, self.size, self.pad_fill, self.resample, self.do_pad))
            kept.append(i)
        if not arrays:
            return torch.empty((0, 3, self.size, self.size), dtype=torch.uint8), kept
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2), kept  # a view, no copy

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import torch

        if self.image_column not in batch:
            raise KeyError(f"the batch has no {self.image_column!r} column; it has {sorted(batch)}")
        pixels, kept = self.pixels(batch[self.image_column])
        if self.train:
            pixels = random_pad_crop_flip(pixels, self.augment_pad, self.flip_prob)
        out = {"pixel_values": normalize(pixels, self.image_mean, self.image_std)}
        if self.label_column in batch:
            labels = batch[self.label_column]
            rows = [np.asarray(labels[i], dtype=np.int64) for i in kept]
            width = len(labels[0]) if len(labels) else 0
            out["labels"] = (
                torch.from_numpy(np.stack(rows)) if rows else torch.empty((0, width), dtype=torch.int64)
            )
        return out
