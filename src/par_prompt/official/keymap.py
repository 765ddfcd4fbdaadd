"""Tensor by tensor: the official PromptPAR state dicts in the par-prompt layout.

The official model is two state dicts (see :mod:`.checkpoint`):

* the CLIP one, in OpenAI's layout: ``visual.*`` (``conv1``, ``class_embedding``,
  ``positional_embedding``, ``ln_pre``, ``transformer.resblocks.N.*`` with a fused
  ``attn.in_proj_weight`` = [q; k; v], ``ln_post``, ``proj`` stored as (width, d)),
  the text tower (``token_embedding``, ``positional_embedding``,
  ``transformer.resblocks.N.*``, ``ln_final``, ``text_projection`` as (width, d)) and
  ``logit_scale``; plus what PromptPAR trained inside it: ``visual.transformer.prompt_deep``
  (depth, P, 1, width) -- per layer the global prompts then each region's, P = (K + 1) m --,
  ``visual.part_class_embedding`` (K, width), ``transformer.prompt_text_deep`` and the
  aggregator's ``softmax_model.temperature`` and ``agg_bn.*``;
* the classifier: ``word_embed`` and ``visual_embed`` (Linear d -> F), ``blocks.N.*``
  (timm ViT blocks: ``norm1``, ``attn.qkv`` fused [q; k; v], ``attn.proj``, ``norm2``,
  ``mlp.fc1``, ``mlp.fc2``), ``norm``, ``weight_layer.i`` (Linear F -> 1, one per
  attribute) and ``bn`` (BatchNorm1d over the attributes).

:func:`read_layout` derives the architecture from the names and shapes alone;
:func:`convert` renames, splits and transposes every tensor into a Hugging Face
``CLIPModel`` state dict, the region-prompt adapter, a ``ViTModel`` state dict for the
fusion layers and the PromptPAR head, in float32. Every tensor is used, except the
text prompts, which are dropped on purpose: the official code appends them after
CLIP's 77 causal positions, where no sentence token can attend to them, so they never
change the output. A tensor that is neither used nor one of those is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Optional

import torch
from transformers import CLIPConfig, ViTConfig

from .errors import OfficialCheckpointError

#: Tensors of the official CLIP state dict that are dropped on purpose (see the module docstring).
DROPPED = ("transformer.prompt_text_deep",)
#: Width of one attention head in every official model (OpenAI CLIP and timm's ViT-B/16).
HEAD_WIDTH = 64
#: Settings of the official code that are constants there, not readable from the file.
OFFICIAL_LAYER_NORM_EPS = {"clip": 1e-5, "fusion": 1e-6}  # nn.LayerNorm default; timm vit_base
OFFICIAL_REGION_GRID = 16  # build_visual_mask hard-codes the 4 regions of a 16-row grid ...
OFFICIAL_REGIONS = 4
OFFICIAL_OVERLAP_ROWS = 2  # ... and the paper's --overlap_row 2 (rows 0-4, 3-8, 7-12, 11-15)

_CLIP_LAYER = {
    "ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
    "attn.out_proj": "self_attn.out_proj",
}
_FUSION_LAYER = {
    "norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.o_proj",
    "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
}
_BATCH_NORM = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class OfficialLayout:
    """The architecture of an official checkpoint, as its tensors' names and shapes give it."""

    vision_width: int
    vision_layers: int
    vision_mlp: int
    patch_size: int
    image_size: int
    text_width: int
    text_layers: int
    text_mlp: int
    vocab_size: int
    context_length: int
    projection_dim: int
    num_regions: int
    prompts_per_group: int
    vision_depth: int
    fusion_width: int
    fusion_layers: int
    fusion_mlp: int
    num_attributes: int
    has_aggregator: bool

    def clip_config(self, bos_token_id: int, eos_token_id: int, pad_token_id: int) -> CLIPConfig:
        """The ``CLIPConfig`` of the checkpoint's CLIP (the token ids come from its tokenizer)."""
        common = dict(hidden_act="quick_gelu", layer_norm_eps=OFFICIAL_LAYER_NORM_EPS["clip"])
        text = dict(
            common, vocab_size=self.vocab_size, hidden_size=self.text_width, intermediate_size=self.text_mlp,
            num_hidden_layers=self.text_layers, num_attention_heads=self.text_width // HEAD_WIDTH,
            max_position_embeddings=self.context_length, projection_dim=self.projection_dim,
            bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
        )
        vision = dict(
            common, hidden_size=self.vision_width, intermediate_size=self.vision_mlp,
            num_hidden_layers=self.vision_layers, num_attention_heads=self.vision_width // HEAD_WIDTH,
            image_size=self.image_size, patch_size=self.patch_size, projection_dim=self.projection_dim,
        )
        return CLIPConfig(text_config=text, vision_config=vision, projection_dim=self.projection_dim)

    def fusion_config(self) -> ViTConfig:
        """The ``ViTConfig`` of the fusion layers (timm's ViT-B/16 block: exact GELU, LayerNorm eps 1e-6)."""
        return ViTConfig(
            hidden_size=self.fusion_width, num_hidden_layers=self.fusion_layers,
            num_attention_heads=self.fusion_width // HEAD_WIDTH, intermediate_size=self.fusion_mlp,
            hidden_act="gelu", layer_norm_eps=OFFICIAL_LAYER_NORM_EPS["fusion"], qkv_bias=True,
            image_size=224, patch_size=16,
        )

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size


@dataclass
class ConvertedWeights:
    """The checkpoint's tensors in the par-prompt layout (float32, on the device they came on).

    Attributes:
        clip: a ``CLIPModel`` state dict.
        class_tokens: the region class tokens (K, width), or None without regions.
        prompts: the visual prompts (depth, K + 1, m, width), or None without prompts.
        fusion: a ``ViTModel`` state dict holding the fusion layers and the final norm.
        head: ``PromptPARModel`` state-dict entries: projections, heads and their
            BatchNorm, and the aggregator when the checkpoint has one.
        dropped: name -> shape of the tensors left out on purpose.
    """

    clip: dict[str, torch.Tensor] = field(default_factory=dict)
    class_tokens: Optional[torch.Tensor] = None
    prompts: Optional[torch.Tensor] = None
    fusion: dict[str, torch.Tensor] = field(default_factory=dict)
    head: dict[str, torch.Tensor] = field(default_factory=dict)
    dropped: dict[str, tuple[int, ...]] = field(default_factory=dict)


class _Reader:
    """Hands out the tensors of one state dict and remembers which were taken."""

    def __init__(self, state: Mapping[str, torch.Tensor], what: str) -> None:
        self.state, self.what, self.taken = state, what, set()

    def has(self, name: str) -> bool:
        return name in self.state

    def shape(self, name: str, ndim: Optional[int] = None) -> tuple[int, ...]:
        if name not in self.state:
            raise OfficialCheckpointError(
                f"the {self.what} state dict has no {name!r}: this is not a checkpoint of the official PromptPAR "
                "code (or it is truncated)."
            )
        shape = tuple(self.state[name].shape)
        if ndim is not None and len(shape) != ndim:
            raise OfficialCheckpointError(f"{self.what} tensor {name!r} has shape {shape}; expected {ndim} dimensions.")
        return shape

    def take(self, name: str, shape: Optional[tuple[int, ...]] = None) -> torch.Tensor:
        found = self.shape(name)
        if shape is not None and found != tuple(shape):
            raise OfficialCheckpointError(
                f"{self.what} tensor {name!r} has shape {found}; this architecture needs {tuple(shape)}."
            )
        self.taken.add(name)
        tensor = self.state[name]
        return tensor.to(torch.float32, copy=True) if tensor.is_floating_point() else tensor.clone()

    def drop(self, name: str) -> tuple[int, ...]:
        self.taken.add(name)
        return tuple(self.state[name].shape)

    def indices(self, prefix: str) -> int:
        """How many blocks ``prefix{i}.`` there are (checked to be numbered 0..n-1)."""
        pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
        found = sorted({int(m.group(1)) for name in self.state if (m := pattern.match(name))})
        if found != list(range(len(found))):
            raise OfficialCheckpointError(f"the {self.what} blocks {prefix}N are not numbered 0..n-1: {found}.")
        return len(found)

    def leftovers(self) -> list[str]:
        return sorted(set(self.state) - self.taken)


def _head_count(width: int, what: str) -> int:
    if width % HEAD_WIDTH:
        raise OfficialCheckpointError(
            f"the {what} is {width} wide, not a multiple of {HEAD_WIDTH}: the official code gives every attention "
            f"head {HEAD_WIDTH} channels, so this is not one of its models."
        )
    return width // HEAD_WIDTH


def read_layout(clip_state: Mapping[str, torch.Tensor], classifier_state: Mapping[str, torch.Tensor]) -> OfficialLayout:
    """The architecture of an official checkpoint, from its tensors' names and shapes.

    Raises :class:`OfficialCheckpointError` for missing tensors, inconsistent shapes and
    variants the official prediction code cannot be reproduced for (ResNet CLIPs, the
    linear fusion of ``--use_mm_former`` off, region layouts other than the official one).
    """
    clip, classifier = _Reader(clip_state, "CLIP"), _Reader(classifier_state, "classifier")
    if not clip.has("visual.proj"):
        raise OfficialCheckpointError(
            "the CLIP state dict has no 'visual.proj': it is not a ViT CLIP (PromptPAR's visual prompts need a "
            "ViT) or not a PromptPAR checkpoint."
        )
    vision_width, _, patch_size, _ = clip.shape("visual.conv1.weight", 4)
    positions, _ = clip.shape("visual.positional_embedding", 2)
    grid = round((positions - 1) ** 0.5)
    if grid * grid + 1 != positions:
        raise OfficialCheckpointError(f"visual.positional_embedding has {positions} rows, not 1 + a square grid.")
    projection_dim = clip.shape("visual.proj", 2)[1]
    text_width = clip.shape("ln_final.weight", 1)[0]
    vocab_size, _ = clip.shape("token_embedding.weight", 2)
    context_length, _ = clip.shape("positional_embedding", 2)
    vision_layers = clip.indices("visual.transformer.resblocks.")
    text_layers = clip.indices("transformer.resblocks.")
    _head_count(vision_width, "CLIP vision tower")
    _head_count(text_width, "CLIP text tower")

    depth, num_prompts, _, _ = clip.shape("visual.transformer.prompt_deep", 4)
    if clip.has("visual.part_class_embedding"):
        num_regions = clip.shape("visual.part_class_embedding", 2)[0]
        if (num_regions, grid) != (OFFICIAL_REGIONS, OFFICIAL_REGION_GRID):
            raise OfficialCheckpointError(
                f"the checkpoint has {num_regions} regions on a {grid}x{grid} patch grid; the official code only "
                f"defines its region mask for {OFFICIAL_REGIONS} regions on a {OFFICIAL_REGION_GRID}x"
                f"{OFFICIAL_REGION_GRID} grid (ViT-*/14 at 224 px), so no other layout can be reproduced."
            )
        if num_prompts % (num_regions + 1):
            raise OfficialCheckpointError(
                f"the checkpoint has {num_prompts} visual prompts per layer, not a multiple of the "
                f"{num_regions + 1} prompt groups."
            )
        prompts_per_group = num_prompts // (num_regions + 1)
    else:  # --use_div off: plain deep prompts after the class token
        num_regions, prompts_per_group = 0, num_prompts
    if prompts_per_group == 0:
        raise OfficialCheckpointError("the checkpoint has no visual prompts (visual.transformer.prompt_deep is empty).")
    if not 1 <= depth <= vision_layers:
        raise OfficialCheckpointError(f"visual.transformer.prompt_deep has {depth} layers of prompts for a "
                                      f"{vision_layers}-layer vision tower.")

    if classifier.has("linear_layer.weight"):
        raise OfficialCheckpointError(
            "the checkpoint was trained without --use_mm_former: its fusion is a single linear map over the token "
            "axis, which par-prompt does not implement, so its predictions cannot be reproduced."
        )
    fusion_width, _ = classifier.shape("word_embed.weight", 2)
    fusion_layers = classifier.indices("blocks.")
    if fusion_layers == 0:
        raise OfficialCheckpointError("the classifier has no fusion blocks ('blocks.0.*').")
    _head_count(fusion_width, "fusion block")
    num_attributes = classifier.indices("weight_layer.")
    bn_size = classifier.shape("bn.weight", 1)[0]
    if num_attributes == 0 or bn_size != num_attributes:
        raise OfficialCheckpointError(
            f"the classifier has {num_attributes} attribute heads (weight_layer.N) but a BatchNorm over {bn_size}."
        )
    return OfficialLayout(
        vision_width=vision_width, vision_layers=vision_layers,
        vision_mlp=clip.shape("visual.transformer.resblocks.0.mlp.c_fc.weight", 2)[0],
        patch_size=patch_size, image_size=grid * patch_size, text_width=text_width, text_layers=text_layers,
        text_mlp=clip.shape("transformer.resblocks.0.mlp.c_fc.weight", 2)[0], vocab_size=vocab_size,
        context_length=context_length, projection_dim=projection_dim, num_regions=num_regions,
        prompts_per_group=prompts_per_group, vision_depth=depth, fusion_width=fusion_width,
        fusion_layers=fusion_layers, fusion_mlp=classifier.shape("blocks.0.mlp.fc1.weight", 2)[0],
        num_attributes=num_attributes, has_aggregator=clip.has("softmax_model.temperature"),
    )


def _clip_layers(clip: _Reader, source: str, target: str, count: int, width: int, mlp: int,
                 out: dict[str, torch.Tensor]) -> None:
    for i in range(count):
        src, dst = f"{source}{i}.", f"{target}{i}."
        q, k, v = clip.take(src + "attn.in_proj_weight", (3 * width, width)).chunk(3)
        qb, kb, vb = clip.take(src + "attn.in_proj_bias", (3 * width,)).chunk(3)
        for name, weight, bias in (("q_proj", q, qb), ("k_proj", k, kb), ("v_proj", v, vb)):
            out[f"{dst}self_attn.{name}.weight"] = weight.contiguous()
            out[f"{dst}self_attn.{name}.bias"] = bias.contiguous()
        shapes = {"ln_1": (width,), "ln_2": (width,), "mlp.c_fc": (mlp, width), "mlp.c_proj": (width, mlp),
                  "attn.out_proj": (width, width)}
        for old, new in _CLIP_LAYER.items():
            out[f"{dst}{new}.weight"] = clip.take(f"{src}{old}.weight", shapes[old])
            out[f"{dst}{new}.bias"] = clip.take(f"{src}{old}.bias", shapes[old][:1])


def _convert_clip(clip: _Reader, layout: OfficialLayout, out: ConvertedWeights) -> None:
    w, t, d = layout.vision_width, layout.text_width, layout.projection_dim
    state = out.clip
    vision, text = "vision_model.", "text_model."
    state[vision + "embeddings.patch_embedding.weight"] = clip.take(
        "visual.conv1.weight", (w, 3, layout.patch_size, layout.patch_size))
    state[vision + "embeddings.class_embedding"] = clip.take("visual.class_embedding", (w,))
    state[vision + "embeddings.position_embedding.weight"] = clip.take(
        "visual.positional_embedding", (layout.grid_size ** 2 + 1, w))
    for old, new in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        for part in ("weight", "bias"):
            state[f"{vision}{new}.{part}"] = clip.take(f"visual.{old}.{part}", (w,))
    _clip_layers(clip, "visual.transformer.resblocks.", vision + "encoder.layers.", layout.vision_layers, w,
                 layout.vision_mlp, state)
    state["visual_projection.weight"] = clip.take("visual.proj", (w, d)).t().contiguous()

    state[text + "embeddings.token_embedding.weight"] = clip.take("token_embedding.weight", (layout.vocab_size, t))
    state[text + "embeddings.position_embedding.weight"] = clip.take(
        "positional_embedding", (layout.context_length, t))
    _clip_layers(clip, "transformer.resblocks.", text + "encoder.layers.", layout.text_layers, t, layout.text_mlp,
                 state)
    for part in ("weight", "bias"):
        state[f"{text}final_layer_norm.{part}"] = clip.take(f"ln_final.{part}", (t,))
    state["text_projection.weight"] = clip.take("text_projection", (t, d)).t().contiguous()
    state["logit_scale"] = clip.take("logit_scale", ())

    k, m, depth = layout.num_regions, layout.prompts_per_group, layout.vision_depth
    prompts = clip.take("visual.transformer.prompt_deep", (depth, (k + 1) * m, 1, w))
    # Official order per layer: the m global prompts, then each region's m, i.e. group-major.
    out.prompts = prompts[:, :, 0].reshape(depth, k + 1, m, w).contiguous() if m else None
    if k:
        out.class_tokens = clip.take("visual.part_class_embedding", (k, w))
    if layout.has_aggregator:
        out.head["aggregator.temperature"] = clip.take("softmax_model.temperature", ())
        for part in _BATCH_NORM:
            out.head[f"aggregator.batch_norm.{part}"] = clip.take(
                f"agg_bn.{part}", () if part == "num_batches_tracked" else (layout.num_attributes,))
    for name in DROPPED:
        if clip.has(name):
            out.dropped[name] = clip.drop(name)


def _convert_classifier(classifier: _Reader, layout: OfficialLayout, out: ConvertedWeights) -> None:
    f, d, n, mlp = layout.fusion_width, layout.projection_dim, layout.num_attributes, layout.fusion_mlp
    for old, new in (("word_embed", "text_projection"), ("visual_embed", "visual_projection")):
        out.head[f"{new}.weight"] = classifier.take(f"{old}.weight", (f, d))
        out.head[f"{new}.bias"] = classifier.take(f"{old}.bias", (f,))
    for i in range(layout.fusion_layers):
        src, dst = f"blocks.{i}.", f"layers.{i}."
        q, k, v = classifier.take(src + "attn.qkv.weight", (3 * f, f)).chunk(3)
        qb, kb, vb = classifier.take(src + "attn.qkv.bias", (3 * f,)).chunk(3)
        for name, weight, bias in (("q_proj", q, qb), ("k_proj", k, kb), ("v_proj", v, vb)):
            out.fusion[f"{dst}attention.{name}.weight"] = weight.contiguous()
            out.fusion[f"{dst}attention.{name}.bias"] = bias.contiguous()
        shapes = {"norm1": (f,), "norm2": (f,), "attn.proj": (f, f), "mlp.fc1": (mlp, f), "mlp.fc2": (f, mlp)}
        for old, new in _FUSION_LAYER.items():
            out.fusion[f"{dst}{new}.weight"] = classifier.take(f"{src}{old}.weight", shapes[old])
            out.fusion[f"{dst}{new}.bias"] = classifier.take(f"{src}{old}.bias", shapes[old][:1])
    for part in ("weight", "bias"):
        out.fusion[f"layernorm.{part}"] = classifier.take(f"norm.{part}", (f,))
    out.head["heads.weight"] = torch.cat([classifier.take(f"weight_layer.{i}.weight", (1, f)) for i in range(n)])
    out.head["heads.bias"] = torch.cat([classifier.take(f"weight_layer.{i}.bias", (1,)) for i in range(n)])
    for part in _BATCH_NORM:
        out.head[f"heads.batch_norm.{part}"] = classifier.take(
            f"bn.{part}", () if part == "num_batches_tracked" else (n,))


def convert(clip_state: Mapping[str, torch.Tensor], classifier_state: Mapping[str, torch.Tensor],
            layout: Optional[OfficialLayout] = None) -> ConvertedWeights:
    """Every tensor of the two state dicts in the par-prompt layout (see the module docstring).

    Raises :class:`OfficialCheckpointError` listing the tensors that would be left unused.
    """
    layout = layout or read_layout(clip_state, classifier_state)
    clip, classifier = _Reader(clip_state, "CLIP"), _Reader(classifier_state, "classifier")
    out = ConvertedWeights()
    _convert_clip(clip, layout, out)
    _convert_classifier(classifier, layout, out)
    unused = [f"{what}: {name} {tuple(reader.state[name].shape)}"
              for what, reader in (("CLIP", clip), ("classifier", classifier)) for name in reader.leftovers()]
    if unused:
        shown = "; ".join(unused[:12]) + (f"; ... ({len(unused)} in all)" if len(unused) > 12 else "")
        raise OfficialCheckpointError(
            f"the checkpoint holds tensors the official model does not have, which would be left out: {shown}. "
            "It was saved by modified code; par-prompt imports only checkpoints of the official PromptPAR code."
        )
    return out
