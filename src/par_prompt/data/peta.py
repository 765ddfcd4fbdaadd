"""PETA (Deng et al., ACM MM 2014): 19,000 images, the 35-attribute protocol, 5 partitions.

Expected layout of ``src`` (the package distributed with DeepMAR / Rethinking_of_PAR)::

    PETA.mat                  MATLAB v5 file with one top-level struct ``peta`` (1×1);
                              a field named otherwise is read from its position
                              (in brackets), as the official preprocessing does:
        data                  [0] 19000×109 numeric: columns 1-4 (MATLAB) are ids, columns
                              5..109 the 0/1 labels of the 105 attributes, in the order
                              of ``attribute``
        attribute             [1] 105×1 cell of strings
        selected_attribute    35 MATLAB column indices into ``data`` of the evaluated
                              attributes (5..39 in the released file, i.e. the first 35
                              attributes); optional, the first 35 attributes when absent
        partion_attribute     [3] (sic; ``partition_attribute`` is accepted too) 5×1
                              cell; each cell a 1×1 struct with ``train``, ``val``,
                              ``test``: column vectors of 1-based row indices into
                              ``data`` (9500 / 1900 / 7600 per partition); three
                              fields of other names are read by position
    images/00001.png ...      row i of ``data`` (0-based) is ``f"{i + 1:05d}.png"``

``selected_attribute`` is read as column indices of ``data`` (attribute index + 4, the
form the released file uses); if any value is below 5 it cannot be such a column and
the vector is read as 1-based attribute indices instead. ``partition`` (0-4) picks one
of the five random partitions. The four id columns are not used.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ._mat import MatStruct, index_vector, load_mat, matrix, strings, top_level
from .common import Annotation, ParDataError, check_label_matrix, find_file, find_image_root, select_rows

logger = logging.getLogger(__name__)

NUM_ATTRIBUTES = 35
ID_COLUMNS = 4
IMAGE_DIRS = ("images",)


def _selected_columns(peta: MatStruct, num_raw: int, path: Path) -> np.ndarray:
    """0-based attribute indices of the evaluated attributes."""
    if not peta.has("selected_attribute"):
        logger.info("%s has no selected_attribute; using the first %d attributes", path, NUM_ATTRIBUTES)
        return np.arange(min(NUM_ATTRIBUTES, num_raw))
    raw = np.asarray(peta.field("selected_attribute")).ravel()
    if not np.issubdtype(raw.dtype, np.number):
        raise ParDataError(f"{path}: peta.selected_attribute should hold numbers, got dtype {raw.dtype}")
    if raw.size and raw.min() > ID_COLUMNS:  # MATLAB columns of `data`
        return index_vector(raw - ID_COLUMNS, "peta.selected_attribute", path, num_raw)
    return index_vector(raw, "peta.selected_attribute", path, num_raw)


def read_peta(src: Path, partition: int = 0, images: Path | None = None) -> Annotation:
    """Read ``PETA.mat`` (layout in the module docstring) for one of its 5 partitions."""
    from par_prompt.sentences import expand_attributes

    path = find_file(src, ["PETA.mat"], "PETA.mat")
    peta = MatStruct(top_level(load_mat(path), "peta", path), "peta", path)
    data = matrix(peta.field("data", position=0), "peta.data", path)
    raw_names = strings(peta.field("attribute", position=1), "peta.attribute", path)
    if data.shape[1] - ID_COLUMNS != len(raw_names):
        raise ParDataError(
            f"{path}: peta.data has {data.shape[1] - ID_COLUMNS} label columns (after {ID_COLUMNS} id "
            f"columns) but peta.attribute has {len(raw_names)} names"
        )
    selected = _selected_columns(peta, len(raw_names), path)
    if selected.size != NUM_ATTRIBUTES:
        raise ParDataError(
            f"{path}: the PETA protocol evaluates {NUM_ATTRIBUTES} attributes, "
            f"peta.selected_attribute has {selected.size}"
        )
    attributes = [raw_names[i] for i in selected]
    labels = check_label_matrix(
        data[:, ID_COLUMNS:][:, selected], len(attributes), f"{path} field 'peta.data'"
    )

    part = peta.partition(partition, "partion_attribute", "partition_attribute", position=3)
    rows = part.index_fields(
        {"train": ("train",), "validation": ("val",), "test": ("test",)}, data.shape[0]
    )
    names = [f"{i + 1:05d}.png" for i in range(data.shape[0])]
    root = find_image_root(src, IMAGE_DIRS, names, images)
    splits = {split: select_rows(labels, names, indices, root) for split, indices in rows.items()}
    return Annotation(
        "peta", attributes, expand_attributes(attributes, dataset="peta"), splits, path, partition,
        image_root=images or src,
    )
