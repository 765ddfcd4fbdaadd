"""Synthetic PAR data: determinism, label <-> pixel consistency, rates, metadata."""

from __future__ import annotations

import io

import numpy as np
import pytest
from datasets import Image as ImageFeature
from PIL import Image

from par_prompt.data import load, make_synthetic, positive_ratios
from par_prompt.data import synthetic as syn


def decoded(split):
    """(pixels list, labels matrix, formats) of a split."""
    raw = split.cast_column("image", ImageFeature(decode=False))
    images = [Image.open(io.BytesIO(row["bytes"])) for row in raw["image"]]
    formats = {image.format for image in images}
    return [np.asarray(image.convert("RGB")) for image in images], np.array(raw["labels"]), formats


@pytest.fixture(scope="module")
def sample():
    return make_synthetic(240, 30, 30, seed=7)


def test_splits_schema_and_metadata(sample):
    assert {k: len(v) for k, v in sample.items()} == {"train": 240, "validation": 30, "test": 30}
    data = load(sample)
    assert data.name == "synthetic"
    assert data.attributes == list(syn.ATTRIBUTES) and len(data.attributes) >= 16
    assert len(data.sentences) == len(data.attributes) and data.sentences[0] == "A pedestrian wearing a hat"
    assert sample["train"].features["labels"].length == len(syn.ATTRIBUTES)
    pixels, labels, formats = decoded(sample["validation"])
    assert formats == {"PNG"}
    assert all(p.shape == (128, 64, 3) for p in pixels)  # taller than wide
    assert set(np.unique(labels)) <= {0, 1}
    # exactly one lower garment per figure
    lower = labels[:, [syn.ATTRIBUTES.index(a) for a in ("trousers", "shorts", "skirt")]]
    assert (lower.sum(axis=1) == 1).all()


def test_deterministic_per_seed():
    a, b = make_synthetic(12, 4, 4, seed=3), make_synthetic(12, 4, 4, seed=3)
    c = make_synthetic(12, 4, 4, seed=4)
    d = make_synthetic(20, 4, 4, seed=3)  # more train images leave the other splits alone
    for split in a:
        raw = [x[split].cast_column("image", ImageFeature(decode=False)) for x in (a, b, c, d)]
        assert [r["bytes"] for r in raw[0]["image"]] == [r["bytes"] for r in raw[1]["image"]]
        assert raw[0]["labels"] == raw[1]["labels"]
        assert [r["bytes"] for r in raw[0]["image"]] != [r["bytes"] for r in raw[2]["image"]]
        if split != "train":
            assert [r["bytes"] for r in raw[0]["image"]] == [r["bytes"] for r in raw[3]["image"]]


def _rows(height, band):
    top, bottom = syn.BANDS[band]
    return slice(int(round(top * height)), int(round(bottom * height)))


def _count(pixels, colour, rows=slice(None)):
    return int(np.all(pixels[rows] == np.array(colour, dtype=np.uint8), axis=-1).sum())


def _runs(row_mask):
    """Number of runs of True in a 1-D boolean array."""
    padded = np.concatenate([[False], row_mask, [False]])
    return int((np.diff(padded.astype(int)) == 1).sum())


MARKERS = {  # attribute -> (colour, band)
    "hat": (syn.COLOURS["hat"], "head"),
    "long_hair": (syn.COLOURS["long_hair"], "head"),
    "glasses": (syn.COLOURS["glasses"], "head"),
    "upper_red": (syn.SHIRT_COLOURS["red"], "upper"),
    "upper_blue": (syn.SHIRT_COLOURS["blue"], "upper"),
    "upper_white": (syn.SHIRT_COLOURS["white"], "upper"),
    "logo": (syn.COLOURS["logo"], "upper"),
    "upper_stripes": (syn.COLOURS["upper_stripes"], "upper"),
    "backpack": (syn.COLOURS["backpack"], "upper"),
    "lower_dark": (syn.LOWER_COLOURS["dark"], "lower"),
    "handbag": (syn.COLOURS["handbag"], "lower"),
    "boots": (syn.COLOURS["boots"], "feet"),
}


@pytest.mark.parametrize("image_size", [(128, 64), (96, 48)])
def test_labels_match_pixels(sample, image_size):
    data = sample if image_size == (128, 64) else make_synthetic(120, 1, 1, seed=11, image_size=image_size)
    pixels, labels, _ = decoded(data["train"])
    height, width = image_size
    col = {name: i for i, name in enumerate(syn.ATTRIBUTES)}
    low, high = syn.BACKGROUND_RANGE
    for image, row in zip(pixels, labels):
        assert image.shape == (height, width, 3)
        # markers: present in their band exactly when the label is 1, absent elsewhere
        for attribute, (colour, band) in MARKERS.items():
            inside = _count(image, colour, _rows(height, band))
            assert (inside >= 2) == bool(row[col[attribute]]), (attribute, inside, row)
            assert _count(image, colour) == inside, attribute
        skin = np.zeros(image.shape[:2], dtype=bool)
        for tone in syn.SKIN_TONES:
            skin |= np.all(image == tone, axis=-1)
        assert skin[_rows(height, "upper")].any() == bool(row[col["short_sleeves"]])
        bare_legs = skin[_rows(height, "lower")].any()
        assert bare_legs == bool(row[col["shorts"]] or row[col["skirt"]])
        # skirt: one run of the garment colour across the row at 0.64 H; legs: two
        lower_colour = next(
            c for c in syn.LOWER_COLOURS.values() if np.all(image[_rows(height, "lower")] == c, axis=-1).any()
        )
        line = np.all(image[int(round(syn.SKIRT_TEST_ROW * height))] == lower_colour, axis=-1)
        assert _runs(line) == (1 if row[col["skirt"]] else 2)
        # background vs figure: the figure never uses a background value
        figure = np.any((image < low) | (image > high), axis=-1)
        background = image[~figure]
        if row[col["low_light"]]:
            assert background.max() <= 80
        else:
            assert background.min() >= 85
        # side view: narrow figure at 0.45 H
        columns = np.flatnonzero(figure[int(round(0.45 * height))])
        extent = (columns.max() - columns.min() + 1) / width
        assert (extent < 0.46) == bool(row[col["side_view"]]), extent


def test_positive_rates_span_5_to_60_percent():
    data = make_synthetic(1500, 1, 1, seed=1)
    rates = positive_ratios(data["train"])
    nominal = np.array([0.20, 0.35, 0.12, 0.22, 0.18, 0.10, 0.40, 0.08, 0.15, 0.20,
                        0.55, 0.25, 0.20, 0.40, 0.10, 0.12, 0.30, 0.06])  # fmt: skip
    assert rates.shape == (len(syn.ATTRIBUTES),)
    np.testing.assert_allclose(rates, nominal, atol=0.05)
    assert rates.min() < 0.10 and rates.max() > 0.50
    assert 0.03 < rates.min() and rates.max() < 0.65


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least"):
        make_synthetic(2, 1, 1, image_size=(40, 20))
    with pytest.raises(ValueError, match="validation has 0"):
        make_synthetic(2, 0, 1)
