"""``convert(name, src, out)``: a PAR benchmark's downloaded files -> a ``DatasetDict`` on disk.

Each benchmark has one reader module that documents the file layout it expects:

=============  =====================================  ============================
name           reader                                 partitions
=============  =====================================  ============================
``pa100k``     :mod:`par_prompt.data.pa100k`           1 (80k / 10k / 10k)
``peta``       :mod:`par_prompt.data.peta`             5 (9500 / 1900 / 7600)
``rapv1``      :mod:`par_prompt.data.rap`              5 (validation derived, see there)
``rapv2``      :mod:`par_prompt.data.rap`              5
``peta_zs``    :mod:`par_prompt.data.zero_shot`        one split file per partition
``rap_zs``     :mod:`par_prompt.data.zero_shot`        one split file per partition
``wider``      :mod:`par_prompt.data.wider`            1
=============  =====================================  ============================

Writing (checks, skip options, atomic output) is shared: see
:func:`par_prompt.data.common.write_annotation`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from .common import ParDataError, write_annotation

if TYPE_CHECKING:  # pragma: no cover
    import datasets

#: dataset name -> "module:function" of its reader (imported on use)
_READERS = {
    "pa100k": "pa100k:read_pa100k",
    "peta": "peta:read_peta",
    "rapv1": "rap:read_rapv1",
    "rapv2": "rap:read_rapv2",
    "peta_zs": "zero_shot:read_peta_zs",
    "rap_zs": "zero_shot:read_rap_zs",
    "wider": "wider:read_wider",
}

#: The names :func:`convert` accepts.
KNOWN_DATASETS: tuple[str, ...] = tuple(_READERS)


def _reader(name: str):
    if name not in _READERS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(KNOWN_DATASETS)}")
    module, function = _READERS[name].split(":")
    return getattr(importlib.import_module(f".{module}", __package__), function)


def convert(
    name: str,
    src: str | Path,
    out: str | Path,
    partition: int = 0,
    skip_missing: bool = False,
    skip_corrupt: bool = False,
    overwrite: bool = False,
) -> datasets.DatasetDict:
    """Convert benchmark ``name`` from the files in ``src`` into a ``DatasetDict`` at ``out``.

    Args:
        name: one of :data:`KNOWN_DATASETS` (anything else: ``ValueError`` listing them).
        src: directory holding the files as downloaded (layout: the reader's docstring).
        out: output directory, written atomically (no partial output on any error).
        partition: which of the benchmark's partitions to convert (0-based).
        skip_missing: skip images listed in the annotations but absent on disk (the
            count is logged) instead of failing.
        skip_corrupt: skip images that cannot be decoded (the count is logged) instead
            of failing.
        overwrite: replace an existing ``out`` (only once the new one is complete).

    Returns:
        The data set, loaded back from ``out``; the attribute names and sentences are in
        its metadata (read them with :func:`par_prompt.data.load`).
    """
    reader = _reader(name)
    if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
        raise ParDataError(f"partition must be an integer >= 0, got {partition!r}")
    src = Path(src)
    if not src.is_dir():
        raise ParDataError(f"source directory not found: {src}")
    annotation = reader(src, partition)
    return write_annotation(
        annotation, out, skip_missing=skip_missing, skip_corrupt=skip_corrupt, overwrite=overwrite
    )
