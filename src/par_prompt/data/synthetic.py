"""A synthetic PAR data set: procedurally drawn pedestrian figures, deterministic per seed.

Each image shows one figure on a noisy background. The figure is laid out in four
horizontal bands of the image (fractions of the height, :data:`BANDS`): head
``[0, 0.22)``, upper body ``[0.22, 0.55)``, lower body ``[0.55, 0.88)``, feet
``[0.88, 1)``. Sixteen attributes live in one band each and two are global:

========  =====================================================================
band      attributes (approximate positive rate)
========  =====================================================================
head      hat (.20), long_hair (.35), glasses (.12)
upper     upper_red (.22), upper_blue (.18), upper_white (.10), short_sleeves (.40),
          logo (.08), upper_stripes (.15), backpack (.20)
lower     trousers (.55), shorts (.25), skirt (.20), lower_dark (.40), handbag (.10)
feet      boots (.12)
global    side_view (.30), low_light (.06)
========  =====================================================================

Long hair is more likely with a skirt, short sleeves with shorts. Exactly one of
trousers / shorts / skirt is 1.

Pixel rules (what a test can check, and what makes the labels learnable):

- Backgrounds only use channel values in ``[40, 215]`` (:data:`BACKGROUND_RANGE`):
  ``[85, 215]`` normally, ``[40, 80]`` when ``low_light`` is 1. Every colour of the
  figure (:data:`COLOURS`, :data:`SKIN_TONES`, :data:`LOWER_COLOURS`,
  :data:`SHIRT_COLOURS`) has a channel outside that range, so figure and background
  never share a pixel value.
- Drawing is exact (numpy slices and masks, no anti-aliasing; PNG is lossless), so an
  attribute's colour is present exactly when the attribute is: ``hat`` <-> ``COLOURS
  ["hat"]`` pixels in the head band, ``glasses``, ``long_hair``, ``logo``,
  ``upper_stripes``, ``backpack``, ``handbag``, ``boots`` likewise in their bands,
  ``upper_red/blue/white`` <-> that shirt colour in the upper band, ``short_sleeves``
  <-> skin in the upper band, ``shorts`` or ``skirt`` <-> skin in the lower band,
  ``skirt`` <-> one run of the lower-garment colour along the row at 0.64·H (two legs,
  hence two runs, otherwise), ``lower_dark`` <-> ``LOWER_COLOURS["dark"]``.
- Side view: a narrow torso with one arm (and a backpack drawn behind it), so the
  figure is at most ~0.42·W wide at 0.45·H against at least ~0.50·W from the front.

Images are ``image_size = (height, width)`` (default 128×64, taller than wide, so the
square padding matters), PNG encoded. The stored image path is
``"synthetic/<split>/<index>.png"``.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from .common import attach_metadata, make_features, metadata_dict

if TYPE_CHECKING:  # pragma: no cover
    import datasets

ATTRIBUTES: tuple[str, ...] = (
    "hat", "long_hair", "glasses",
    "upper_red", "upper_blue", "upper_white", "short_sleeves", "logo", "upper_stripes", "backpack",
    "trousers", "shorts", "skirt", "lower_dark", "handbag",
    "boots",
    "side_view", "low_light",
)  # fmt: skip

SENTENCES: tuple[str, ...] = (
    "A pedestrian wearing a hat",
    "A pedestrian whose hair is long",
    "A pedestrian wearing glasses",
    "A pedestrian wearing red upper clothing",
    "A pedestrian wearing blue upper clothing",
    "A pedestrian wearing white upper clothing",
    "A pedestrian whose upper clothing has short sleeves",
    "A pedestrian whose upper clothing has a logo",
    "A pedestrian whose upper clothing has stripes",
    "A pedestrian carrying a backpack",
    "A pedestrian wearing trousers",
    "A pedestrian wearing shorts",
    "A pedestrian wearing a skirt",
    "A pedestrian wearing dark lower clothing",
    "A pedestrian carrying a handbag",
    "A pedestrian wearing boots",
    "A pedestrian seen from the side",
    "A pedestrian in a dark scene",
)

#: band name -> (top, bottom) as fractions of the image height (bottom exclusive)
BANDS: dict[str, tuple[float, float]] = {
    "head": (0.0, 0.22),
    "upper": (0.22, 0.55),
    "lower": (0.55, 0.88),
    "feet": (0.88, 1.0),
}
#: attribute -> its band, or "global"
ATTRIBUTE_BANDS: dict[str, str] = {
    **dict.fromkeys(("hat", "long_hair", "glasses"), "head"),
    **dict.fromkeys(
        ("upper_red", "upper_blue", "upper_white", "short_sleeves", "logo", "upper_stripes", "backpack"),
        "upper",
    ),
    **dict.fromkeys(("trousers", "shorts", "skirt", "lower_dark", "handbag"), "lower"),
    "boots": "feet",
    **dict.fromkeys(("side_view", "low_light"), "global"),
}

#: Channel values a background pixel can take; every figure colour leaves this range.
BACKGROUND_RANGE = (40, 215)
_BG_NORMAL = (85, 215)
_BG_DARK = (40, 80)

Colour = tuple[int, int, int]
COLOURS: dict[str, Colour] = {
    "hat": (255, 140, 0),
    "long_hair": (90, 50, 10),
    "short_hair": (30, 25, 20),
    "glasses": (0, 0, 0),
    "eyes": (20, 20, 20),
    "logo": (255, 255, 0),
    "upper_stripes": (15, 15, 90),
    "backpack": (0, 100, 80),
    "handbag": (150, 0, 120),
    "shoes": (60, 35, 25),
    "boots": (160, 82, 10),
}
SKIN_TONES: tuple[Colour, ...] = ((255, 219, 172), (241, 194, 125), (224, 172, 105), (141, 85, 36))
SHIRT_COLOURS: dict[str, Colour] = {
    "red": (220, 30, 40),
    "blue": (30, 60, 220),
    "white": (245, 245, 245),
    "green": (20, 160, 60),
    "yellow": (235, 200, 40),
    "purple": (110, 30, 160),
    "grey": (100, 100, 30),
}
LOWER_COLOURS: dict[str, Colour] = {
    "dark": (25, 25, 30),
    "jeans": (30, 60, 150),
    "khaki": (230, 180, 100),
    "light": (220, 220, 225),
}
#: row (fraction of the height) where a skirt shows one run of lower colour, legs two
SKIRT_TEST_ROW = 0.64
MIN_SIZE = (64, 32)


@dataclass(frozen=True)
class Figure:
    """One sampled pedestrian: its labels plus the appearance choices they do not fix."""

    labels: dict[str, int]
    cx: float  # horizontal centre, fraction of the width
    build: float  # width scale of the body
    facing: int  # +1 right, -1 left (side view)
    skin: Colour
    shirt: Colour
    lower: Colour


def _bernoulli(rng: np.random.Generator, p: float) -> int:
    return int(rng.random() < p)


def sample_figure(rng: np.random.Generator) -> Figure:
    """Draw the attributes (with their rates and correlations) and the appearance."""
    lower_kind = rng.choice(3, p=(0.55, 0.25, 0.20))  # trousers, shorts, skirt
    shirt = rng.choice(4, p=(0.22, 0.18, 0.10, 0.50))  # red, blue, white, other
    labels = {
        "hat": _bernoulli(rng, 0.20),
        "long_hair": _bernoulli(rng, 0.70 if lower_kind == 2 else 0.26),
        "glasses": _bernoulli(rng, 0.12),
        "upper_red": int(shirt == 0),
        "upper_blue": int(shirt == 1),
        "upper_white": int(shirt == 2),
        "short_sleeves": _bernoulli(rng, 0.70 if lower_kind == 1 else 0.30),
        "logo": _bernoulli(rng, 0.08),
        "upper_stripes": _bernoulli(rng, 0.15),
        "backpack": _bernoulli(rng, 0.20),
        "trousers": int(lower_kind == 0),
        "shorts": int(lower_kind == 1),
        "skirt": int(lower_kind == 2),
        "lower_dark": _bernoulli(rng, 0.40),
        "handbag": _bernoulli(rng, 0.10),
        "boots": _bernoulli(rng, 0.12),
        "side_view": _bernoulli(rng, 0.30),
        "low_light": _bernoulli(rng, 0.06),
    }
    if shirt == 3:
        others = ("green", "yellow", "purple", "grey")
        shirt_colour = SHIRT_COLOURS[others[rng.integers(len(others))]]
    else:
        shirt_colour = SHIRT_COLOURS[("red", "blue", "white")[shirt]]
    if labels["lower_dark"]:
        lower_colour = LOWER_COLOURS["dark"]
    else:
        lower_colour = LOWER_COLOURS[("jeans", "khaki", "light")[rng.integers(3)]]
    return Figure(
        labels=labels,
        cx=0.5 + rng.uniform(-0.08, 0.08),
        build=rng.uniform(0.88, 1.12),
        facing=1 if rng.random() < 0.5 else -1,
        skin=SKIN_TONES[rng.integers(len(SKIN_TONES))],
        shirt=shirt_colour,
        lower=lower_colour,
    )


class _Canvas:
    """An (H, W, 3) uint8 image with exact, half-open rectangle / ellipse / trapezoid fills."""

    def __init__(self, pixels: np.ndarray):
        self.pixels = pixels
        self.height, self.width = pixels.shape[:2]

    def y(self, fraction: float) -> int:
        return int(round(fraction * self.height))

    def x(self, fraction: float) -> int:
        return int(round(fraction * self.width))

    def rect(self, x0: float, x1: float, y0: float, y1: float, colour: Colour) -> None:
        """Fill columns [x0, x1) and rows [y0, y1), given as fractions (clipped)."""
        c0, c1 = max(0, self.x(x0)), min(self.width, self.x(x1))
        r0, r1 = max(0, self.y(y0)), min(self.height, self.y(y1))
        if c1 > c0 and r1 > r0:
            self.pixels[r0:r1, c0:c1] = colour

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, colour: Colour) -> None:
        rows = np.arange(self.height)[:, None] + 0.5
        cols = np.arange(self.width)[None, :] + 0.5
        mask = ((cols - cx * self.width) / (rx * self.width)) ** 2 + (
            (rows - cy * self.height) / (ry * self.height)
        ) ** 2 <= 1
        self.pixels[mask] = colour

    def trapezoid(
        self, cx: float, top: float, bottom: float, half_top: float, half_bottom: float, colour: Colour
    ) -> None:
        r0, r1 = self.y(top), self.y(bottom)
        for row in range(r0, r1):
            t = (row - r0) / max(1, r1 - r0 - 1)
            half = half_top + t * (half_bottom - half_top)
            c0, c1 = max(0, self.x(cx - half)), min(self.width, self.x(cx + half))
            self.pixels[row, c0:c1] = colour


def _background(rng: np.random.Generator, height: int, width: int, dark: bool) -> np.ndarray:
    low, high = _BG_DARK if dark else _BG_NORMAL
    base = rng.uniform(low, high, size=3)
    image = np.broadcast_to(base, (height, width, 3)).copy()
    image += np.linspace(-1, 1, height)[:, None, None] * rng.uniform(-12, 12, size=3)  # gradient
    for _ in range(rng.integers(2, 5)):  # a few blurry "objects" behind the person
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        y1, x1 = y0 + rng.integers(height // 8, height // 2), x0 + rng.integers(width // 8, width // 2)
        image[y0:y1, x0:x1] = rng.uniform(low, high, size=3)
    image += rng.normal(0.0, 6.0 if dark else 8.0, size=image.shape)
    return np.clip(np.rint(image), low, high).astype(np.uint8)


def draw_figure(figure: Figure, image_size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Render ``figure`` on a fresh background: uint8 array ``(height, width, 3)``."""
    height, width = image_size
    a = figure.labels
    canvas = _Canvas(_background(rng, height, width, bool(a["low_light"])))
    cx, b, side = figure.cx, figure.build, bool(a["side_view"])
    torso = (0.14 if side else 0.20) * b  # half-width, fraction of the width
    arm = 0.075

    # head band: hair, head, neck, eyes, glasses, hat
    head_rx = 0.11 if side else 0.13
    if a["long_hair"]:
        if side:
            canvas.rect(
                cx - figure.facing * 0.02 - 0.07,
                cx - figure.facing * 0.02 + 0.07,
                0.06,
                0.21,
                COLOURS["long_hair"],
            )
        else:
            canvas.rect(cx - head_rx - 0.03, cx + head_rx + 0.03, 0.06, 0.21, COLOURS["long_hair"])
    canvas.ellipse(cx, 0.045, head_rx * 0.9, 0.03, COLOURS["long_hair" if a["long_hair"] else "short_hair"])
    canvas.ellipse(cx, 0.105, head_rx, 0.065, figure.skin)
    canvas.rect(cx - 0.05, cx + 0.05, 0.165, 0.22, figure.skin)
    eyes = [cx + figure.facing * 0.05] if side else [cx - 0.05, cx + 0.05]
    for ex in eyes:
        canvas.rect(ex - 0.02, ex + 0.02, 0.095, 0.105, COLOURS["eyes"])
    if a["glasses"]:
        if side:
            canvas.rect(
                min(cx, cx + figure.facing * 0.09),
                max(cx, cx + figure.facing * 0.09),
                0.09,
                0.11,
                COLOURS["glasses"],
            )
        else:
            canvas.rect(cx - 0.1, cx + 0.1, 0.09, 0.11, COLOURS["glasses"])
    if a["hat"]:
        canvas.rect(cx - head_rx - 0.02, cx + head_rx + 0.02, 0.055, 0.07, COLOURS["hat"])  # brim
        canvas.rect(cx - head_rx + 0.01, cx + head_rx - 0.01, 0.02, 0.055, COLOURS["hat"])  # crown

    # upper band: torso, stripes, logo, arms, backpack
    if a["backpack"] and side:
        back = cx - figure.facing * torso
        canvas.rect(
            min(back, back - figure.facing * 0.1),
            max(back, back - figure.facing * 0.1),
            0.25,
            0.48,
            COLOURS["backpack"],
        )
    canvas.rect(cx - torso, cx + torso, 0.22, 0.55, figure.shirt)
    if a["upper_stripes"]:
        for top in np.arange(0.26, 0.52, 0.05):
            canvas.rect(cx - torso, cx + torso, top, top + 0.015, COLOURS["upper_stripes"])
    if a["logo"]:
        lx = cx + (figure.facing * 0.03 if side else 0.06)
        canvas.rect(lx - 0.05, lx + 0.05, 0.29, 0.35, COLOURS["logo"])
    sleeve_end = 0.33 if a["short_sleeves"] else 0.53
    arm_columns = (
        [(cx - 0.045, cx + 0.045)]
        if side
        else [(cx - torso - arm, cx - torso), (cx + torso, cx + torso + arm)]
    )
    for x0, x1 in arm_columns:
        canvas.rect(x0, x1, 0.23, sleeve_end, figure.shirt)
        if a["short_sleeves"]:
            canvas.rect(x0, x1, sleeve_end, 0.53, figure.skin)
    if a["backpack"] and not side:
        for sx in (cx - 0.11, cx + 0.11):
            canvas.rect(sx - 0.02, sx + 0.02, 0.22, 0.45, COLOURS["backpack"])

    # lower band: garment, bare legs, handbag
    gap = max(0.035, 2.0 / width)  # at least 2 px between the legs
    leg = 0.16 * b
    legs = [(cx - gap / 2 - leg, cx - gap / 2), (cx + gap / 2, cx + gap / 2 + leg)]
    hem = {0: 0.88, 1: 0.68, 2: 0.72}[int(np.argmax([a["trousers"], a["shorts"], a["skirt"]]))]
    for x0, x1 in legs:
        canvas.rect(x0, x1, 0.60, 0.92, figure.skin)  # bare legs and ankles, covered below
    if a["skirt"]:
        canvas.trapezoid(cx, 0.55, hem, torso, 1.35 * torso, figure.lower)
    else:
        canvas.rect(cx - torso, cx + torso, 0.55, 0.60, figure.lower)
        for x0, x1 in legs:
            canvas.rect(x0, x1, 0.60, hem, figure.lower)
    if a["handbag"]:
        # beside the body, clear of the garment (a skirt must stay one run of colour)
        near = cx + figure.facing * 0.23 if side else cx + torso + arm
        far = near + (figure.facing if side else 1) * 0.1
        canvas.rect(min(near, far), max(near, far), 0.56, 0.70, COLOURS["handbag"])

    # feet band: shoes or boots
    for x0, x1 in legs:
        if a["boots"]:
            canvas.rect(x0 - 0.01, x1 + 0.01, 0.88, 0.97, COLOURS["boots"])
        else:
            canvas.rect(x0 - 0.01, x1 + 0.03, 0.92, 0.97, COLOURS["shoes"])
    return canvas.pixels


def _encode_png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def make_synthetic(
    num_train: int,
    num_val: int,
    num_test: int,
    seed: int = 0,
    image_size: tuple[int, int] = (128, 64),
) -> datasets.DatasetDict:
    """Generate the synthetic PAR data set (splits ``train``, ``validation``, ``test``).

    Deterministic for a given ``seed`` and sizes: each split draws from its own stream
    of ``numpy.random.SeedSequence(seed)``, so e.g. the test split does not change when
    ``num_train`` does. ``image_size`` is ``(height, width)``, at least 64×32. The
    metadata (name ``"synthetic"``, :data:`ATTRIBUTES`, :data:`SENTENCES`) is attached.
    """
    from datasets import Dataset, DatasetDict

    height, width = (int(v) for v in image_size)
    if height < MIN_SIZE[0] or width < MIN_SIZE[1]:
        raise ValueError(f"image_size must be at least {MIN_SIZE} (height, width), got {image_size}")
    counts = {"train": num_train, "validation": num_val, "test": num_test}
    for split, count in counts.items():
        if int(count) < 1:
            raise ValueError(f"every split needs at least one example; {split} has {count}")
    streams = np.random.SeedSequence(seed).spawn(len(counts))
    features = make_features(len(ATTRIBUTES))
    splits = {}
    for (split, count), stream in zip(counts.items(), streams):
        rng = np.random.default_rng(stream)
        images, labels = [], []
        for index in range(int(count)):
            figure = sample_figure(rng)
            pixels = draw_figure(figure, (height, width), rng)
            images.append({"bytes": _encode_png(pixels), "path": f"synthetic/{split}/{index:06d}.png"})
            labels.append([figure.labels[name] for name in ATTRIBUTES])
        splits[split] = Dataset.from_dict({"image": images, "labels": labels}, features=features)
    return attach_metadata(DatasetDict(splits), metadata_dict("synthetic", ATTRIBUTES, SENTENCES))


def load_synthetic(num_train: int = 2000, num_val: int = 400, num_test: int = 400, seed: int = 0,
                   cache_dir: Union[None, str, os.PathLike] = None):
    """The synthetic data set (:func:`make_synthetic`) as :class:`~par_prompt.data.ParData`,
    generated once and cached (:mod:`par_prompt.cache`) in a folder keyed by the sizes, the
    seed and the package version."""
    import hashlib
    import json

    from .. import __version__
    from ..cache import SETTINGS_FILE, cache_root, cached_folder
    from .pardata import load

    key = hashlib.sha256(json.dumps([num_train, num_val, num_test, seed, __version__]).encode()).hexdigest()[:16]

    def build(tmp: Path) -> None:
        make_synthetic(num_train, num_val, num_test, seed=seed).save_to_disk(str(tmp / "data"))
        (tmp / SETTINGS_FILE).write_text(json.dumps(
            {"num_train": num_train, "num_val": num_val, "num_test": num_test, "seed": seed, "version": __version__}))

    folder = cached_folder(cache_root(cache_dir) / f"synthetic-{key}", build)
    return load(str(folder / "data"))
