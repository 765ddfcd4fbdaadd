"""The model card of an imported official checkpoint: par-prompt's card with a provenance section.

The card is rendered by :func:`par_prompt.hub.render_model_card` from the one packaged
template; this module supplies what only an import knows: where the weights came from
(:func:`provenance`), the paper's numbers for the data set, and the licence of the
official checkpoints (:data:`OFFICIAL_LICENSE`).
"""

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
#: The official checkpoints are linked from the README of Event-AHU/OpenPAR, whose repository is
#: MIT-licensed; the weights carry no licence of their own, so the card says "other" and links it.
OFFICIAL_LICENSE: Mapping[str, str] = {
    "license": "other",
    "license_name": "openpar",
    "license_link": "https://github.com/Event-AHU/OpenPAR/blob/main/LICENSE",
}
TAGS = ("official-checkpoint",)


def _is_identity(order) -> bool:
    return order is None or list(order) == list(range(len(order)))


def provenance(config: Any) -> dict[str, Any]:
    """The data of the card's provenance section, from ``config.imported_from``: the
    file, its SHA-256, data set, epoch, what the import dropped and why, and the paper's
    numbers for the data set."""
    from ..hub import public_name

    config = config if isinstance(config, Mapping) else config.to_dict()
    source = config.get("imported_from") or {}
    key = source.get("dataset")
    table = OFFICIAL_TABLES.get(key)
    paper = None
    if key in PAPER_RESULTS:
        paper = {"dataset": table.title, "source": PAPER, "metrics": list(METRIC_NAMES),
                 "numbers": list(PAPER_RESULTS[key])}
    stored = source.get("stored_result") or {}
    official_sentences = str(source.get("attributes_from") or "").startswith("official") and table is not None
    return {
        "file": public_name(source.get("file")) or "not recorded",
        "sha256": source.get("sha256"),
        "dataset": table.title if table else (public_name(config.get("dataset")) or "not given"),
        "epoch": source.get("epoch"),
        "clip_weights_key": source.get("clip_weights_key"),
        "reordered": not _is_identity(source.get("head_order")),
        "sentences_script": table.script if official_sentences else None,
        "clip": public_name(config.get("clip_name_or_path")),
        "paper": paper,
        "stored_result": {str(name): 100 * float(value) for name, value in stored.items()},
        "image_size": (config.get("clip_config") or {}).get("vision_config", {}).get("image_size", 224),
        "fusion_layers": config.get("fusion_layers", 1),
        "dropped": [(name, tuple(shape)) for name, shape in (source.get("dropped_tensors") or {}).items()],
        "aggregator_from_checkpoint": bool(source.get("aggregator_from_checkpoint")),
    }


def render_official_card(config: Any, bundled: bool = False) -> str:
    """The model card of an imported official checkpoint: :func:`par_prompt.hub.render_model_card`
    with the provenance section and :data:`OFFICIAL_LICENSE`."""
    from ..hub import render_model_card

    return render_model_card(config, bundled=bundled)  # it adds the licence, tag and provenance of imported_from
