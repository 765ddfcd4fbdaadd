"""RAPv1 (Li et al., 2016) and RAPv2 (Li et al., TIP 2019).

Both ship ``RAP_annotation.mat`` (MATLAB v5; looked up in ``src`` and in
``src/RAP_annotation/``) with one top-level struct ``RAP_annotation`` (1×1), and the
images in ``src/RAP_dataset/`` (or ``src``). Label value 2 (uncertain) is kept as 2.

RAPv1 (41,585 images) -- fields used (by name; when a name is missing, by the position
the official preprocessing reads it from, given in brackets)::

    partion         [0] (sic; ``partition`` accepted) 5×1 cell; each a 1×1 struct with
                    two fields: the train rows (1×33268) and the test rows (1×8317),
                    1-based, read by position whatever the fields are called
                    (``train_index`` / ``test_index`` in the released file)
    label           [1] 41585×92 numeric matrix of 0/1 (2 = uncertain)
    attribute_eng   [3] 92×1 cell of strings: attribute names (the first 51 are evaluated)
    imagesname      [5] 41585×1 cell of strings: image file names

RAPv1 defines no validation split. Ours is derived deterministically from the chosen
partition's ``train_index``: a permutation seeded with the partition number picks
``round(VALIDATION_FRACTION × n)`` of them (10%); they keep their original order and
are removed from train. The test split is the file's ``test_index`` unchanged. (The
public PromptPAR / Rethinking_of_PAR code trains on the whole ``train_index`` and picks
checkpoints on test; we keep test for the final report only.)

RAPv2 (84,928 images) -- fields used::

    name                84928×1 cell of strings: image file names
    attribute           152×1 cell of strings
    data                84928×152 numeric matrix of 0/1 (2 = uncertain)
    selected_attribute  1×54: 1-based indices into ``attribute`` of the evaluated ones
    partition_attribute 1×5 cell (5×1 accepted); each a 1×1 struct with ``train_index``,
                        ``val_index``, ``test_index`` (row vectors of 1-based rows; three
                        fields of other names are read by position in that order)

Attributes keep the file's order (``selected_attribute`` order for RAPv2).
``partition`` (0-4) picks one of the five partitions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._mat import MatStruct, load_mat, matrix, strings, top_level
from .common import Annotation, ParDataError, check_label_matrix, find_file, find_image_root, select_rows

RAPV1_ATTRIBUTES = 51
RAPV2_ATTRIBUTES = 54
VALIDATION_FRACTION = 0.1
IMAGE_DIRS = ("RAP_dataset",)
_MAT_FILES = ("RAP_annotation.mat", "RAP_annotation/RAP_annotation.mat")
#: role -> (field name, its position in RAP_annotation, as the official RAPv1 script reads it)
RAPV1_FIELDS = {"names": ("imagesname", 5), "attributes": ("attribute_eng", 3), "labels": ("label", 1)}
#: RAPv2 fields are read by name only (the official script does the same)
RAPV2_FIELDS = {"names": ("name", None), "attributes": ("attribute", None), "labels": ("data", None)}


def _load(src: Path) -> tuple[MatStruct, Path]:
    path = find_file(src, _MAT_FILES, "RAP_annotation.mat")
    return MatStruct(top_level(load_mat(path), "RAP_annotation", path), "RAP_annotation", path), path


def _read_table(rap: MatStruct, path: Path, fields: dict[str, tuple[str, int | None]]):
    """Image names, all attribute names and the full label matrix, with their shapes checked.

    ``fields`` maps ``names`` / ``attributes`` / ``labels`` to (field name, position
    used when no field has that name).
    """
    (name_field, name_at), (attribute_field, attribute_at), (label_field, label_at) = (
        fields["names"], fields["attributes"], fields["labels"]
    )
    names = strings(rap.field(name_field, position=name_at), f"RAP_annotation.{name_field}", path)
    raw_names = strings(
        rap.field(attribute_field, position=attribute_at), f"RAP_annotation.{attribute_field}", path
    )
    raw = matrix(rap.field(label_field, position=label_at), f"RAP_annotation.{label_field}", path)
    if raw.shape[1] != len(raw_names):
        raise ParDataError(
            f"{path}: RAP_annotation.{label_field} has {raw.shape[1]} columns but {attribute_field} has "
            f"{len(raw_names)} names"
        )
    if raw.shape[0] != len(names):
        raise ParDataError(
            f"{path}: RAP_annotation.{label_field} has {raw.shape[0]} rows but {name_field} lists {len(names)}"
        )
    return names, raw_names, raw


def split_validation(train: np.ndarray, partition: int, fraction: float = VALIDATION_FRACTION):
    """Deterministically move ``round(fraction × n)`` train rows to validation.

    Returns ``(train, validation)``, both in the original order.
    """
    rng = np.random.default_rng(partition)
    count = int(round(fraction * train.size))
    chosen = np.zeros(train.size, dtype=bool)
    chosen[rng.permutation(train.size)[:count]] = True
    return train[~chosen], train[chosen]


def read_rapv1(src: Path, partition: int = 0, images: Path | None = None) -> Annotation:
    """Read RAPv1's ``RAP_annotation.mat`` (layout in the module docstring)."""
    from par_prompt.sentences import expand_attributes

    rap, path = _load(src)
    names, raw_names, raw = _read_table(rap, path, RAPV1_FIELDS)
    if len(raw_names) < RAPV1_ATTRIBUTES:
        raise ParDataError(
            f"{path}: RAPv1 evaluates the first {RAPV1_ATTRIBUTES} attributes, the file has {len(raw_names)}"
        )
    attributes = raw_names[:RAPV1_ATTRIBUTES]
    labels = check_label_matrix(
        raw[:, :RAPV1_ATTRIBUTES], len(attributes), f"{path} field 'RAP_annotation.label'"
    )

    part = rap.partition(partition, "partion", "partition", position=0)
    rows = part.index_fields({"train": ("train_index",), "test": ("test_index",)}, len(names))
    train, validation = split_validation(rows["train"], partition)
    test = rows["test"]
    root = find_image_root(src, IMAGE_DIRS, names, images)
    splits = {
        "train": select_rows(labels, names, train, root),
        "validation": select_rows(labels, names, validation, root),
        "test": select_rows(labels, names, test, root),
    }
    return Annotation(
        "rapv1", attributes, expand_attributes(attributes, dataset="rapv1"), splits, path, partition,
        image_root=images or src,
    )


def read_rapv2(src: Path, partition: int = 0, images: Path | None = None) -> Annotation:
    """Read RAPv2's ``RAP_annotation.mat`` (layout in the module docstring)."""
    from par_prompt.sentences import expand_attributes

    rap, path = _load(src)
    names, raw_names, raw = _read_table(rap, path, RAPV2_FIELDS)
    selected = rap.indices("selected_attribute", len(raw_names))
    if selected.size != RAPV2_ATTRIBUTES:
        raise ParDataError(
            f"{path}: RAPv2 evaluates {RAPV2_ATTRIBUTES} attributes, selected_attribute has {selected.size}"
        )
    attributes = [raw_names[i] for i in selected]
    labels = check_label_matrix(raw[:, selected], len(attributes), f"{path} field 'RAP_annotation.data'")

    part = rap.partition(partition, "partition_attribute")
    rows = part.index_fields(
        {"train": ("train_index",), "validation": ("val_index",), "test": ("test_index",)}, len(names)
    )
    root = find_image_root(src, IMAGE_DIRS, names, images)
    splits = {split: select_rows(labels, names, indices, root) for split, indices in rows.items()}
    return Annotation(
        "rapv2", attributes, expand_attributes(attributes, dataset="rapv2"), splits, path, partition,
        image_root=images or src,
    )
