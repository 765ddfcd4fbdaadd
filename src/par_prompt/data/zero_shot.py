"""PETA-ZS and RAP-ZS: the zero-shot splits of Jia et al. (2021), "Rethinking of PAR".

In these splits no pedestrian identity of the test set appears in training. They are
distributed as pickled split files, loaded here only through the restricted unpickler
of :mod:`par_prompt.data.safe_pickle` (never with plain ``pickle.load``).

Expected layout of ``src``::

    dataset_zs_run{k}.pkl     k = ``partition`` (default 0); an EasyDict with
        image_name            list of N image file names
        label                 N×A numeric array of 0/1 (2 = uncertain, kept)
        attr_name             list of A attribute names
        label_idx.eval        (optional) column indices of the evaluated attributes;
                              without ``label_idx`` every column is evaluated
        partition             dict with ``train``, ``val``, ``test`` (and ``trainval``)
                              arrays of 0-based row indices; a list of arrays is read
                              as one entry per partition and its first entry is used
        root, description,    ignored (``root`` is a path on the authors' machine)
        weight_train, ...
    images/                   PETA-ZS images (PETA's ``00001.png`` ...)
    RAP_dataset/              RAP-ZS images (RAPv2's)

The evaluated attributes must number 35 (PETA-ZS) or 53 (RAP-ZS: RAPv2's 54 without
``Age46-60``). Splits: train / validation / test from ``partition.train`` / ``val`` /
``test``. ``trainval`` is their union and is not stored twice (concatenate the two
splits); any further named partition in the file becomes an extra split of that name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .common import Annotation, ParDataError, check_label_matrix, find_file, find_image_root, select_rows
from .safe_pickle import load_split_pickle

logger = logging.getLogger(__name__)

#: name -> (number of evaluated attributes, sentence table, image directories)
ZERO_SHOT = {
    "peta_zs": (35, "peta", ("images",)),
    "rap_zs": (53, "rapv2", ("RAP_dataset",)),
}
_STANDARD = {"train": "train", "val": "validation", "test": "test"}
_SKIPPED = {"trainval"}


def _field(blob: Mapping, name: str, path: Path) -> Any:
    if name not in blob:
        raise ParDataError(f"{path}: field {name!r} is missing; the file holds {sorted(map(str, blob))}")
    return blob[name]


def _indices(value: Any, where: str, path: Path, size: int) -> np.ndarray:
    if isinstance(value, list) and value and all(isinstance(v, np.ndarray) for v in value):
        logger.info("%s: %s holds %d partitions; using the first", path, where, len(value))
        value = value[0]
    array = np.asarray(value)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ParDataError(
            f"{path}: {where} should be a 1-D array of row indices, got {array.dtype} {array.shape}"
        )
    if array.size and (array.min() < 0 or array.max() >= size):
        raise ParDataError(f"{path}: {where} holds indices outside 0..{size - 1}")
    return array.astype(np.int64)


def read_zero_shot(name: str, src: Path, partition: int = 0) -> Annotation:
    """Read ``dataset_zs_run{partition}.pkl`` for ``name`` in ``ZERO_SHOT``."""
    from par_prompt.sentences import expand_attributes

    expected, table, image_dirs = ZERO_SHOT[name]
    if partition < 0:
        raise ParDataError(f"partition must be >= 0, got {partition}")
    path = find_file(src, [f"dataset_zs_run{partition}.pkl"], f"{name} split file for partition {partition}")
    blob = load_split_pickle(path)
    if not isinstance(blob, Mapping):
        raise ParDataError(f"{path}: expected a dict-like split description, got {type(blob).__name__}")

    names = [str(n) for n in _field(blob, "image_name", path)]
    raw_names = [str(n) for n in _field(blob, "attr_name", path)]
    raw = np.asarray(_field(blob, "label", path))
    if raw.ndim != 2 or raw.shape[1] != len(raw_names):
        raise ParDataError(
            f"{path}: the label matrix has shape {raw.shape} but attr_name has {len(raw_names)} names"
        )
    if raw.shape[0] != len(names):
        raise ParDataError(
            f"{path}: the label matrix has {raw.shape[0]} rows but image_name lists {len(names)}"
        )
    label_idx = blob.get("label_idx")
    if isinstance(label_idx, Mapping) and "eval" in label_idx:
        columns = np.asarray(list(label_idx["eval"]), dtype=np.int64)
        if columns.size and (columns.min() < 0 or columns.max() >= len(raw_names)):
            raise ParDataError(f"{path}: label_idx.eval holds indices outside 0..{len(raw_names) - 1}")
    else:
        columns = np.arange(len(raw_names))
    if columns.size != expected:
        raise ParDataError(f"{path}: {name} evaluates {expected} attributes, the file selects {columns.size}")
    attributes = [raw_names[i] for i in columns]
    labels = check_label_matrix(raw[:, columns], len(attributes), f"{path} field 'label'")

    parts = _field(blob, "partition", path)
    if not isinstance(parts, Mapping):
        raise ParDataError(
            f"{path}: 'partition' should be a dict of index arrays, got {type(parts).__name__}"
        )
    root = find_image_root(src, image_dirs, names)
    splits = {}
    for key in ("train", "val", "test"):
        rows = _indices(_field(parts, key, path), f"partition.{key}", path, len(names))
        splits[_STANDARD[key]] = select_rows(labels, names, rows, root)
    for key, value in parts.items():
        if key not in _STANDARD and key not in _SKIPPED:
            rows = _indices(value, f"partition.{key}", path, len(names))
            splits[str(key)] = select_rows(labels, names, rows, root)
    return Annotation(name, attributes, expand_attributes(attributes, dataset=table), splits, path, partition)


def read_peta_zs(src: Path, partition: int = 0) -> Annotation:
    """PETA-ZS (35 attributes)."""
    return read_zero_shot("peta_zs", src, partition)


def read_rap_zs(src: Path, partition: int = 0) -> Annotation:
    """RAP-ZS (53 attributes)."""
    return read_zero_shot("rap_zs", src, partition)
