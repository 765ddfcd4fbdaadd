"""Attention maps and the composed picture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from par_prompt.inference.visualize import (
    BAR,
    LINE,
    MARGIN,
    MIN_WIDTH,
    attention_maps,
    attention_probabilities,
    figure_size,
    last_fusion_attention,
    last_vision_attention,
    render,
)
from par_prompt.inference.predict import predict
from par_prompt.tuner.layout import region_layout

from .conftest import ATTRIBUTES, build_tiny_model, random_image

GRID = 8


@pytest.fixture(scope="module")
def maps(model):
    return attention_maps(model, random_image(96, 40, seed=7))


def test_region_heat_stays_in_its_band(maps):
    """The region mask lets group j see only its rows: all of its patch attention lies there."""
    assert maps.region_heat.shape == (5, GRID, GRID) and maps.region_rows == [(0, 2), (1, 4), (3, 6), (5, 7)]
    for j, (first, last) in enumerate(maps.region_rows, start=1):
        heat = maps.region_heat[j]
        inside = heat[first : last + 1].sum()
        assert inside > 0.05  # it does look at its patches (the rest goes to its own tokens)
        assert heat.sum() - inside < 1e-6 * inside
    # The global group sees everything, so it has heat above and below every band.
    assert (maps.region_heat[0] > 0).all()
    # Regions differ from one another.
    for j in range(1, 5):
        for k in range(j + 1, 5):
            assert not np.allclose(maps.region_heat[j], maps.region_heat[k])


def test_attribute_heat_is_a_distribution_over_patches(maps):
    assert maps.attribute_heat.shape == (len(ATTRIBUTES), GRID, GRID)
    totals = maps.attribute_heat.sum(axis=(1, 2))
    assert ((totals > 0) & (totals < 1)).all()  # patches get part of the mass; text and prompt tokens the rest
    assert not np.allclose(maps.attribute_heat[0], maps.attribute_heat[1])
    assert ((maps.probabilities > 0) & (maps.probabilities < 1)).all()


def _captured(module, run):
    """Run ``run()`` and return the (input, output) of ``module`` during it."""
    seen = {}

    def pre(mod, args, kwargs):
        seen["input"] = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]

    def post(mod, args, kwargs, output):
        seen["output"] = output[0]

    handles = [module.register_forward_pre_hook(pre, with_kwargs=True),
               module.register_forward_hook(post, with_kwargs=True)]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return seen["input"], seen["output"]


@pytest.mark.parametrize("which", ["vision", "fusion"])
def test_explicit_attention_reproduces_the_module(model, which):
    """softmax(q·kᵀ/√d + mask)·v through the output projection equals what the module
    computed (with sdpa), so the maps are the attention the model really used."""
    module = last_vision_attention(model) if which == "vision" else last_fusion_attention(model)
    pixels = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        hidden, output = _captured(module, lambda: model(pixels))
        allowed = region_layout(GRID, 4, 2, 2).mask if which == "vision" else None
        probabilities = attention_probabilities(module, hidden, allowed)
        batch, length, _ = hidden.shape
        values = module.v_proj(hidden).view(batch, length, -1, module.head_dim).transpose(1, 2)
        mixed = torch.matmul(probabilities, values).transpose(1, 2).reshape(batch, length, -1)
        projection = module.out_proj if which == "vision" else module.o_proj
        torch.testing.assert_close(projection(mixed), output, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pad", [True, False])
def test_probabilities_are_those_predict_reports(model, pad):
    """The picture's input is the processor's, padded or stretched as the model's settings
    say (it used to be padded always)."""
    image = random_image(96, 40, seed=7)
    processor = model.image_processor
    processor.do_pad = pad
    try:
        (expected,) = predict(model, image)
        maps = attention_maps(model, image)
    finally:
        processor.do_pad = True
    np.testing.assert_allclose(maps.probabilities, [expected.probabilities[a] for a in ATTRIBUTES], atol=1e-6)


def test_figure_size_formula():
    row = LINE + 96 + MARGIN
    assert figure_size(4, 3, 6, panel=96) == (MARGIN + 6 * (96 + MARGIN), MARGIN + 2 * row + LINE + 6 * BAR + MARGIN)
    assert figure_size(4, 3, 6, panel=96) == (632, 356)
    assert figure_size(0, 0, 2, panel=16)[0] == MIN_WIDTH


def test_render_png(maps, tmp_path):
    path = tmp_path / "picture.png"
    render(maps, top_k=3, panel=96).save(path)
    picture = Image.open(path)
    assert picture.format == "PNG" and picture.mode == "RGB" and picture.size == (632, 356)
    pixels = np.asarray(picture, dtype=np.float64)
    assert pixels.std() > 30  # not blank

    def panel(column):
        x, y = MARGIN + column * (96 + MARGIN), MARGIN + LINE
        return pixels[y : y + 96, x : x + 96]

    def warmth(area):  # red minus blue: high where the heat colour map is hot
        return (area[..., 0] - area[..., 2]).mean()

    regions = [panel(1 + j) for j in range(1, 5)]
    for j, (first, last) in enumerate(maps.region_rows):
        rows = np.zeros(96, dtype=bool)
        rows[first * 12 : (last + 1) * 12] = True
        band, outside = regions[j][rows], regions[j][~rows]
        assert warmth(band) > warmth(outside) + 40, f"region {j + 1} is not hotter inside its band"
    for j in range(4):
        for k in range(j + 1, 4):
            assert np.abs(regions[j] - regions[k]).mean() > 10


def test_render_without_fusion_attention(maps):
    maps_without = type(maps)(**{**maps.__dict__, "attribute_heat": None})
    picture = render(maps_without, top_k=5, panel=64)
    assert picture.size == figure_size(4, 0, len(ATTRIBUTES), panel=64)
    assert render(maps, top_k=0, panel=64).size == picture.size
    with pytest.raises(ValueError, match="top_k"):
        render(maps, top_k=-1)


def test_model_with_mlp_fusion_and_no_regions(backbones):
    model = build_tiny_model(backbones, fusion_layers=0, num_regions=0)
    maps = attention_maps(model, random_image(seed=1))
    assert maps.attribute_heat is None and maps.region_rows == [] and maps.region_heat.shape == (1, GRID, GRID)
    assert render(maps, top_k=5, panel=48).size == figure_size(0, 0, len(ATTRIBUTES), panel=48)
