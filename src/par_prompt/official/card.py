"""The model card of an imported official checkpoint: par-prompt's card plus provenance."""

from __future__ import annotations

from typing import Any, Mapping

from .tables import OFFICIAL_TABLES

#: The paper's ViT-L/14 results (mA, Acc, Prec, Rec, F1 in percent; WIDER: mA only).
PAPER_RESULTS: dict[str, tuple] = {
    "pa100k": (87.47, 83.78, 89.27, 91.70, 90.15),
    "peta": (88.76, 82.84, 89.04, 89.74, 89.18),
    "rapv1": (85.45, 71.61, 79.64, 86.05, 82.38),
    "rapv2": (83.14, 69.62, 77.42, 85.73, 81.00),
    "peta_zs": (80.08, 66.02, 76.53, 80.49, 77.77),
    "rap_zs": (80.43, 70.39, 78.48, 85.57, 81.52),
    "wider": (92.0, None, None, None, None),
}
METRIC_NAMES = ("mA", "Acc", "Prec", "Rec", "F1")
PAPER = ("Wang et al., *Pedestrian Attribute Recognition via CLIP based Prompt Vision-Language Fusion* "
         "(PromptPAR), ViT-L/14")
HOW_TO_USE = "## How to use"


def _row(values) -> str:
    return "| " + " | ".join("–" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
                             for v in values) + " |"


def _numbers(source: Mapping[str, Any]) -> str:
    key = source.get("dataset")
    lines = []
    if key in PAPER_RESULTS:
        title = OFFICIAL_TABLES[key].title
        lines += [f"The paper reports for {title} ({PAPER}; test split, in percent):", "",
                  "| data set | " + " | ".join(METRIC_NAMES) + " |", "|---" * 6 + "|",
                  _row([title, *PAPER_RESULTS[key]]), "",
                  "These are the paper's numbers, not numbers measured on this export; `par-prompt evaluate` "
                  "measures them on your copy of the data."]
    stored = source.get("stored_result") or {}
    if stored:
        if lines:
            lines.append("")
        lines += ["The checkpoint also stores the validation result the official training loop computed when "
                  "it saved this epoch:", "", "| " + " | ".join(stored) + " |", "|---" * len(stored) + "|",
                  _row([100 * float(v) for v in stored.values()])]
    return "\n".join(lines) if lines else "No published numbers are known for this data set."


def _is_identity(order) -> bool:
    return order is None or list(order) == list(range(len(order)))


def provenance_section(config: Any, bundled: bool) -> str:
    """The card section that says where the weights came from and what the import changed."""
    config = config if isinstance(config, Mapping) else config.to_dict()
    source = config.get("imported_from") or {}
    key = source.get("dataset")
    table = OFFICIAL_TABLES.get(key)
    rows = [("file", f"`{source.get('file')}`"), ("SHA-256", f"`{source.get('sha256')}`"),
            ("data set", table.title if table else (config.get("dataset") or "not given")),
            ("epoch", source.get("epoch") if source.get("epoch") is not None else "not recorded"),
            ("CLIP weights stored under", f"`{source.get('clip_weights_key')}`"),
            ("output order", "the official head order" if _is_identity(source.get("head_order")) else
             "reordered at import to match a converted data set (official head of each output: "
             "`imported_from.head_order` in `config.json`)")]
    sentences = (f"the `attr_words` of the official `dataset/preprocess/{table.script}`, in its order"
                 if source.get("attributes_from", "").startswith("official") and table else
                 "given by the user at import (`--attributes`)")
    dropped = source.get("dropped_tensors") or {}
    dropped_text = ", ".join(f"`{name}` {tuple(shape)}" for name, shape in dropped.items()) or "none"
    fusion = config.get("fusion_layers", 1)
    size = (config.get("clip_config") or {}).get("vision_config", {}).get("image_size", 224)
    base = (f"The CLIP weights of the checkpoint are bundled (`clip_base.safetensors`): the folder loads with no "
            "download." if bundled else
            f"The CLIP weights are loaded from `{config.get('clip_name_or_path')}`, the weights the official code "
            "starts from and keeps frozen; import with `--bundle-base` to keep the checkpoint's own copy in the "
            "folder instead.")
    aggregator = (
        "The global-local aggregator (temperature and BatchNorm) comes from the checkpoint. Its scores "
        "(`gl_logits`) are a training signal only and never enter predictions; par-prompt computes them as "
        "its method notes describe (docs/method.md §5), which differs from the official code (that reads its "
        "global row from the first global prompt token and uses one sample's local scores for the whole batch)."
        if source.get("aggregator_from_checkpoint") else
        "The checkpoint has no global-local aggregator (trained without `--use_GL`); the model's aggregator is "
        "freshly initialised. It never enters predictions."
    )
    return "\n".join([
        "## Imported from an official PromptPAR checkpoint",
        "",
        "These weights were trained by the official PromptPAR code (https://github.com/Event-AHU/OpenPAR, folder "
        "`PromptPAR/`) and converted tensor by tensor with `par-prompt import-official`.",
        "",
        "| | |", "|---|---|", *[f"| {name} | {value} |" for name, value in rows],
        "",
        f"Attribute sentences: {sentences}. {base}",
        "",
        _numbers(source),
        "",
        "### The official prediction pipeline, recorded in this model",
        "",
        f"- Images are resized to {size}×{size} without padding (bilinear, aspect ratio not kept) and normalised "
        "with mean = std = 0.5: `do_pad`, `resample`, `image_mean` and `image_std` in `preprocessor_config.json`.",
        "- The visual tokens skip CLIP's post-LayerNorm before the visual projection: "
        "`config.visual_post_layernorm = false`.",
        f"- Fusion: {fusion} timm ViT-B/16 block(s) (LayerNorm eps 1e-6) and the final norm, with the "
        "checkpoint's weights; then one linear map per attribute and a BatchNorm over the attributes.",
        f"- An attribute is predicted when its probability exceeds {config.get('threshold')}, the threshold of the "
        "official scripts: `config.threshold`.",
        "",
        "With these settings the model computes the official code's probabilities (up to floating-point rounding; "
        "the official code runs CLIP in float16 on a GPU).",
        "",
        "### Not carried over, and why",
        "",
        f"- The text prompts ({dropped_text}). The official code appends them after CLIP's 77 causal text "
        "positions, where no sentence token can attend to them, so they never change a prediction; the model has "
        "no text prompts (`config.text_prompts = 0`).",
        "- The optimizer state and the stored validation result: training bookkeeping, not part of the model.",
        "- The positive ratio of each attribute in the training data (used by the loss) is not in the checkpoint: "
        "fine-tuning sets it from the training split.",
        "",
        "### Notes",
        "",
        f"- {aggregator}",
        "- Two settings of the official code are not recorded in its files and are taken from its published "
        "training command: the region attention mask (`--use_vismask`) and 2 overlapping rows between regions.",
    ])


def render_official_card(config: Any, bundled: bool = False) -> str:
    """par-prompt's model card for ``config`` with :func:`provenance_section` before "How to use"."""
    from ..hub import render_model_card

    card = render_model_card(config, tags=["official-checkpoint"])
    section = provenance_section(config, bundled) + "\n\n"
    head, found, tail = card.partition(HOW_TO_USE)
    return head + section + found + tail if found else card.rstrip("\n") + "\n\n" + section
