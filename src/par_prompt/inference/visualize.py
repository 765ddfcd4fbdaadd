"""Where the model looked: attention pictures of PromptPAR, drawn with Pillow only.

:func:`attention_maps` runs one forward pass and reads two attentions:

* **Region prompts** (paper Fig. 6). In the last layer of the CLIP vision tower, the
  attention of each prompt group's tokens (group 0: CLS and the global prompts; group
  j: CLS_j and the prompts of region j) over the G×G patches, averaged over heads and
  over the group's tokens. The region mask lets group j see only its own rows, so its
  heat lies inside its band.
* **Attributes** (paper Fig. 8). In the (last) fusion layer, the attention of attribute
  token i over the visual patch tokens, averaged over heads.

Attention probabilities are computed explicitly from the captured input of each
attention module and its query/key projections (``softmax(q·kᵀ/√d + mask)``), so the
pictures do not depend on the attention implementation (sdpa or eager). The image goes
through the model's image processor exactly as :func:`~par_prompt.inference.predict`
sends it, so the probabilities drawn are the ones ``predict`` reports.

:func:`render` composes one RGB picture; :func:`figure_layout` places its parts::

    header                       file · model · threshold
    row 1  (LINE + h + MARGIN)   input, global prompts, regions 1..K
    row 2  (LINE + h + MARGIN)   the top_k most probable attributes (when top_k > 0
                                 and the model has a fusion layer)
    colour bar (2·LINE + MARGIN) the colour map, low to high
    bar chart (LINE + N·BAR)     every probability, most probable first, threshold marked

Panels show the image area only: the heat lives on the G×G patch grid of the model's
square input, and is mapped back through the processor's geometry (a centred pad to a
square, then a resize; or, with ``do_pad=False``, a plain stretch), so the padding is
cropped and a panel has the image's aspect ratio. A panel is ``panel`` pixels on its
long side (:data:`MIN_PANEL`..:data:`MAX_PANEL`); a column is at least
``min(panel, CAPTION_WIDTH)`` wide so that its caption fits. The whole picture holds at
most :data:`MAX_FIGURE_PIXELS` pixels; both are checked before anything is drawn.

Heat is drawn with the viridis colour map (:func:`colormap`; dark purple low, yellow
high, lightness rising throughout), blended over the image, each panel min-max scaled
to the values it shows. A region panel shows its group's attention inside its band of
rows only, scaled within the band; the rest of the image is greyed out (desaturated and
dimmed). The bar chart lists every attribute, most probable first, with its threshold
marked; bars above threshold are red.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from ..data.transforms import decode_size_hint, to_rgb
from ..thresholds import Threshold
from ..tuner.layout import region_layout
from .predict import (
    check_finite,
    check_image_processor,
    describe_source,
    load_image,
    resolve_thresholds,
)

MARGIN = 8
LINE = 16  # height of a caption line
BAR = 14  # height of one bar of the chart
MIN_WIDTH = 480
PANEL = 160
MIN_PANEL, MAX_PANEL = 16, 1024
#: A column is at least ``min(panel, CAPTION_WIDTH)`` pixels wide, so captions stay legible
#: beside the narrow panels of tall images.
CAPTION_WIDTH = 96
COLORBAR_WIDTH, COLORBAR_HEIGHT = 256, 10
#: Largest picture :func:`render` draws (120 MB as RGB); above it the request is refused.
MAX_FIGURE_PIXELS = 40_000_000
#: Weight of the heat colour over the image inside a heat panel.
HEAT_ALPHA = 0.6
#: Greyed-out pixels: ``GREY_BASE + GREY_GAIN · luminance`` on every channel.
GREY_BASE, GREY_GAIN = 48.0, 0.45

#: The viridis colour map (van der Walt and Smith, 2015; public domain): 17 of its 256
#: published sRGB entries (0, 16, ..., 240, 255), as (position, red, green, blue).
#: Linear interpolation between them stays within 5/255 of the full table.
_VIRIDIS = np.array([
    (0 / 255, 0.267004, 0.004874, 0.329415),
    (16 / 255, 0.282327, 0.094955, 0.417331),
    (32 / 255, 0.278826, 0.175490, 0.483397),
    (48 / 255, 0.258965, 0.251537, 0.524736),
    (64 / 255, 0.229739, 0.322361, 0.545706),
    (80 / 255, 0.199430, 0.387607, 0.554642),
    (96 / 255, 0.172719, 0.448791, 0.557885),
    (112 / 255, 0.149039, 0.508051, 0.557250),
    (128 / 255, 0.127568, 0.566949, 0.550556),
    (144 / 255, 0.120638, 0.625828, 0.533488),
    (160 / 255, 0.157851, 0.683765, 0.501686),
    (176 / 255, 0.246070, 0.738910, 0.452024),
    (192 / 255, 0.369214, 0.788888, 0.382914),
    (208 / 255, 0.515992, 0.831158, 0.294279),
    (224 / 255, 0.678489, 0.863742, 0.189503),
    (240 / 255, 0.845561, 0.887322, 0.099702),
    (255 / 255, 0.993248, 0.906157, 0.143936),
])


@dataclass
class AttentionMaps:
    """What :func:`render` draws, for one image.

    Attributes:
        image: ``(H, W, 3)`` uint8, the input image (RGB, upright, its long side at most
            :data:`MAX_PANEL`), without the processor's padding.
        region_heat: ``(K + 1, G, G)``: group 0 (global prompts), then regions 1..K.
        region_rows: inclusive ``(first, last)`` patch rows of regions 1..K.
        attribute_heat: ``(N, G, G)`` fusion attention of each attribute token over the
            patches, or None when the model has no fusion layer (``fusion_layers=0``).
        probabilities: ``(N,)`` attribute probabilities.
        thresholds: ``(N,)`` the thresholds that decide the predicted attributes.
        attributes: the N attribute names.
        box: where ``image`` lies in the model's square input, as fractions of its side:
            ``(left, top, right, bottom)``; ``(0, 0, 1, 1)`` when nothing was padded.
        source: the file the image came from, when known.
        model_name: what the header calls the model (see :func:`model_label`).
        threshold: the threshold as chosen: one number, or one per attribute.
        threshold_given: whether the caller chose it (else it is the model's).
        prompts_per_group: m; 0 means group 0 is the class token alone.
    """

    image: np.ndarray
    region_heat: np.ndarray
    region_rows: list[tuple[int, int]]
    attribute_heat: Optional[np.ndarray]
    probabilities: np.ndarray
    thresholds: np.ndarray
    attributes: list[str]
    box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    source: Optional[str] = None
    model_name: str = ""
    threshold: Optional[Threshold] = None
    threshold_given: bool = False
    prompts_per_group: int = 1

    @property
    def grid_size(self) -> int:
        return self.region_heat.shape[-1]

    @property
    def aspect(self) -> float:
        """Width over height of the image."""
        return self.image.shape[1] / self.image.shape[0]

    def top_attributes(self, k: int) -> list[int]:
        """Indices of the ``k`` most probable attributes."""
        return [int(i) for i in np.argsort(-self.probabilities, kind="stable")[:k]]


# -------------------------------------------------------------------------- attention


def attention_probabilities(attention: torch.nn.Module, hidden: torch.Tensor,
                            allowed: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Softmax attention of a CLIP / ViT attention module on its input ``hidden`` (B, T, w).

    ``allowed``: optional bool ``(T, T)`` mask (True = may attend). Returns
    ``(B, heads, T, T)`` float32.
    """
    head_dim = attention.head_dim
    scale = getattr(attention, "scaling", None) or getattr(attention, "scale", None) or head_dim**-0.5
    batch, length, _ = hidden.shape
    query = attention.q_proj(hidden).float().view(batch, length, -1, head_dim).transpose(1, 2)
    key = attention.k_proj(hidden).float().view(batch, length, -1, head_dim).transpose(1, 2)
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    if allowed is not None:
        scores = scores.masked_fill(~allowed.to(scores.device), float("-inf"))
    return torch.softmax(scores, dim=-1)


class _InputCapture:
    """Forward pre-hook that keeps the ``hidden_states`` input of a module."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.hidden: Optional[torch.Tensor] = None
        self._handle = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        self.hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]

    def remove(self) -> None:
        self._handle.remove()


def last_vision_attention(model) -> torch.nn.Module:
    """The attention module of the last layer of the CLIP vision tower."""
    encoder = model.clip_model.vision_model.encoder
    layers = getattr(encoder, "base_layer", encoder).layers  # the prompt layer wraps the encoder
    return layers[-1].self_attn


def last_fusion_attention(model) -> Optional[torch.nn.Module]:
    """The attention module of the last fusion layer, or None without one."""
    layers = getattr(model.fusion, "layers", None)
    return None if not layers else layers[-1].attention


def image_processor_of(model, processor):
    """The image processor of ``processor`` (the model's PromptPARProcessor, or its image
    processor) that prepares ``model``'s input, checked against the model
    (:func:`~par_prompt.inference.predict.check_image_processor`). The one place this
    module gets it."""
    return check_image_processor(model, processor)


def content_box(width: int, height: int, pad: bool = True) -> tuple[float, float, float, float]:
    """Where a ``width × height`` image lies in the processor's square input, as
    fractions of its side: ``(left, top, right, bottom)``.

    With ``pad`` the image is pasted centred on a square of side ``max(width, height)``
    (``par_prompt.data.transforms.pad_to_square``: odd padding goes right / bottom), and
    the resize keeps those fractions. Without it the image is stretched to the whole
    square: ``(0, 0, 1, 1)``."""
    if not pad or width == height:
        return (0.0, 0.0, 1.0, 1.0)
    side = max(width, height)
    left, top = (side - width) // 2, (side - height) // 2
    return (left / side, top / side, (left + width) / side, (top + height) / side)


def model_label(name: Any) -> str:
    """A short name for the header: a Hub id as it is, a local folder by its own name
    (never its absolute path), a Hub cache snapshot by its repository id."""
    text = str(name or "").strip()
    if not text:
        return "(unnamed)"
    path = Path(text).expanduser()
    for part in reversed(path.parts):  # .../models--org--name/snapshots/<commit>
        if part.startswith("models--") and len(part) > len("models--"):
            return part[len("models--"):].replace("--", "/")
    try:
        local = path.is_absolute() or text.startswith(".") or path.exists()
        return (path.resolve().name or text) if local else text
    except (OSError, RuntimeError):  # a name too long for a path, a symlink loop
        return path.name or text


def describe_threshold(threshold: Optional[Threshold], given: bool) -> str:
    """The threshold as the header states it, e.g. ``threshold 0.3`` or
    ``per-attribute thresholds 0.31-0.72 (the model's)``."""
    whose = "" if given else " (the model's)"
    if threshold is None:
        return "threshold unknown"
    if isinstance(threshold, (list, tuple)):
        low, high = min(threshold), max(threshold)
        if low != high:
            return f"per-attribute thresholds {low:.2f}-{high:.2f}{whose}"
        threshold = low
    return f"threshold {float(threshold):g}{whose}"


def header_text(maps: AttentionMaps) -> str:
    """The header line: the image's file name, the model and the threshold."""
    name = Path(maps.source).name if maps.source else "(image given in memory)"
    return f"{name}  ·  model {maps.model_name or '(unnamed)'}  ·  " + describe_threshold(
        maps.threshold, maps.threshold_given)


def drawing_warnings(config, top_k: int, option: str = "top_k") -> list[str]:
    """What a picture of a model with ``config`` cannot show that the caller asked for or
    may expect, one sentence each: a ``top_k`` above the number of attributes (or any
    ``top_k`` without a fusion layer), and a model without region prompts. ``option`` is
    how the message names ``top_k`` (the CLI passes ``--top-k``)."""
    notes = []
    if top_k > 0 and config.fusion_layers <= 0:
        notes.append(f"{option} {top_k}: the model has no fusion layer (fusion_layers=0), so it has no attribute "
                     "attention to draw; the picture shows the prompts' attention and the probabilities only")
    elif top_k > config.num_attributes:
        notes.append(f"{option} {top_k} asks for more attributes than the model has ({config.num_attributes}); "
                     f"drawing all {config.num_attributes}")
    if config.num_regions <= 0 or config.prompts_per_group <= 0:
        setting = "num_regions=0" if config.num_regions <= 0 else "prompts_per_group=0"
        group = "global prompts'" if config.prompts_per_group > 0 else "class token's"
        notes.append(f"the model has no region prompts ({setting}); only the {group} attention over the image is drawn")
    return notes


def attention_maps(model, image: Any, threshold: Union[None, float, Sequence[float]] = None,
                   model_name: Optional[str] = None, *, processor: Any = None) -> AttentionMaps:
    """Run ``model`` on one image (anything :func:`~par_prompt.inference.predict`
    takes), prepared by ``processor`` (the model's PromptPARProcessor; required), and
    collect its attention maps; see the module docstring. ``model_name`` (e.g. the id or
    folder it was loaded from) names the model in the header; by default its config's
    ``name_or_path``."""
    from PIL import Image

    config = model.config
    processor = image_processor_of(model, processor)
    thresholds, shown = resolve_thresholds(config, threshold)
    picture = load_image(image, 0, size_hint=decode_size_hint(processor))
    # Exactly the input predict() builds: the loaded image through the processor.
    pixel_values = processor(picture, return_tensors="pt")["pixel_values"]
    box = content_box(*picture.size, pad=bool(getattr(processor, "do_pad", True)))
    display = to_rgb(picture)
    if max(display.size) > MAX_PANEL:
        scale = MAX_PANEL / max(display.size)
        display = display.resize((max(1, round(display.width * scale)), max(1, round(display.height * scale))),
                                 Image.Resampling.LANCZOS)
    del picture

    vision_module = last_vision_attention(model)
    vision_capture = _InputCapture(vision_module)
    fusion_module = last_fusion_attention(model)
    fusion_capture = _InputCapture(fusion_module) if fusion_module is not None else None
    try:
        with torch.inference_mode():
            pixel_values = pixel_values.to(device=model.device, dtype=model.dtype)
            logits = model(pixel_values=pixel_values, compute_gl_logits=False, training=False).logits
            vision_hidden = vision_capture.hidden
            fusion_hidden = fusion_capture.hidden if fusion_capture is not None else None
            regions = config.num_regions if config.prompts_per_group > 0 else 0
            prompt_tokens = (regions + 1) * (config.prompts_per_group + 1)  # tokens before the patches
            grid = math.isqrt(vision_hidden.shape[1] - prompt_tokens)
            layout = region_layout(grid, regions, config.overlap_rows, config.prompts_per_group)
            if layout.length != vision_hidden.shape[1]:
                raise RuntimeError(
                    f"The vision tower's sequence has {vision_hidden.shape[1]} tokens, the region layout "
                    f"{layout.length}; the model's prompt settings do not match its tower."
                )
            vision = attention_probabilities(vision_module, vision_hidden, layout.mask)[0].mean(0)
            patches = slice(layout.patch_offset, layout.length)
            region_heat = [
                vision[[cls, *layout.prompt_indices(group)], patches].mean(0).reshape(grid, grid)
                for group, cls in enumerate(layout.class_token_indices())
            ]
            attribute_heat = None
            if fusion_hidden is not None:
                num_attributes = config.num_attributes
                fusion = attention_probabilities(fusion_module, fusion_hidden)[0].mean(0)
                start = num_attributes + layout.patch_offset
                attribute_heat = fusion[:num_attributes, start : start + grid * grid].reshape(-1, grid, grid)
    finally:
        vision_capture.remove()
        if fusion_capture is not None:
            fusion_capture.remove()
    probabilities = torch.sigmoid(logits.float()).cpu()
    source = describe_source(image)
    check_finite(probabilities, [(0, source)])
    return AttentionMaps(
        image=np.array(display, dtype=np.uint8),
        region_heat=torch.stack(region_heat).float().cpu().numpy(),
        region_rows=list(layout.region_rows),
        attribute_heat=None if attribute_heat is None else attribute_heat.float().cpu().numpy(),
        probabilities=probabilities[0].numpy(),
        thresholds=thresholds.numpy(),
        attributes=list(config.attributes),
        box=box,
        source=source,
        model_name=model_label(model_name if model_name is not None else getattr(config, "name_or_path", "")),
        threshold=shown,
        threshold_given=threshold is not None,
        prompts_per_group=int(config.prompts_per_group),
    )


# ---------------------------------------------------------------------------- drawing


def colormap_rgb(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (clipped) -> float sRGB in [0, 1], shape ``values.shape + (3,)``,
    through viridis (:data:`_VIRIDIS`, interpolated linearly): dark purple (0) through
    blue and green to yellow (1), its lightness rising monotonically, so the order of the
    values reads the same in grey and for colour-blind readers."""
    values = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    return np.stack([np.interp(values, _VIRIDIS[:, 0], _VIRIDIS[:, 1 + c]) for c in range(3)], axis=-1)


def colormap(values: np.ndarray) -> np.ndarray:
    """:func:`colormap_rgb` as uint8 sRGB."""
    return (colormap_rgb(values) * 255.0).round().astype(np.uint8)


def panel_size(panel: int, aspect: float = 1.0) -> tuple[int, int]:
    """(width, height) of a picture panel: ``panel`` on the long side, the other side
    following ``aspect`` (width / height), at least ``min(panel, MIN_PANEL)``."""
    short = min(panel, MIN_PANEL)
    if aspect >= 1:
        return panel, max(short, round(panel / aspect))
    return max(short, round(panel * aspect)), panel


def _bilinear_axis(coordinates: np.ndarray, length: int):
    clipped = np.clip(coordinates, 0, length - 1)
    low = np.floor(clipped).astype(np.int64)
    high = np.minimum(low + 1, length - 1)
    return low, high, clipped - low


def _bilinear(grid: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``grid`` (R, C) sampled at fractional ``rows`` × ``columns`` (cell centres at
    integers; outside the grid the edge value is kept): ``(len(rows), len(columns))``."""
    r0, r1, wr = _bilinear_axis(rows, grid.shape[0])
    c0, c1, wc = _bilinear_axis(columns, grid.shape[1])
    upper = grid[r0][:, c0] * (1 - wc) + grid[r0][:, c1] * wc
    lower = grid[r1][:, c0] * (1 - wc) + grid[r1][:, c1] * wc
    return upper * (1 - wr)[:, None] + lower * wr[:, None]


def panel_heat(heat: np.ndarray, box: Sequence[float], size: tuple[int, int],
               rows: Optional[tuple[int, int]] = None) -> np.ndarray:
    """The heat a panel of ``size`` (width, height) shows: ``heat`` (G, G), laid on the
    model's square input, sampled bilinearly over ``box`` (the image area, fractions of
    the square; see :func:`content_box`) and min-max scaled to [0, 1] over the pixels
    shown (a constant map is all 0).

    With ``rows`` (a region's inclusive band of patch rows) only the pixels whose centre
    lies in the band get a value, sampled from the band's rows alone and scaled within
    the band; the others are NaN (all NaN when the band lies in the cropped padding).
    Returns float64 ``(height, width)``."""
    width, height = size
    left, top, right, bottom = box
    grid = heat.shape[-1]
    xs = left + (np.arange(width) + 0.5) / width * (right - left)
    ys = top + (np.arange(height) + 0.5) / height * (bottom - top)
    heat = np.asarray(heat, dtype=np.float64)
    if rows is None:
        values = _bilinear(heat, ys * grid - 0.5, xs * grid - 0.5)
        inside = np.ones(height, dtype=bool)
    else:
        first, last = rows
        values = _bilinear(heat[first : last + 1], ys * grid - 0.5 - first, xs * grid - 0.5)
        inside = (ys >= first / grid) & (ys < (last + 1) / grid)
    out = np.full((height, width), np.nan)
    if inside.any():
        shown = values[inside]
        low, high = float(shown.min()), float(shown.max())
        out[inside] = (shown - low) / (high - low) if high > low else 0.0
    return out


def greyed(image: np.ndarray) -> np.ndarray:
    """``image`` (..., 3) desaturated and dimmed: every channel ``GREY_BASE + GREY_GAIN
    · luminance`` (Rec. 601 weights), float64."""
    luminance = np.asarray(image, dtype=np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.repeat((GREY_BASE + GREY_GAIN * luminance)[..., None], 3, axis=-1)


def heat_panel(background: np.ndarray, heat: np.ndarray, alpha: float = HEAT_ALPHA):
    """A PIL image: ``heat`` (H, W) in [0, 1] coloured by :func:`colormap` and blended
    over ``background`` (H, W, 3) uint8; where ``heat`` is NaN, ``background`` greyed out
    (:func:`greyed`)."""
    from PIL import Image

    base = background.astype(np.float64)
    inside = np.isfinite(heat)
    out = greyed(base)
    blended = (1 - alpha) * base + alpha * colormap(np.where(inside, heat, 0.0))
    out[inside] = blended[inside]
    return Image.fromarray(out.round().astype(np.uint8))


@dataclass(frozen=True)
class FigureLayout:
    """Where :func:`render` puts everything (pixels; boxes are ``(left, top, right,
    bottom)`` with right and bottom exclusive).

    Attributes:
        width, height: of the picture.
        panel_width, panel_height: of every image panel.
        column_width: horizontal pitch of the panels, less the margin.
        header: the header line.
        rows: top of each panel row (its caption line; the panel is LINE below).
        colorbar: the colour map gradient, low (left) to high (right).
        chart_top: top of the bar chart (its title line).
    """

    width: int
    height: int
    panel_width: int
    panel_height: int
    column_width: int
    header: tuple[int, int, int, int]
    rows: tuple[int, ...]
    colorbar: tuple[int, int, int, int]
    chart_top: int

    def panel_box(self, row: int, column: int) -> tuple[int, int, int, int]:
        """The box of the image panel in ``row`` (0 or 1) and ``column``."""
        x = MARGIN + column * (self.column_width + MARGIN)
        y = self.rows[row] + LINE
        return x, y, x + self.panel_width, y + self.panel_height


def figure_layout(num_regions: int, top_k: int, num_attributes: int, panel: int = PANEL,
                  aspect: float = 1.0) -> FigureLayout:
    """The :class:`FigureLayout` of :func:`render`'s picture; ``top_k`` is the number of
    attribute panels actually drawn (0 when the model has no fusion layer), ``aspect``
    the image's width over height (a square image gives the largest picture)."""
    panel_width, panel_height = panel_size(panel, aspect)
    column = max(panel_width, min(panel, CAPTION_WIDTH))
    columns = max(num_regions + 2, top_k)
    width = max(MIN_WIDTH, MARGIN + columns * (column + MARGIN))
    header = (MARGIN, MARGIN, width - MARGIN, MARGIN + LINE)
    y = header[3] + MARGIN
    rows = []
    for _ in range(2 if top_k > 0 else 1):
        rows.append(y)
        y += LINE + panel_height + MARGIN
    bar_left = MARGIN + 30  # room for "low"
    bar_width = min(COLORBAR_WIDTH, width - 2 * MARGIN - 70)
    bar_top = y + LINE + (LINE - COLORBAR_HEIGHT) // 2
    colorbar = (bar_left, bar_top, bar_left + bar_width, bar_top + COLORBAR_HEIGHT)
    y += 2 * LINE + MARGIN
    chart_top = y
    height = y + LINE + num_attributes * BAR + MARGIN
    return FigureLayout(width, height, panel_width, panel_height, column, header, tuple(rows), colorbar, chart_top)


def figure_size(num_regions: int, top_k: int, num_attributes: int, panel: int = PANEL,
                aspect: float = 1.0) -> tuple[int, int]:
    """(width, height) of :func:`render`'s picture (:func:`figure_layout`)."""
    layout = figure_layout(num_regions, top_k, num_attributes, panel, aspect)
    return layout.width, layout.height


def _font(size: int = 12):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw, text: str, width: float, font) -> str:
    """``text``, shortened with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _caption(draw, choices: Sequence[str], width: float, font) -> str:
    """The first of ``choices`` that fits ``width``, else the last one shortened."""
    for text in choices:
        if draw.textlength(text, font=font) <= width:
            return text
    return _fit(draw, choices[-1], width, font)


def check_figure(num_regions: int, top_k: int, num_attributes: int, panel: int,
                 aspect: float = 1.0) -> tuple[int, int]:
    """:func:`figure_size`, after checking that ``panel`` lies in MIN_PANEL..MAX_PANEL,
    ``top_k`` >= 0 and that the picture stays within :data:`MAX_FIGURE_PIXELS`. With the
    default square ``aspect`` the check holds for an image of any shape."""
    if isinstance(panel, bool) or not isinstance(panel, int) or not MIN_PANEL <= panel <= MAX_PANEL:
        raise ValueError(f"panel must be an integer in {MIN_PANEL}..{MAX_PANEL} pixels, got {panel!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be 0 or more, got {top_k!r}")
    width, height = figure_size(num_regions, top_k, num_attributes, panel, aspect)
    if width * height > MAX_FIGURE_PIXELS:
        raise ValueError(
            f"the picture would be {width}×{height} pixels, above the limit of {MAX_FIGURE_PIXELS:,}; "
            "choose a smaller panel or top_k"
        )
    return width, height


def render(maps: AttentionMaps, top_k: int = 5, panel: int = PANEL):
    """Compose the picture described in the module docstring; returns a PIL RGB image.
    At most ``top_k`` attribute panels are drawn: none without fusion attention, and no
    more than there are attributes (:func:`drawing_warnings` says so beforehand).
    ``ValueError`` (before anything is allocated) for a panel outside
    MIN_PANEL..MAX_PANEL, a negative ``top_k`` or a picture above MAX_FIGURE_PIXELS."""
    from PIL import Image, ImageDraw

    check_figure(0, top_k, 0, panel)  # the arguments themselves, before top_attributes uses top_k
    num_attributes = len(maps.attributes)
    top = maps.top_attributes(top_k) if maps.attribute_heat is not None else []
    regions = len(maps.region_rows)
    check_figure(regions, len(top), num_attributes, panel, maps.aspect)
    layout = figure_layout(regions, len(top), num_attributes, panel, maps.aspect)
    canvas = Image.new("RGB", (layout.width, layout.height), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font()
    size = (layout.panel_width, layout.panel_height)
    background = np.asarray(Image.fromarray(maps.image).resize(size, Image.Resampling.BICUBIC))

    def place(row: int, column: int, choices: Sequence[str], picture) -> None:
        x, y, *_ = layout.panel_box(row, column)
        draw.text((x, y - LINE + 1), _caption(draw, choices, layout.column_width, font), fill="black", font=font)
        canvas.paste(picture, (x, y))

    # Header: which image, which model, which threshold.
    left, top_y, right, _ = layout.header
    draw.text((left, top_y + 1), _fit(draw, header_text(maps), right - left, font), fill="black", font=font)

    # Row 1: the input, then the global group and each region's heat inside its band.
    place(0, 0, ["input"], Image.fromarray(background))
    group = "global prompts" if maps.prompts_per_group > 0 else "class token"
    place(0, 1, [group], heat_panel(background, panel_heat(maps.region_heat[0], maps.box, size)))
    for j, rows in enumerate(maps.region_rows, start=1):
        heat = panel_heat(maps.region_heat[j], maps.box, size, rows)
        first, last = rows
        if np.isnan(heat).all():
            choices = [f"region {j} (in padding)", f"region {j}"]
        else:
            choices = [f"region {j} (rows {first}-{last})", f"region {j}: {first}-{last}", f"region {j}"]
        place(0, 1 + j, choices, heat_panel(background, heat))

    # Row 2: fusion attention of the most probable attributes.
    for column, i in enumerate(top):
        value = f" {maps.probabilities[i]:.2f}"
        name = _fit(draw, maps.attributes[i], layout.column_width - draw.textlength(value, font=font), font)
        place(1, column, [name + value], heat_panel(background, panel_heat(maps.attribute_heat[i], maps.box, size)))

    # Colour bar: the colour map from low to high attention.
    bar_left, bar_top, bar_right, bar_bottom = layout.colorbar
    legend_y = bar_top - LINE - (LINE - COLORBAR_HEIGHT) // 2
    legend = "attention, each panel scaled to what it shows; regions within their band, the rest grey"
    draw.text((MARGIN, legend_y + 1), _fit(draw, legend, layout.width - 2 * MARGIN, font), fill="black", font=font)
    gradient = colormap(np.linspace(0.0, 1.0, bar_right - bar_left))
    canvas.paste(Image.fromarray(np.repeat(gradient[None], bar_bottom - bar_top, axis=0)), (bar_left, bar_top))
    text_y = bar_top + COLORBAR_HEIGHT // 2 - LINE // 2 + 1
    draw.text((MARGIN, text_y), "low", fill="black", font=font)
    draw.text((bar_right + 4, text_y), "high", fill="black", font=font)

    # Bar chart: every attribute, most probable first.
    y = layout.chart_top
    draw.text((MARGIN, y + 1), "attribute probabilities (| = threshold)", fill="black", font=font)
    y += LINE
    label_width = min(220, (layout.width - 2 * MARGIN) // 2)
    chart_left, chart_right = MARGIN + label_width, layout.width - MARGIN - 40
    span = chart_right - chart_left
    for i in maps.top_attributes(num_attributes):
        p, t = float(maps.probabilities[i]), float(maps.thresholds[i])
        draw.text((MARGIN, y), _fit(draw, maps.attributes[i], label_width - 6, font), fill="black", font=font)
        color = (220, 50, 40) if p > t else (120, 140, 170)
        draw.rectangle([chart_left, y + 2, chart_left + round(p * span), y + BAR - 3], fill=color)
        tick = chart_left + round(t * span)
        draw.line([tick, y, tick, y + BAR - 1], fill="black", width=1)
        draw.text((chart_right + 4, y), f"{p:.2f}", fill="black", font=font)
        y += BAR
    return canvas


def visualize(model, image: Any, top_k: int = 5, panel: int = PANEL,
              threshold: Union[None, float, Sequence[float]] = None, model_name: Optional[str] = None, *,
              processor: Any = None):
    """:func:`attention_maps` then :func:`render`: the picture for one image (PIL RGB)."""
    return render(attention_maps(model, image, threshold, model_name, processor=processor), top_k=top_k,
                  panel=panel)
