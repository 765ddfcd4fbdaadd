"""Image pipeline: mode conversion, square padding, augmentation, lazy batch transform."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import torch
from datasets import Dataset, Features, List, Value
from datasets import Image as ImageFeature
from PIL import Image

from par_prompt.data import (
    CLIP_MEAN,
    CLIP_STD,
    ImageTransform,
    fit_to_square,
    load,
    make_synthetic,
    pad_to_square,
    to_rgb,
)
from par_prompt.data.transforms import (
    ImageDecodeError,
    _open,
    decode_image,
    normalize,
    random_pad_crop_flip,
    shrink,
)

# ------------------------------------------------------------------------------- to_rgb


def rgb(image):
    out = to_rgb(image)
    assert out.mode == "RGB" and out.size == image.size
    return np.asarray(out, dtype=int)


def test_l_and_rgb():
    assert (rgb(Image.new("L", (3, 2), 100)) == 100).all()
    image = Image.new("RGB", (3, 2), (1, 2, 3))
    assert to_rgb(image) is image


def test_la_and_rgba_are_composited_on_black():
    la = Image.new("LA", (2, 2), (200, 128))
    np.testing.assert_allclose(rgb(la), 200 * 128 / 255, atol=1)
    rgba = Image.new("RGBA", (2, 1))
    rgba.putpixel((0, 0), (255, 0, 0, 0))  # fully transparent red -> black
    rgba.putpixel((1, 0), (10, 20, 30, 255))  # opaque -> unchanged
    assert rgb(rgba)[0].tolist() == [[0, 0, 0], [10, 20, 30]]


def test_palette_with_and_without_transparency():
    p = Image.new("P", (2, 1))
    p.putpalette([0, 0, 0, 250, 10, 20] + [0] * 762)
    p.putpixel((0, 0), 1)
    p.putpixel((1, 0), 0)
    assert rgb(p)[0].tolist() == [[250, 10, 20], [0, 0, 0]]
    p.info["transparency"] = 1  # index 1 is transparent -> black
    assert rgb(p)[0].tolist() == [[0, 0, 0], [0, 0, 0]]
    buffer = io.BytesIO()  # and through a real PNG file
    p.save(buffer, format="PNG")
    assert rgb(Image.open(buffer))[0].tolist() == [[0, 0, 0], [0, 0, 0]]


def test_cmyk():
    assert rgb(Image.new("CMYK", (1, 1), (0, 0, 0, 0)))[0, 0].tolist() == [255, 255, 255]
    assert rgb(Image.new("CMYK", (1, 1), (255, 0, 0, 0)))[0, 0].tolist() == [0, 255, 255]  # cyan
    assert rgb(Image.new("CMYK", (1, 1), (0, 0, 0, 255)))[0, 0].tolist() == [0, 0, 0]
    buffer = io.BytesIO()
    Image.new("CMYK", (8, 8), (0, 255, 0, 0)).save(buffer, format="JPEG", quality=100)
    np.testing.assert_allclose(rgb(Image.open(buffer))[0, 0], [255, 0, 255], atol=3)  # magenta


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_sixteen_bit_is_scaled_not_truncated(mode):
    values = np.array([[0, 257 * 100, 32768, 65535]], dtype=np.uint16)
    image = (
        Image.fromarray(values.astype(np.int32), mode="I")
        if mode == "I"
        else Image.frombytes(mode, (4, 1), values.astype(">u2" if mode == "I;16B" else "<u2").tobytes())
    )
    assert image.mode == mode
    assert rgb(image)[0, :, 0].tolist() == [0, 100, 128, 255]


def test_sixteen_bit_png_file():
    buffer = io.BytesIO()
    Image.fromarray(np.array([[1000, 65535]], dtype=np.uint16)).save(buffer, format="PNG")
    image = Image.open(buffer)
    assert image.mode in ("I;16", "I")
    assert rgb(image)[0, :, 0].tolist() == [4, 255]


# -------------------------------------------------------------------------------- padding


@pytest.mark.parametrize(
    "size,offset", [((30, 50), (10, 0)), ((31, 50), (9, 0)), ((50, 21), (0, 14)), ((8, 8), (0, 0))]
)
def test_pad_to_square_centres(size, offset):
    rng = np.random.default_rng(0)
    pixels = rng.integers(1, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    out = np.asarray(pad_to_square(Image.fromarray(pixels)))
    side = max(size)
    assert out.shape == (side, side, 3)
    x, y = offset
    np.testing.assert_array_equal(out[y : y + size[1], x : x + size[0]], pixels)
    mask = np.ones((side, side), dtype=bool)
    mask[y : y + size[1], x : x + size[0]] = False
    assert (out[mask] == 0).all()  # black padding
    assert (mask[:, :x].all() and mask[:, x + size[0] :].all()) if x else True
    assert side - size[0] - x >= x and side - size[1] - y >= y  # extra pixel right / bottom


def test_pad_fill_and_modes():
    out = pad_to_square(Image.new("L", (2, 4), 9), fill=7)
    assert out.mode == "L" and np.asarray(out)[:, 0].tolist() == [7, 7, 7, 7]


def test_fit_to_square_keeps_aspect_ratio():
    out = fit_to_square(Image.new("RGB", (20, 40), (255, 255, 255)), 224)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    white = np.flatnonzero(out[112, :, 0] > 127)
    assert white.min() in range(55, 58) and white.max() in range(166, 169)  # 20/40 of the width, centred
    assert (out[:, :50] == 0).all() and (out[:, -50:] == 0).all()


def test_huge_images_are_shrunk_before_padding():
    huge = Image.new("L", (10000, 5000), 200)
    small = shrink(huge, 448)
    assert max(small.size) < 2 * 448 and abs(small.size[0] - 2 * small.size[1]) <= 1
    out = fit_to_square(huge, 224)
    assert out.shape == (224, 224, 3) and (out[112, 112] == 200).all() and (out[0, 0] == 0).all()
    assert fit_to_square(Image.new("P", (6000, 6000)), 32).shape == (32, 32, 3)  # palette: converted first


def test_large_jpeg_is_decoded_at_reduced_scale():
    buffer = io.BytesIO()
    Image.new("RGB", (2400, 1200), (9, 9, 9)).save(buffer, format="JPEG")
    assert decode_image(buffer.getvalue(), 0).size == (2400, 1200)
    drafted, _ = _open(buffer.getvalue(), 0, size_hint=224)
    assert drafted.size == (1200, 600)  # the largest JPEG scale keeping both sides >= 2 * 224
    # then shrunk by an integer factor: long side below 4 * 224
    assert decode_image(buffer.getvalue(), 0, size_hint=224).size == (600, 300)


def test_decode_errors_name_the_file_or_index():
    with pytest.raises(ImageDecodeError, match="photo_17.jpg"):
        decode_image({"bytes": b"garbage", "path": "photo_17.jpg"}, 3)
    with pytest.raises(ImageDecodeError, match="index 3"):
        decode_image(b"garbage", 3)
    with pytest.raises(ImageDecodeError, match="missing.png"):
        decode_image("/nonexistent/missing.png", 0)


# ------------------------------------------------------------------------ batch operations


def test_normalize_matches_the_formula():
    pixels = torch.randint(0, 256, (2, 3, 5, 5), dtype=torch.uint8)
    expected = (pixels.float() / 255 - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        CLIP_STD
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(normalize(pixels), expected, atol=1e-5, rtol=1e-5)
    assert normalize(pixels).dtype == torch.float32


def _candidates(image, pad):
    """Every pad-crop (and its flip) of one (C, H, W) image."""
    c, h, w = image.shape
    padded = torch.zeros((c, h + 2 * pad, w + 2 * pad), dtype=image.dtype)
    padded[:, pad : pad + h, pad : pad + w] = image
    for y in range(2 * pad + 1):
        for x in range(2 * pad + 1):
            crop = padded[:, y : y + h, x : x + w]
            yield (y, x, False), crop
            yield (y, x, True), crop.flip(-1)


def test_augmentation_is_a_pad_crop_flip():
    pixels = torch.randint(1, 256, (24, 3, 12, 12), dtype=torch.uint8)
    out = random_pad_crop_flip(pixels, pad=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == pixels.shape and out.dtype == torch.uint8
    chosen = []
    for image, result in zip(pixels, out):
        matches = [key for key, crop in _candidates(image, 3) if torch.equal(crop, result)]
        assert matches, "output is not a pad-crop(-flip) of its input"
        chosen.append(matches[0])
    assert len({key[:2] for key in chosen}) > 5  # offsets vary
    assert {key[2] for key in chosen} == {True, False}  # some flipped, some not


def test_augmentation_is_reproducible_and_seed_dependent():
    pixels = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    a = random_pad_crop_flip(pixels, generator=torch.Generator().manual_seed(1))
    b = random_pad_crop_flip(pixels, generator=torch.Generator().manual_seed(1))
    c = random_pad_crop_flip(pixels, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(5)
    d = random_pad_crop_flip(pixels)
    torch.manual_seed(5)
    assert torch.equal(d, random_pad_crop_flip(pixels))  # global RNG when no generator
    assert torch.equal(random_pad_crop_flip(pixels, pad=0, flip_prob=1.0), pixels.flip(-1))
    assert torch.equal(random_pad_crop_flip(pixels, pad=0, flip_prob=0.0), pixels)


# -------------------------------------------------------------------------- ImageTransform


@pytest.fixture(scope="module")
def par_data():
    return load(make_synthetic(24, 6, 6, seed=0))


def test_transform_outputs(par_data):
    splits = par_data.with_image_transforms(size=64)
    batch = splits["validation"][0:4]
    assert batch["pixel_values"].shape == (4, 3, 64, 64) and batch["pixel_values"].dtype == torch.float32
    assert batch["labels"].dtype == torch.int64
    np.testing.assert_array_equal(batch["labels"].numpy(), np.array(par_data["validation"]["labels"][0:4]))
    # eval: deterministic, and exactly the pure pipeline
    again = splits["validation"][0:4]["pixel_values"]
    torch.testing.assert_close(batch["pixel_values"], again)
    image = par_data["validation"][0]["image"]
    pure = normalize(torch.from_numpy(fit_to_square(image, 64)).permute(2, 0, 1)[None])
    torch.testing.assert_close(batch["pixel_values"][:1], pure)
    # single example access
    assert splits["test"][1]["pixel_values"].shape == (3, 64, 64)


def test_train_transform_is_lazy_and_random(par_data):
    splits = par_data.with_image_transforms(size=64)
    torch.manual_seed(0)
    first = splits["train"][0:8]["pixel_values"]
    second = splits["train"][0:8]["pixel_values"]
    assert not torch.equal(first, second)  # recomputed on each access: nothing materialised
    torch.manual_seed(0)
    torch.testing.assert_close(splits["train"][0:8]["pixel_values"], first)
    assert splits["train"].cache_files == par_data["train"].cache_files


def test_dataloader_with_workers_is_reproducible(par_data):
    splits = par_data.with_image_transforms(size=32)

    def run(seed):
        torch.manual_seed(seed)
        loader = torch.utils.data.DataLoader(splits["train"], batch_size=8, num_workers=2, shuffle=True)
        return torch.cat([batch["pixel_values"] for batch in loader]), torch.cat(
            [b["labels"] for b in loader]
        )

    (a, la), (b, lb), (c, lc) = run(3), run(3), run(4)
    assert a.shape == (24, 3, 32, 32) and la.shape == (24, len(par_data.attributes))
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(a, c) and not torch.equal(la, lc)  # another seed: another shuffle


def _corrupt_dataset():
    buffer = io.BytesIO()
    Image.new("RGB", (10, 20), (50, 60, 70)).save(buffer, format="PNG")
    features = Features({"image": ImageFeature(), "labels": List(Value("int8"), length=2)})
    images = [
        {"bytes": buffer.getvalue(), "path": "ok_0.png"},
        {"bytes": b"broken bytes", "path": "broken_1.png"},
        {"bytes": buffer.getvalue(), "path": "ok_2.png"},
    ]
    return Dataset.from_dict({"image": images, "labels": [[1, 0], [0, 1], [2, 1]]}, features=features)


def test_corrupt_images_error_or_are_skipped(caplog):
    dataset = _corrupt_dataset().cast_column("image", ImageFeature(decode=False))
    with pytest.raises(ImageDecodeError, match="broken_1.png"):
        dataset.with_transform(ImageTransform(size=16))[0:3]
    transform = ImageTransform(size=16, skip_corrupt=True)
    with caplog.at_level(logging.WARNING):
        batch = dataset.with_transform(transform)[0:3]
    assert batch["pixel_values"].shape == (2, 3, 16, 16)
    assert batch["labels"].tolist() == [[1, 0], [2, 1]]
    assert transform.skipped == 1 and "broken_1.png" in caplog.text and "1 skipped" in caplog.text


def test_transform_validates_arguments():
    with pytest.raises(ValueError):
        ImageTransform(size=0)
    with pytest.raises(ValueError):
        ImageTransform(image_std=(1.0, 0.0, 1.0))
    with pytest.raises(KeyError, match="pixels"):
        ImageTransform(image_column="pixels")({"image": []})
