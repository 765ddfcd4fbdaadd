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
pictures do not depend on the attention implementation (sdpa or eager).

:func:`render` composes one RGB picture; its size is :func:`figure_size`::

    width  = max(MIN_WIDTH, MARGIN + columns · (panel + MARGIN)),
             columns = max(K + 2, top_k)
    height = MARGIN
           + (LINE + panel + MARGIN)          row 1: input, global group, regions 1..K
           + (LINE + panel + MARGIN)          row 2: top_k attributes (when top_k > 0
                                              and the model has a fusion layer)
           + LINE + N · BAR + MARGIN          bar chart of the N probabilities

Heat is drawn blue (low) to red (high), each panel scaled to its own range, blended
over the model's view of the image (padded to a square and resized, as the processor
does); region panels outline their band of rows. The bar chart lists every attribute,
most probable first, with its threshold marked; bars above threshold are red.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from ..data.transforms import fit_to_square
from ..tuner.layout import region_layout
from .predict import load_image, resolve_thresholds

MARGIN = 8
LINE = 16  # height of a caption line
BAR = 14  # height of one bar of the chart
MIN_WIDTH = 480
PANEL = 160

# Blue -> cyan -> yellow -> red, for heat 0 -> 1 (the paper's "red high, blue low").
_HEAT_STOPS = np.array([0.0, 0.35, 0.65, 1.0])
_HEAT_COLORS = np.array([[30, 60, 200], [40, 200, 220], [250, 220, 40], [220, 30, 30]], dtype=np.float64)


@dataclass
class AttentionMaps:
    """What :func:`render` draws, for one image.

    Attributes:
        image: ``(S, S, 3)`` uint8, the image as the model sees it (padded, resized).
        region_heat: ``(K + 1, G, G)``: group 0 (global prompts), then regions 1..K.
        region_rows: inclusive ``(first, last)`` patch rows of regions 1..K.
        attribute_heat: ``(N, G, G)`` fusion attention of each attribute token over the
            patches, or None when the model has no fusion layer (``fusion_layers=0``).
        probabilities: ``(N,)`` attribute probabilities.
        thresholds: ``(N,)`` the thresholds that decide the predicted attributes.
        attributes: the N attribute names.
    """

    image: np.ndarray
    region_heat: np.ndarray
    region_rows: list[tuple[int, int]]
    attribute_heat: Optional[np.ndarray]
    probabilities: np.ndarray
    thresholds: np.ndarray
    attributes: list[str]

    @property
    def grid_size(self) -> int:
        return self.region_heat.shape[-1]

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


def attention_maps(model, image: Any, threshold: Union[None, float, Sequence[float]] = None) -> AttentionMaps:
    """Run ``model`` on one image (anything :func:`~par_prompt.inference.predict`
    takes) and collect its attention maps; see the module docstring."""
    config = model.config
    processor = model.image_processor
    if processor is None:
        raise ValueError("This model has no image processor attached; load it with PromptPARModel.from_pretrained.")
    thresholds, _ = resolve_thresholds(config, threshold)
    picture = load_image(image, 0, size_hint=getattr(processor, "size", None))
    view = fit_to_square(picture, processor.size, getattr(processor, "pad_fill", 0), getattr(processor, "resample", 3))
    # The view is already padded and resized: the processor only normalises it (no second resize).
    pixel_values = processor(view, return_tensors="pt")["pixel_values"]

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
    return AttentionMaps(
        image=view,
        region_heat=torch.stack(region_heat).cpu().numpy(),
        region_rows=list(layout.region_rows),
        attribute_heat=None if attribute_heat is None else attribute_heat.cpu().numpy(),
        probabilities=torch.sigmoid(logits.float())[0].cpu().numpy(),
        thresholds=thresholds.numpy(),
        attributes=list(config.attributes),
    )


# ---------------------------------------------------------------------------- drawing


def heat_colors(heat: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB, blue (0) through cyan and yellow to red (1)."""
    heat = np.clip(heat, 0.0, 1.0)
    channels = [np.interp(heat, _HEAT_STOPS, _HEAT_COLORS[:, c]) for c in range(3)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def heat_panel(image: np.ndarray, heat: np.ndarray, size: int, alpha: float = 0.55):
    """A ``size × size`` PIL image: ``heat`` (G, G), scaled to its own range (min -> 0,
    max -> 1; a constant map is all 0) and upsampled bilinearly, blended over ``image``."""
    from PIL import Image

    low, high = float(heat.min()), float(heat.max())
    scaled = (heat - low) / (high - low) if high > low else np.zeros_like(heat)
    upsampled = np.asarray(Image.fromarray(scaled.astype(np.float32)).resize((size, size), Image.BILINEAR))
    background = np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC), dtype=np.float64)
    blended = (1 - alpha) * background + alpha * heat_colors(upsampled)
    return Image.fromarray(blended.round().astype(np.uint8))


def figure_size(num_regions: int, top_k: int, num_attributes: int, panel: int = PANEL) -> tuple[int, int]:
    """(width, height) of :func:`render`'s picture; ``top_k`` is the number of attribute
    panels actually drawn (0 when the model has no fusion layer)."""
    columns = max(num_regions + 2, top_k)
    width = max(MIN_WIDTH, MARGIN + columns * (panel + MARGIN))
    row = LINE + panel + MARGIN
    height = MARGIN + row + (row if top_k > 0 else 0) + LINE + num_attributes * BAR + MARGIN
    return width, height


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


def render(maps: AttentionMaps, top_k: int = 5, panel: int = PANEL):
    """Compose the picture described in the module docstring; returns a PIL RGB image."""
    from PIL import Image, ImageDraw

    if panel < 16:
        raise ValueError(f"panel must be at least 16 pixels, got {panel}")
    if top_k < 0:
        raise ValueError(f"top_k must be 0 or more, got {top_k}")
    num_attributes = len(maps.attributes)
    top = maps.top_attributes(top_k) if maps.attribute_heat is not None else []
    regions = len(maps.region_rows)
    width, height = figure_size(regions, len(top), num_attributes, panel)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font()
    grid = maps.grid_size

    def place(column: int, top_y: int, caption: str, picture) -> None:
        x = MARGIN + column * (panel + MARGIN)
        draw.text((x, top_y + 1), _fit(draw, caption, panel, font), fill="black", font=font)
        canvas.paste(picture, (x, top_y + LINE))

    # Row 1: the input, then the global group and each region's heat.
    y = MARGIN
    place(0, y, "input", Image.fromarray(maps.image).resize((panel, panel), Image.BICUBIC))
    place(1, y, "global prompts", heat_panel(maps.image, maps.region_heat[0], panel))
    for j, (first, last) in enumerate(maps.region_rows, start=1):
        picture = heat_panel(maps.image, maps.region_heat[j], panel)
        outline = ImageDraw.Draw(picture)
        top_px, bottom_px = round(first * panel / grid), round((last + 1) * panel / grid) - 1
        outline.rectangle([0, top_px, panel - 1, bottom_px], outline="white", width=2)
        place(1 + j, y, f"region {j} (rows {first}-{last})", picture)
    y += LINE + panel + MARGIN

    # Row 2: fusion attention of the most probable attributes.
    if top:
        for column, i in enumerate(top):
            caption = f"{maps.attributes[i]} {maps.probabilities[i]:.2f}"
            place(column, y, caption, heat_panel(maps.image, maps.attribute_heat[i], panel))
        y += LINE + panel + MARGIN

    # Bar chart: every attribute, most probable first.
    draw.text((MARGIN, y + 1), "attribute probabilities (| = threshold)", fill="black", font=font)
    y += LINE
    label_width = min(220, (width - 2 * MARGIN) // 2)
    bar_left, bar_right = MARGIN + label_width, width - MARGIN - 40
    span = bar_right - bar_left
    for i in maps.top_attributes(num_attributes):
        p, t = float(maps.probabilities[i]), float(maps.thresholds[i])
        draw.text((MARGIN, y), _fit(draw, maps.attributes[i], label_width - 6, font), fill="black", font=font)
        color = (220, 50, 40) if p > t else (120, 140, 170)
        draw.rectangle([bar_left, y + 2, bar_left + round(p * span), y + BAR - 3], fill=color)
        tick = bar_left + round(t * span)
        draw.line([tick, y, tick, y + BAR - 1], fill="black", width=1)
        draw.text((bar_right + 4, y), f"{p:.2f}", fill="black", font=font)
        y += BAR
    return canvas


def visualize(model, image: Any, top_k: int = 5, panel: int = PANEL,
              threshold: Union[None, float, Sequence[float]] = None):
    """:func:`attention_maps` then :func:`render`: the picture for one image (PIL RGB)."""
    return render(attention_maps(model, image, threshold), top_k=top_k, panel=panel)
