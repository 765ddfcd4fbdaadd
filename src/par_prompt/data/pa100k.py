"""PA100K (Liu et al., ICCV 2017): 100,000 images, 26 attributes, one official split.

Expected layout of ``src``::

    annotation.mat            MATLAB v5 file with these top-level variables:
        attributes            26×1 cell of strings: attribute names, in label-column order
        train_images_name     80000×1 cell of strings: image file names ("000001.jpg")
        val_images_name       10000×1 cell
        test_images_name      10000×1 cell
        train_label           80000×26 numeric (uint8) matrix of 0/1
        val_label             10000×26
        test_label            10000×26
    data/                     the images (``release_data/release_data/``,
                              ``release_data/`` or ``src`` itself are also searched)

Splits: train / validation / test = 80k / 10k / 10k, exactly as listed in the file.
Attributes keep the file's order (the public preprocessing scripts reorder them into
body-part groups only for display; order does not matter to the model or metrics).
There is a single partition: ``partition`` must be 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._mat import load_mat, strings, top_level
from .common import Annotation, ParDataError, check_label_matrix, find_file, find_image_root, select_rows

NUM_ATTRIBUTES = 26
IMAGE_DIRS = ("data", "release_data/release_data", "release_data")
_SPLIT_FIELDS = {"train": "train", "validation": "val", "test": "test"}


def read_pa100k(src: Path, partition: int = 0, images: Path | None = None) -> Annotation:
    """Read PA100K's ``annotation.mat`` (layout in the module docstring)."""
    from par_prompt.sentences import expand_attributes

    if partition != 0:
        raise ParDataError(f"pa100k has a single official split; partition must be 0, got {partition}")
    path = find_file(src, ["annotation.mat", "annotation/annotation.mat"], "PA100K annotation.mat")
    mat = load_mat(path)
    attributes = strings(top_level(mat, "attributes", path), "attributes", path)
    if len(attributes) != NUM_ATTRIBUTES:
        raise ParDataError(
            f"{path}: PA100K has {NUM_ATTRIBUTES} attributes, 'attributes' lists {len(attributes)}"
        )

    columns: dict[str, tuple[list[str], np.ndarray]] = {}
    for split, prefix in _SPLIT_FIELDS.items():
        names = strings(top_level(mat, f"{prefix}_images_name", path), f"{prefix}_images_name", path)
        labels = check_label_matrix(
            top_level(mat, f"{prefix}_label", path), len(attributes), f"{path} field '{prefix}_label'"
        )
        if labels.shape[0] != len(names):
            raise ParDataError(
                f"{path}: '{prefix}_label' has {labels.shape[0]} rows but '{prefix}_images_name' "
                f"lists {len(names)} images"
            )
        columns[split] = (names, labels)

    root = find_image_root(src, IMAGE_DIRS, columns["train"][0], images)
    splits = {
        split: select_rows(labels, names, np.arange(len(names)), root)
        for split, (names, labels) in columns.items()
    }
    return Annotation(
        "pa100k", attributes, expand_attributes(attributes, dataset="pa100k"), splits, path,
        image_root=images or src,
    )
