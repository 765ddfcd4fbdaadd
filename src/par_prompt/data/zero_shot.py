"""PETA-ZS and RAP-ZS: the zero-shot splits of Jia et al. (2021), "Rethinking of PAR".

In these splits no pedestrian identity of the test set appears in training. They are
distributed as pickled split files, loaded here only through the restricted unpickler
of :mod:`par_prompt.data.safe_pickle` (never with plain ``pickle.load``).

Expected layout of ``src``::

    dataset_zs_run{k}.pkl     k = ``partition`` (default 0): a Rethinking_of_PAR data
                              set description, read as ``convert rethinking`` reads
                              one (see :mod:`par_prompt.data.rethinking` for its
                              fields); where ``partition`` lists several arrays per
                              split, the first is used
    images/                   PETA-ZS images (PETA's ``00001.png`` ...)
    RAP_dataset/              RAP-ZS images (RAPv2's)

The evaluated attributes must number 35 (PETA-ZS) or 53 (RAP-ZS: RAPv2's 54 without
``Age46-60``). Splits: train / validation / test from ``partition.train`` / ``val`` /
``test``. ``trainval`` is their union and is not stored twice (concatenate the two
splits); any further named partition in the file becomes an extra split of that name.
The point of these splits is that no test identity is seen in training: the files carry
no identity labels, so what is checked is that no image (row or file) of the test split
is also in train or validation; an overlap is an error.
"""

from __future__ import annotations

from pathlib import Path

from .common import Annotation, ParDataError, find_file

#: name -> (number of evaluated attributes, image directories)
ZERO_SHOT = {
    "peta_zs": (35, ("images",)),
    "rap_zs": (53, ("RAP_dataset",)),
}


def read_zero_shot(name: str, src: Path, partition: int = 0, images: Path | None = None) -> Annotation:
    """Read ``dataset_zs_run{partition}.pkl`` for ``name`` in ``ZERO_SHOT``."""
    from .rethinking import read_description

    expected, image_dirs = ZERO_SHOT[name]
    if partition < 0:
        raise ParDataError(f"partition must be >= 0, got {partition}")
    path = find_file(src, [f"dataset_zs_run{partition}.pkl"], f"{name} split file for partition {partition}")
    # the split file sits in src, so the image folders are looked up next to it
    annotation = read_description(
        path, images=images, name=name, expected_attributes=expected, image_dirs=image_dirs
    )
    annotation.partition = partition
    annotation.image_root = images or src
    return annotation


def read_peta_zs(src: Path, partition: int = 0, images: Path | None = None) -> Annotation:
    """PETA-ZS (35 attributes)."""
    return read_zero_shot("peta_zs", src, partition, images)


def read_rap_zs(src: Path, partition: int = 0, images: Path | None = None) -> Annotation:
    """RAP-ZS (53 attributes)."""
    return read_zero_shot("rap_zs", src, partition, images)
