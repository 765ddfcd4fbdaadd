"""Attention maps and the composed picture: what the model attends to, where it is drawn
(region bands, the cropped padding), the colour map, the header and the warnings."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from par_prompt.cli import main
from par_prompt.data.transforms import fit_to_square
from par_prompt.inference import visualize as visualize_module
from par_prompt.inference.visualize import (
    BAR,
    CAPTION_WIDTH,
    COLORBAR_WIDTH,
    GREY_BASE,
    GREY_GAIN,
    HEAT_ALPHA,
    LINE,
    MARGIN,
    MIN_WIDTH,
    attention_maps,
    attention_probabilities,
    colormap,
    colormap_rgb,
    content_box,
    drawing_warnings,
    figure_layout,
    figure_size,
    header_text,
    image_processor_of,
    last_fusion_attention,
    last_vision_attention,
    model_label,
    panel_heat,
    render,
)
from par_prompt.inference.predict import predict
from par_prompt.tuner.layout import region_layout

from .conftest import ATTRIBUTES, build_tiny_model, random_image, save_tiny_model

GRID = 8


@pytest.fixture(scope="module")
def maps(model, processor):
    """A tall image (96 high, 40 wide): padded left and right to the model's square."""
    return attention_maps(model, random_image(96, 40, seed=7), processor=processor)


@pytest.fixture
def stretching(model, processor):
    """The processor with ``do_pad=False`` (stretch to the square, as officially imported
    models do), restored afterwards."""
    image_processor = image_processor_of(model, processor)
    image_processor.do_pad = False
    try:
        yield processor
    finally:
        image_processor.do_pad = True


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


# ------------------------------------------------------------------------ geometry


def test_figure_size_formula():
    row = LINE + 96 + MARGIN
    header, colour_bar = LINE + MARGIN, 2 * LINE + MARGIN
    expected = (MARGIN + 6 * (96 + MARGIN), MARGIN + header + 2 * row + colour_bar + LINE + 6 * BAR + MARGIN)
    assert figure_size(4, 3, 6, panel=96) == expected == (632, 420)
    assert figure_size(0, 0, 2, panel=16)[0] == MIN_WIDTH
    # A tall image: panels keep its aspect ratio; columns stay wide enough for captions.
    tall = figure_layout(4, 3, 6, panel=160, aspect=0.4)
    assert (tall.panel_width, tall.panel_height, tall.column_width) == (64, 160, CAPTION_WIDTH)
    assert (tall.width, tall.height) == (MARGIN + 6 * (CAPTION_WIDTH + MARGIN), expected[1] + 2 * (160 - 96))
    # A wide one: the panel's long side is its width; rows get lower.
    wide = figure_layout(4, 3, 6, panel=96, aspect=2.0)
    assert (wide.panel_width, wide.panel_height, wide.width) == (96, 48, 632)
    assert wide.height == expected[1] - 2 * 48
    # The square is the largest picture, so the CLI can check any image's picture before reading it.
    assert all(figure_size(4, 3, 6, 200, a) <= figure_size(4, 3, 6, 200) for a in (0.1, 0.5, 2.0, 9.0))


@pytest.mark.parametrize("size", [(40, 96), (96, 40), (33, 64), (64, 33), (50, 50)])
def test_content_box_is_where_the_processor_puts_the_image(model, processor, size):
    """The box, checked against the processor's own padding: a white image on the black
    square, exactly at the square's side (no resize) and after the resize to the model's
    input."""
    width, height = size
    white = Image.new("RGB", size, "white")
    box = content_box(width, height)
    side = max(size)
    exact = fit_to_square(white, side, 0)[..., 0]
    left, top, right, bottom = (round(v * side) for v in box)
    assert all(abs(v * side - round(v * side)) < 1e-9 for v in box)
    inside = np.zeros((side, side), dtype=bool)
    inside[top:bottom, left:right] = True
    assert (exact[inside] == 255).all() and (exact[~inside] == 0).all()

    image_processor = image_processor_of(model, processor)
    s = image_processor.size
    view = fit_to_square(white, s, image_processor.pad_fill, image_processor.resample, image_processor.do_pad)[..., 0]
    left, top, right, bottom = (v * s for v in box)
    columns, rows = np.arange(s), np.arange(s)
    far_out = (columns + 1 < left - 2) | (columns > right + 2)
    deep_in = (columns > left + 2) & (columns + 1 < right - 2)
    rows_in = (rows > top + 2) & (rows + 1 < bottom - 2)
    assert (view[:, far_out] < 8).all() and (view[np.ix_(rows_in, deep_in)] > 247).all()
    assert far_out.any() == (width < height)
    assert content_box(width, height, pad=False) == (0.0, 0.0, 1.0, 1.0)


@pytest.mark.parametrize("pad", [True, False])
def test_probabilities_are_those_predict_reports(model, processor, pad):
    """The picture's input is the processor's, padded or stretched as the model's settings
    say (the old code always padded)."""
    image = random_image(96, 40, seed=7)
    image_processor = image_processor_of(model, processor)
    image_processor.do_pad = pad
    try:
        (expected,) = predict(model, image, processor=processor)
        maps = attention_maps(model, image, processor=processor)
    finally:
        image_processor.do_pad = True
    np.testing.assert_allclose(maps.probabilities, [expected.probabilities[a] for a in ATTRIBUTES], atol=1e-6)


def test_padded_and_stretched_inputs_differ(model, maps, stretching):
    stretched = attention_maps(model, random_image(96, 40, seed=7), processor=stretching)
    assert np.abs(stretched.probabilities - maps.probabilities).max() > 1e-3


# ------------------------------------------------------------------------- heat


def test_panel_heat_in_a_band():
    """Inside the band: sampled from the band's rows alone and scaled within it (0 to 1);
    outside: NaN."""
    grid, scale = 8, 10
    heat = np.arange(grid * grid, dtype=np.float64).reshape(grid, grid)  # rises along rows and columns
    values = panel_heat(heat, (0, 0, 1, 1), (grid * scale, grid * scale), rows=(3, 6))
    inside = np.zeros(grid * scale, dtype=bool)
    inside[3 * scale : 7 * scale] = True
    assert np.isnan(values[~inside]).all() and np.isfinite(values[inside]).all()
    assert values[inside].min() == 0.0 and values[inside].max() == 1.0
    assert values[3 * scale, 0] == 0.0  # top-left of the band: row 3 only, not blended with row 2 above
    np.testing.assert_array_equal(values[3 * scale], values[3 * scale + scale // 2 - 1])
    # Without a band: the whole map, scaled over it.
    whole = panel_heat(heat, (0, 0, 1, 1), (grid, grid))
    np.testing.assert_allclose(whole, heat / heat.max())


def test_panel_heat_of_a_band_in_the_padding():
    """A wide image (96×16) on the square: region rows 0-2 lie in the padding above it."""
    box = content_box(96, 16)
    heat = np.random.default_rng(0).random((8, 8))
    assert np.isnan(panel_heat(heat, box, (96, 16), rows=(0, 2))).all()
    assert np.isfinite(panel_heat(heat, box, (96, 16), rows=(3, 4))).all()


def test_panels_show_the_image_without_its_padding(maps):
    """A tall image (96×40) is padded to the model's square; its panels show the 40×96
    image and nothing of the padding."""
    assert maps.box == pytest.approx((28 / 96, 0.0, 68 / 96, 1.0))
    np.testing.assert_array_equal(maps.image, np.asarray(random_image(96, 40, seed=7)))
    picture = np.asarray(render(maps, top_k=3, panel=96), dtype=np.float64)
    layout = figure_layout(4, 3, len(ATTRIBUTES), 96, maps.aspect)
    assert picture.shape == (layout.height, layout.width, 3)
    assert (layout.panel_width, layout.panel_height) == (40, 96)
    x0, y0, x1, y1 = layout.panel_box(0, 0)
    np.testing.assert_array_equal(picture[y0:y1, x0:x1], maps.image)  # the input panel: the image itself
    assert (picture[y0:y1, x1 : x0 + layout.column_width] == 255).all()  # then white canvas, no black bars
    # Heat panels are the heat blended over the image (not over padding): undo the blend.
    for row, column, heat in ((0, 1, maps.region_heat[0]), (1, 0, maps.attribute_heat[maps.top_attributes(1)[0]])):
        x0, y0, x1, y1 = layout.panel_box(row, column)
        colours = colormap(panel_heat(heat, maps.box, (40, 96)))
        background = (picture[y0:y1, x0:x1] - HEAT_ALPHA * colours) / (1 - HEAT_ALPHA)
        assert np.abs(background - maps.image).max() < 2


def test_region_panels_show_their_band_and_grey_the_rest(maps):
    picture = np.asarray(render(maps, top_k=3, panel=96), dtype=np.float64)
    layout = figure_layout(4, 3, len(ATTRIBUTES), 96, maps.aspect)
    rows = (np.arange(layout.panel_height) + 0.5) / layout.panel_height  # the image spans the square's height
    grid = maps.grid_size
    purple, yellow = np.array([68, 1, 84]), np.array([253, 231, 37])
    for j, (first, last) in enumerate(maps.region_rows, start=1):
        x0, y0, x1, y1 = layout.panel_box(0, 1 + j)
        area = picture[y0:y1, x0:x1]
        inside = (rows >= first / grid) & (rows < (last + 1) / grid)
        outside = area[~inside]
        assert (outside == outside[..., :1]).all(), f"region {j}: not grey outside its band"
        np.testing.assert_allclose(outside[..., 0], np.round(GREY_BASE + GREY_GAIN * (
            maps.image[~inside].astype(np.float64) @ [0.299, 0.587, 0.114])), atol=0.5)
        colours = (area[inside] - (1 - HEAT_ALPHA) * maps.image[inside]) / HEAT_ALPHA
        assert (colours.max(axis=-1) - colours.min(axis=-1) > 40).all()  # coloured (viridis: 80 and more)
        # Scaled within the band: both ends of the colour map appear inside it.
        distance = lambda colour: np.abs(colours - colour).max(axis=-1).min()  # noqa: E731
        assert distance(purple) < 4 and distance(yellow) < 4, f"region {j}: not scaled within its band"


def test_render_without_fusion_attention(maps):
    maps_without = type(maps)(**{**maps.__dict__, "attribute_heat": None})
    picture = render(maps_without, top_k=5, panel=64)
    assert picture.size == figure_size(4, 0, len(ATTRIBUTES), panel=64, aspect=maps.aspect)
    assert render(maps, top_k=0, panel=64).size == picture.size
    with pytest.raises(ValueError, match="top_k"):
        render(maps, top_k=-1)


def test_model_with_mlp_fusion_and_no_regions(backbones, processor):
    model = build_tiny_model(backbones, fusion_layers=0, num_regions=0)
    maps = attention_maps(model, random_image(seed=1), processor=processor)
    assert maps.attribute_heat is None and maps.region_rows == [] and maps.region_heat.shape == (1, GRID, GRID)
    assert render(maps, top_k=5, panel=48).size == figure_size(0, 0, len(ATTRIBUTES), panel=48, aspect=maps.aspect)


# ------------------------------------------------------------ colour map and colour bar


def cie_lightness(rgb: np.ndarray) -> np.ndarray:
    """CIELAB L* of sRGB colours (0..255), D65."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    y = linear @ np.array([0.2126, 0.7152, 0.0722])
    f = np.where(y > (6 / 29) ** 3, np.cbrt(y), y / (3 * (6 / 29) ** 2) + 4 / 29)
    return 116 * f - 16


def test_colormap_is_viridis_with_rising_lightness():
    # Published viridis entries (matplotlib's table): first, middle (128 of 255), last.
    assert np.abs(colormap(0.0).astype(int) - (68, 1, 84)).max() <= 1
    assert np.abs(colormap(128 / 255).astype(int) - (33, 145, 140)).max() <= 1
    assert np.abs(colormap(1.0).astype(int) - (253, 231, 37)).max() <= 1
    lightness = cie_lightness(colormap_rgb(np.linspace(0, 1, 1001)) * 255)
    assert (np.diff(lightness) > 0).all() and lightness[0] < 20 and lightness[-1] > 85
    # In 8 bits: rounding moves L* by a fraction of a unit (1 is about the smallest visible step).
    assert (np.diff(cie_lightness(colormap(np.linspace(0, 1, 1001)))) > -0.25).all()
    assert (np.diff(cie_lightness(colormap(np.linspace(0, 1, 64)))) > 0.5).all()
    assert colormap(np.array([[-1.0, 2.0]])).shape == (1, 2, 3)  # clipped, any shape


def test_colour_bar_is_drawn(maps):
    picture = np.asarray(render(maps, top_k=3, panel=96)).astype(np.int64)
    layout = figure_layout(4, 3, len(ATTRIBUTES), 96, maps.aspect)
    left, top, right, bottom = layout.colorbar
    assert right - left == COLORBAR_WIDTH and bottom - top >= 8
    bar = picture[top:bottom, left:right]
    assert (bar == bar[:1]).all()
    np.testing.assert_array_equal(bar[0], colormap(np.linspace(0, 1, right - left)))
    lightness = cie_lightness(bar[0])
    assert lightness[-1] - lightness[0] > 60 and (np.diff(lightness) > -0.25).all()
    assert (picture[top - LINE : bottom + 4, MARGIN:left] < 128).any()  # the "low" label and the legend line


# ---------------------------------------------------------------------------- header


def test_model_label(tmp_path, monkeypatch):
    assert model_label("org/promptpar-pa100k") == "org/promptpar-pa100k"
    assert model_label(str(tmp_path / "runs" / "best")) == "best"
    assert model_label("/home/me/.cache/huggingface/hub/models--org--promptpar-rap/snapshots/0a1b2c") == \
        "org/promptpar-rap"
    (tmp_path / "runs" / "best").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "runs")
    assert model_label(".") == "runs" and model_label("best/") == "best" and model_label("./best") == "best"
    assert model_label("") == model_label(None) == "(unnamed)"


def test_header_names_file_model_and_threshold(model, processor, model_dir, image_files):
    maps = attention_maps(model, image_files["rgb"], threshold=0.3, model_name=str(model_dir), processor=processor)
    text = header_text(maps)
    assert text.startswith("rgb.png") and "model promptpar" in text and "threshold 0.3" in text
    assert "the model's" not in text and str(model_dir.parent) not in text and str(image_files["rgb"].parent) not in text
    default = header_text(attention_maps(model, image_files["rgb"], processor=processor))
    assert f"threshold {model.config.threshold:g} (the model's)" in default
    calibrated = type(maps)(**{**maps.__dict__, "threshold": [0.25, 0.5, 0.75], "threshold_given": False})
    assert "per-attribute thresholds 0.25-0.75 (the model's)" in header_text(calibrated)


def test_header_is_drawn(maps):
    layout = figure_layout(4, 3, len(ATTRIBUTES), 96, maps.aspect)
    first = np.asarray(render(replace(maps, model_name="a-model"), top_k=3, panel=96))
    second = np.asarray(render(replace(maps, model_name="another-model-name"), top_k=3, panel=96))
    _, top, _, bottom = layout.header
    assert (first[top:bottom] < 100).any()  # text
    assert not np.array_equal(first[top:bottom], second[top:bottom])
    np.testing.assert_array_equal(first[bottom:], second[bottom:])  # the name is drawn there and only there


# -------------------------------------------------------------------------- warnings


def _config(**overrides):
    settings = dict(fusion_layers=1, num_attributes=6, num_regions=4, prompts_per_group=2)
    return SimpleNamespace(**{**settings, **overrides})


def test_drawing_warnings():
    assert drawing_warnings(_config(), 5) == drawing_warnings(_config(), 6) == drawing_warnings(_config(), 0) == []
    (note,) = drawing_warnings(_config(), 10, option="--top-k")
    assert note.startswith("--top-k 10") and "6" in note
    (note,) = drawing_warnings(_config(fusion_layers=0), 1)
    assert "no fusion layer" in note
    assert drawing_warnings(_config(fusion_layers=0), 0) == []
    (note,) = drawing_warnings(_config(num_regions=0), 3)
    assert "no region prompts (num_regions=0)" in note and "global prompts" in note
    (note,) = drawing_warnings(_config(num_regions=0, prompts_per_group=0), 0)
    assert "no region prompts" in note and "class token" in note


def _visualize(capsys, *argv):
    code = main(["visualize", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


def test_cli_warns_when_top_k_cannot_be_drawn(capsys, model_dir, image_files, tmp_path):
    out = tmp_path / "many.png"
    code, printed, err = _visualize(capsys, "--model", model_dir, image_files["rgb"], "--out", out, "--top-k", "10",
                                    "--panel", "32")
    assert code == 0 and printed.startswith(f"wrote {out}")
    assert err == [f"par-prompt visualize: warning: --top-k 10 asks for more attributes than the model has "
                   f"({len(ATTRIBUTES)}); drawing all {len(ATTRIBUTES)}"]
    assert Image.open(out).size == figure_size(4, len(ATTRIBUTES), len(ATTRIBUTES), panel=32, aspect=0.5)
    code, _, err = _visualize(capsys, "--model", model_dir, image_files["rgb"], "--out", out, "--top-k", "6",
                              "--panel", "32")
    assert code == 0 and err == []


@pytest.fixture(scope="module")
def flat_model_dir(backbones, tmp_path_factory):
    """A saved model without region prompts and without a fusion layer."""
    directory = tmp_path_factory.mktemp("flat") / "flat-model"
    save_tiny_model(build_tiny_model(backbones, fusion_layers=0, num_regions=0), directory, backbones)
    return directory


def test_cli_warns_about_a_model_without_region_prompts(capsys, flat_model_dir, image_files, tmp_path):
    out = tmp_path / "flat.png"
    code, _, err = _visualize(capsys, "--model", flat_model_dir, image_files["rgb"], "--out", out, "--top-k", "0")
    assert code == 0 and out.exists() and len(err) == 1
    assert err[0].startswith("par-prompt visualize: warning: the model has no region prompts (num_regions=0)")
    code, _, err = _visualize(capsys, "--model", flat_model_dir, image_files["rgb"], "--out", out)  # --top-k 5
    assert code == 0 and len(err) == 2 and all(line.startswith("par-prompt visualize: warning: ") for line in err)
    assert "--top-k 5" in err[0] and "no fusion layer" in err[0]


def test_cli_header_names_the_model_folder_and_the_threshold(capsys, model_dir, image_files, tmp_path, monkeypatch):
    seen = []
    draw = visualize_module.render
    monkeypatch.setattr(visualize_module, "render", lambda maps, **kw: seen.append(maps) or draw(maps, **kw))
    code, _, err = _visualize(capsys, "--model", model_dir, image_files["rgb"], "--out", tmp_path / "h.png",
                              "--threshold", "0.3", "--panel", "32")
    assert code == 0 and err == []
    text = header_text(seen[0])
    assert text == f"rgb.png  ·  model {model_dir.name}  ·  threshold 0.3"


def test_the_default_top_k_does_not_warn_about_a_model_with_fewer_attributes(capsys, backbones, image_files,
                                                                               tmp_path):
    directory = tmp_path / "three"
    from par_prompt import PromptPARModel

    model = PromptPARModel.from_backbones(backbones.clip, ATTRIBUTES[:3], fusion_name_or_path=backbones.vit,
                                          prompts_per_group=2, dataset="pa100k")
    save_tiny_model(model, directory, backbones)
    capsys.readouterr()  # what building the model printed
    code, printed, err = _visualize(capsys, "--model", directory, image_files["rgb"], "--out", tmp_path / "t.png")
    assert code == 0 and err == [] and printed.startswith("wrote")
    code, _, err = _visualize(capsys, "--model", directory, image_files["rgb"], "--out", tmp_path / "t.png",
                              "--top-k", "5")
    assert code == 0 and len(err) == 1 and "--top-k 5 asks for more attributes than the model has (3)" in err[0]
