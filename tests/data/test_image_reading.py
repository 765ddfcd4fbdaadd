"""Reading images: EXIF orientation, non-regular files, large and 16-bit images."""

from __future__ import annotations

import io
import os
import threading
import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from par_prompt.data import ImageTransform, fit_to_square, to_rgb
from par_prompt.data.transforms import (
    ImageDecodeError,
    apply_orientation,
    decode_image,
    exif_orientation,
    shrink,
)
from par_prompt.image_processing import PromptPARImageProcessor

# ------------------------------------------------------------------------ EXIF orientation


def upright_picture(size=(48, 32)) -> Image.Image:
    """An RGB picture whose four quadrants differ, so every turn and flip is visible."""
    width, height = size
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[: height // 2, : width // 2] = (250, 0, 0)
    pixels[: height // 2, width // 2 :] = (0, 250, 0)
    pixels[height // 2 :, : width // 2] = (0, 0, 250)
    pixels[height // 2 :, width // 2 :] = (250, 250, 0)
    return Image.fromarray(pixels)


#: orientation -> how the upright picture is stored so that the tag turns it back
_STORED = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def tagged_photo(orientation: int, fmt: str = "PNG", size=(48, 32)) -> bytes:
    """The bytes of a photo stored sideways / mirrored with the EXIF tag that undoes it."""
    upright = upright_picture(size)
    stored = upright if _STORED[orientation] is None else upright.transpose(_STORED[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, format=fmt, exif=exif, **({"quality": 100} if fmt == "JPEG" else {}))
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_exif_transpose(tmp_path, orientation):
    data = tagged_photo(orientation)
    path = tmp_path / "photo.png"
    path.write_bytes(data)
    upright = np.asarray(upright_picture())
    reference = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    np.testing.assert_array_equal(reference, upright)  # the fixture is what exif_transpose expects
    for value in (path, str(path), data, {"bytes": data, "path": "photo.png"},
                  {"bytes": None, "path": str(path)}, Image.open(io.BytesIO(data))):
        decoded = decode_image(value, 0)
        np.testing.assert_array_equal(np.asarray(decoded.convert("RGB")), upright)
        assert exif_orientation(decoded) == 1  # turning it again changes nothing
        assert decode_image(decoded, 0) is decoded


def test_orientation_is_applied_after_shrinking_a_large_photo():
    data = tagged_photo(6, fmt="JPEG", size=(2400, 1600))  # stored 1600 wide, 2400 high
    decoded = decode_image(data, 0, size_hint=224)
    assert decoded.width > decoded.height  # upright: landscape again
    assert max(decoded.size) < 4 * 224
    full = decode_image(data, 0)
    assert full.size == (2400, 1600)


def test_pipeline_inputs_see_the_upright_photo(tmp_path):
    """The training transform and the image processor agree with an untagged upright copy."""
    tagged = tmp_path / "tagged.png"
    tagged.write_bytes(tagged_photo(8))
    plain = tmp_path / "plain.png"
    upright_picture().save(plain)
    transform = ImageTransform(size=32)
    batch = transform({"image": [{"bytes": None, "path": str(tagged)}, {"bytes": None, "path": str(plain)}]})
    torch.testing.assert_close(batch["pixel_values"][0], batch["pixel_values"][1])
    processor = PromptPARImageProcessor(size=32)
    values = processor([str(tagged), str(plain)])["pixel_values"]
    torch.testing.assert_close(values[0], values[1])


def test_broken_orientation_values_are_ignored():
    image = upright_picture()
    assert apply_orientation(image, 1) is image and apply_orientation(image, 9) is image
    exif = Image.Exif()
    exif[0x0112] = 42
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=exif)
    np.testing.assert_array_equal(np.asarray(decode_image(buffer.getvalue()).convert("RGB")), np.asarray(image))


# --------------------------------------------------------------------- non-regular files


def _decode_in_thread(value):
    """Run decode_image in a thread; returns (thread, outcome list)."""
    outcome = []

    def target():
        try:
            outcome.append(decode_image(value, 0))
        except Exception as error:  # noqa: BLE001 - recorded for the assertion
            outcome.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=20)
    return thread, outcome


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")
@pytest.mark.parametrize("wrap", [str, lambda p: {"bytes": None, "path": str(p)}])
def test_a_fifo_is_refused_without_blocking(tmp_path, wrap):
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    thread, outcome = _decode_in_thread(wrap(fifo))
    try:
        assert not thread.is_alive(), "decode_image blocked on a FIFO"
        assert isinstance(outcome[0], ImageDecodeError)
        assert "photo.jpg" in str(outcome[0]) and "FIFO" in str(outcome[0])
    finally:
        if thread.is_alive():  # release the reader blocked in open()
            with open(fifo, "wb"):
                pass
            thread.join(timeout=5)


def test_devices_and_directories_are_refused(tmp_path):
    with pytest.raises(ImageDecodeError, match="character device"):
        decode_image("/dev/zero", 0)
    with pytest.raises(ImageDecodeError, match="is a directory"):
        decode_image(tmp_path, 0)
    with pytest.raises(ImageDecodeError, match="does not exist"):
        decode_image(tmp_path / "missing.png", 0)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")
def test_transform_skips_a_fifo_when_asked(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    good = tmp_path / "good.png"
    upright_picture().save(good)
    transform = ImageTransform(size=16, skip_corrupt=True)
    batch = transform({"image": [{"bytes": None, "path": str(fifo)}, {"bytes": None, "path": str(good)}],
                       "labels": [[1], [0]]})
    assert batch["pixel_values"].shape == (1, 3, 16, 16) and batch["labels"].tolist() == [[0]]


# ------------------------------------------------------------------- large and 16-bit images


def test_sixteen_bit_conversion_makes_no_wide_copies():
    side = 1500
    values = np.tile(np.arange(side, dtype=np.uint16) * 43, (side, 1))
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    tracemalloc.start()
    try:
        out = to_rgb(image)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the 8-bit grey result is side² bytes; an int64 copy alone would be 8 × that
    assert peak < 2 * side * side, f"peak {peak / 2**20:.1f} MiB"
    expected = (values.astype(np.int64) * 255 + 32767) // 65535
    np.testing.assert_array_equal(np.asarray(out)[..., 0], expected)


def test_a_large_png_is_shrunk_right_after_decoding():
    """The decoded image a batch keeps is already small (not 4000² pixels per entry)."""
    buffer = io.BytesIO()
    Image.new("RGB", (4000, 2000), (10, 120, 200)).save(buffer, format="PNG")
    decoded = decode_image(buffer.getvalue(), 0, size_hint=64)
    assert max(decoded.size) < 4 * 64 and decoded.size[0] == 2 * decoded.size[1]
    assert decoded.getpixel((5, 5)) == (10, 120, 200)


def test_a_large_sixteen_bit_png_is_shrunk_and_scaled():
    values = np.full((1200, 3000), 32768, dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    decoded = decode_image(buffer.getvalue(), 0, size_hint=32)
    assert decoded.mode == "L" and max(decoded.size) < 4 * 32
    assert set(np.unique(np.asarray(decoded)).tolist()) == {128}
    assert fit_to_square(decoded, 32)[16, 16].tolist() == [128, 128, 128]


def test_shrinking_keeps_a_thin_strip_readable():
    strip = Image.new("RGB", (9000, 40), (1, 2, 3))
    assert min(shrink(strip, 448).size) >= 16
