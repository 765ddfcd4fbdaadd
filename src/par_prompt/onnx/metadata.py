"""What an exported ``.onnx`` file says about itself, in the model's ``metadata_props``.

Every value is a string: ``format``, ``precision`` and ``version`` plain, the others
JSON, so that a deployment in any language can read them:

=============================  ============================================================
``par_prompt.format``          version of this layout (``"1"``)
``par_prompt.attributes``      JSON list: the N attribute names, in output order
``par_prompt.sentences``       JSON list: the sentence of each attribute
``par_prompt.threshold``       JSON number: the global probability threshold
``par_prompt.attribute_thresholds``  JSON list of N numbers, or ``null``; when given they
                               override the global threshold (calibrated per attribute)
``par_prompt.image_processor`` JSON object: the ``PromptPARImageProcessor`` settings
                               (``size``, ``image_mean``, ``image_std``, ``pad_fill``,
                               ``resample``: pad to a centred square, resize, normalise)
``par_prompt.precision``       ``"fp32"`` or ``"fp16"`` (the weights; input and outputs
                               are float32 either way)
``par_prompt.dataset``         JSON: the benchmark whose sentence table was used, or ``null``
``par_prompt.config``          JSON object: the rest of the ``PromptPARConfig`` (backbone
                               architectures and references, prompt settings), for the record
``par_prompt.version``         the par-prompt version that wrote the file
=============================  ============================================================

The graph's input is ``pixel_values`` (B, 3, S, S) float32 from that image processor;
its outputs ``logits`` and ``probabilities`` (B, N) float32. An attribute is present
when its probability is strictly above its threshold.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

PREFIX = "par_prompt."
FORMAT_VERSION = "1"
PRECISIONS = ("fp32", "fp16")
#: Keys whose value is a plain string; every other value is JSON.
PLAIN_KEYS = ("format", "precision", "version")
REQUIRED_KEYS = ("format", "attributes", "sentences", "threshold", "attribute_thresholds", "image_processor",
                 "config", "precision")
#: PromptPARConfig fields stored under keys of their own (each value is stored once);
#: id2label and label2id follow from the attributes.
OWN_KEYS = ("attributes", "sentences", "threshold", "attribute_thresholds", "dataset")
DERIVED_FIELDS = ("id2label", "label2id")


def build_metadata(model, image_processor, precision: str) -> dict[str, str]:
    """The metadata of an export of ``model`` (a PromptPARModel) preprocessed by
    ``image_processor`` (its PromptPARImageProcessor)."""
    from .. import __version__

    config = model.config
    values: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "attributes": list(config.attributes),
        "sentences": list(config.sentences),
        "threshold": float(config.threshold),
        "attribute_thresholds": (None if config.attribute_thresholds is None
                                 else [float(t) for t in config.attribute_thresholds]),
        "image_processor": image_processor.to_dict(),
        "config": {key: value for key, value in config.to_dict().items()
                   if key not in OWN_KEYS + DERIVED_FIELDS},
        "precision": precision,
        "dataset": config.dataset,
        "version": __version__,
    }
    return {PREFIX + key: value if key in PLAIN_KEYS else json.dumps(value) for key, value in values.items()}


def read_metadata(props: Mapping[str, str], source: str):
    """``(config, image_processor, precision)`` from the metadata of the file ``source``:
    the model's PromptPARConfig with the attributes, sentences and thresholds of their own
    keys (checked by the config's own rules), and the image processor. ``ValueError``
    naming the file when the metadata is missing or malformed."""
    from ..image_processing import PromptPARImageProcessor
    from ..modeling import PromptPARConfig

    missing = [PREFIX + key for key in REQUIRED_KEYS if PREFIX + key not in props]
    if missing:
        raise ValueError(
            f"{source} is not an ONNX model written by par-prompt (its metadata lacks {', '.join(missing)}); "
            "export one with `par-prompt export onnx --model MODEL --out FILE.onnx`."
        )
    if props[PREFIX + "format"] != FORMAT_VERSION:
        raise ValueError(
            f"{source} uses par-prompt ONNX metadata format {props[PREFIX + 'format']!r}, but this par-prompt reads "
            f"format {FORMAT_VERSION!r}; export the model again with this version, or upgrade par-prompt."
        )
    values = {}
    for key in REQUIRED_KEYS[1:-1] + ("dataset",):
        text = props.get(PREFIX + key, "null")
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{source}: the metadata {PREFIX + key} is not valid JSON ({error}).") from None
    precision = props[PREFIX + "precision"]
    if precision not in PRECISIONS:
        raise ValueError(f"{source}: the metadata {PREFIX}precision is {precision!r}, not one of {PRECISIONS}.")
    for key in ("image_processor", "config"):
        if not isinstance(values[key], dict):
            raise ValueError(f"{source}: the metadata {PREFIX}{key} is not a JSON object.")
    rest = {key: value for key, value in values["config"].items() if key not in OWN_KEYS + DERIVED_FIELDS}
    try:
        config = PromptPARConfig.from_dict({**rest, **{key: values[key] for key in OWN_KEYS}})
        processor = PromptPARImageProcessor.from_dict(values["image_processor"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: its par-prompt metadata is invalid: {error}") from None
    if not config.attributes:
        raise ValueError(f"{source}: the metadata {PREFIX}attributes is empty.")
    return config, processor, precision
