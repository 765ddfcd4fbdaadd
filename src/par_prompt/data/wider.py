"""WIDER Attribute (Li et al., ECCV 2016): 14 attributes on person boxes in scene images.

Expected layout of ``src`` (the JSON files may also sit in ``Anno/``, ``Annotations/``
or ``wider_attribute_annotation/``)::

    wider_attribute_trainval.json
    wider_attribute_test.json
        {"images": [{"file_name": "train/0--Parade/0_Parade_marchingband_1_5.jpg",
                     "scene_id": 0,
                     "targets": [{"attribute": [14 values in {1, -1, 0}],
                                  "bbox": [x, y, width, height]}, ...]}, ...],
         "attribute_id_map": {"0": "Male", "1": "longHair", ...},
         "scene_id_map": {"0": "Parade", ...}}
    Image/train/..., Image/val/..., Image/test/...   (``file_name`` is relative to
                                                      ``Image/``; ``src`` is also searched)

Every target (person) is one sample: its box (in the stored pixels' coordinates; the
crop is then turned upright by the photo's EXIF orientation), clipped to the image, is cropped and
stored re-encoded (JPEG quality 95; PNG for modes JPEG cannot hold) under the path
``"<base name of file_name>#<target index>"`` (``datasets`` keeps base names only). A
box with no area inside the image is skipped and counted in the log.

Labels: 1 -> 1 (positive), -1 -> 0 (negative), 0 -> 2 (unspecified, i.e. uncertain).
Each value must be exactly the JSON integer 1, -1 or 0: ``0.5``, ``1.0``, ``true`` or
``"1"`` are errors naming the entry, as is any field of the wrong JSON type.
Splits: the trainval file's ``train/...`` images -> train, its ``val/...`` images ->
validation, the test file -> test. Attribute names come from ``attribute_id_map``
(ordered by id), sentences from :data:`WIDER_SENTENCES` (a template for other names).
There is a single partition: ``partition`` must be 0.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .common import Annotation, ParDataError, Record, find_file, find_image_root

NUM_ATTRIBUTES = 14
IMAGE_DIRS = ("Image",)
_JSON_DIRS = ("", "Anno/", "Annotations/", "wider_attribute_annotation/")
_VALUE_MAP = {1: 1, -1: 0, 0: 2}

#: lower-cased WIDER attribute name -> sentence
WIDER_SENTENCES = {
    "male": "A male person",
    "longhair": "A person with long hair",
    "sunglass": "A person wearing sunglasses",
    "sunglasses": "A person wearing sunglasses",
    "hat": "A person wearing a hat",
    "tshirt": "A person wearing a T-shirt",
    "tshiirt": "A person wearing a T-shirt",  # the spelling of some releases
    "longsleeve": "A person wearing long sleeves",
    "formal": "A person in formal clothes",
    "shorts": "A person wearing shorts",
    "jeans": "A person wearing jeans",
    "longpants": "A person wearing long pants",
    "skirt": "A person wearing a skirt",
    "facemask": "A person wearing a face mask",
    "logo": "A person whose clothes have a logo",
    "stripe": "A person whose clothes have stripes",
}


def wider_sentences(names: list[str]) -> list[str]:
    """A sentence per WIDER attribute; names outside the table use the shared template."""
    from par_prompt.sentences import template_sentence

    return [
        WIDER_SENTENCES.get(n.lower().replace("-", "").replace("_", "")) or template_sentence(n)
        for n in names
    ]


def _load_json(path: Path) -> Mapping:
    from .files import read_text

    try:
        blob = json.loads(read_text(path, "annotation file"))
    except ValueError as error:
        if isinstance(error, ParDataError):
            raise
        raise ParDataError(f"cannot read {path} as JSON: {error}") from error
    if not isinstance(blob, Mapping):
        raise ParDataError(f"{path}: expected a JSON object at the top level, got {_json_type(blob)}")
    return blob


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type (for messages)."""
    if value is None:
        return "null"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)  # fmt: skip


def _field(blob: Mapping, name: str, where: str, path: Path, kind: type | tuple[type, ...] | None = None) -> Any:
    """``blob[name]``, which must exist (and be of JSON type ``kind`` when given)."""
    if name not in blob:
        raise ParDataError(f"{path}: field {name!r} is missing from {where}")
    value = blob[name]
    if kind is not None and not isinstance(value, kind):
        wanted = {list: "a list", dict: "an object", str: "a string"}
        expected = " or ".join(wanted.get(k, k.__name__) for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ParDataError(f"{path}: {where}.{name} should be {expected}, got {_json_type(value)}")
    return value


def _number(value: Any) -> bool:
    return type(value) in (int, float) and np.isfinite(value)


def _attribute_names(blob: Mapping, path: Path) -> list[str]:
    id_map = _field(blob, "attribute_id_map", "the top level", path, dict)
    items = []
    for key, name in id_map.items():
        if not key.isdigit() or not isinstance(name, str) or not name.strip():
            raise ParDataError(
                f"{path}: attribute_id_map should map integer ids to names, got {key!r}: {name!r}"
            )
        items.append((int(key), name))
    items.sort()
    if [k for k, _ in items] != list(range(len(items))):
        raise ParDataError(f"{path}: attribute_id_map ids should be 0..{len(items) - 1}")
    return [name for _, name in items]


def _labels(values: Any, where: str, path: Path, num_attributes: int) -> np.ndarray:
    """WIDER's 1 / -1 / 0 as 1 / 0 / 2; anything else (0.5, true, "1") is an error."""
    if not isinstance(values, list):
        raise ParDataError(f"{path}: {where}.attribute should be a list, got {_json_type(values)}")
    if len(values) != num_attributes:
        raise ParDataError(
            f"{path}: {where} has {len(values)} attribute values but attribute_id_map has "
            f"{num_attributes} names"
        )
    for k, value in enumerate(values):
        if type(value) is not int or value not in _VALUE_MAP:  # bool is not int here; 1.0 neither
            raise ParDataError(
                f"{path}: {where}.attribute[{k}] is {json.dumps(value)}; WIDER attribute values must be "
                "the integers 1 (positive), -1 (negative) or 0 (unspecified)"
            )
    return np.array([_VALUE_MAP[v] for v in values], dtype=np.int8)


def _records(blob: Mapping, path: Path, root: Path, num_attributes: int) -> list[tuple[str, Record]]:
    """(file name, record) for every target of every image."""
    out = []
    for i, image in enumerate(_field(blob, "images", "the top level", path, list)):
        if not isinstance(image, dict):
            raise ParDataError(f"{path}: images[{i}] should be an object, got {_json_type(image)}")
        file_name = _field(image, "file_name", f"images[{i}]", path, str)
        for j, target in enumerate(_field(image, "targets", f"images[{i}] ({file_name})", path, list)):
            where = f"images[{i}].targets[{j}] ({file_name})"
            if not isinstance(target, dict):
                raise ParDataError(f"{path}: {where} should be an object, got {_json_type(target)}")
            labels = _labels(_field(target, "attribute", where, path), where, path, num_attributes)
            bbox = _field(target, "bbox", where, path)
            if not isinstance(bbox, list) or len(bbox) != 4 or not all(_number(v) for v in bbox):
                raise ParDataError(
                    f"{path}: {where}: bbox should be a list of 4 numbers [x, y, width, height], got "
                    f"{json.dumps(bbox)}"
                )
            x, y, w, h = (float(v) for v in bbox)
            record = Record(f"{file_name}#{j}", root / file_name, labels, (x, y, x + w, y + h))
            out.append((file_name, record))
    return out


def read_wider(src: Path, partition: int = 0, images: Path | None = None) -> Annotation:
    """Read the WIDER Attribute JSON files (layout in the module docstring)."""
    if partition != 0:
        raise ParDataError(f"wider has a single official split; partition must be 0, got {partition}")
    trainval_path = find_file(
        src, [d + "wider_attribute_trainval.json" for d in _JSON_DIRS], "wider_attribute_trainval.json"
    )
    test_path = find_file(
        src, [d + "wider_attribute_test.json" for d in _JSON_DIRS], "wider_attribute_test.json"
    )
    trainval, test = _load_json(trainval_path), _load_json(test_path)
    attributes = _attribute_names(trainval, trainval_path)
    if _attribute_names(test, test_path) != attributes:
        raise ParDataError(f"{test_path}: attribute_id_map differs from the one in {trainval_path}")
    if len(attributes) != NUM_ATTRIBUTES:
        raise ParDataError(
            f"{trainval_path}: WIDER Attribute has {NUM_ATTRIBUTES} attributes, attribute_id_map "
            f"has {len(attributes)}"
        )

    listed = trainval.get("images")
    first_names = [
        image["file_name"] for image in (listed if isinstance(listed, list) else [])[:5]
        if isinstance(image, dict) and isinstance(image.get("file_name"), str)
    ]
    root = find_image_root(src, IMAGE_DIRS, first_names, images)
    splits: dict[str, list[Record]] = {"train": [], "validation": []}
    for file_name, record in _records(trainval, trainval_path, root, len(attributes)):
        if file_name.startswith("train/"):
            splits["train"].append(record)
        elif file_name.startswith("val/"):
            splits["validation"].append(record)
        else:
            raise ParDataError(
                f"{trainval_path}: file_name {file_name!r} starts with neither 'train/' nor 'val/', "
                "so its split is unknown"
            )
    splits["test"] = [record for _, record in _records(test, test_path, root, len(attributes))]
    return Annotation(
        "wider", attributes, wider_sentences(attributes), splits, trainval_path, image_root=images or src
    )
