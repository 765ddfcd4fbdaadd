"""``convert(name, src, out)``: a PAR data set's files -> a ``DatasetDict`` on disk.

Each kind of input has one reader module that documents the file layout it expects
(``par-prompt convert --help`` prints those layouts):

==============  =====================================  ==================================
name            reader                                 ``--src`` / partitions
==============  =====================================  ==================================
``pa100k``      :mod:`par_prompt.data.pa100k`           folder; 1 (80k / 10k / 10k)
``peta``        :mod:`par_prompt.data.peta`             folder; 5 (9500 / 1900 / 7600)
``rapv1``       :mod:`par_prompt.data.rap`              folder; 5 (validation derived)
``rapv2``       :mod:`par_prompt.data.rap`              folder; 5
``peta_zs``     :mod:`par_prompt.data.zero_shot`        folder; one split file per partition
``rap_zs``      :mod:`par_prompt.data.zero_shot`        folder; one split file per partition
``wider``       :mod:`par_prompt.data.wider`            folder; 1
``csv``         :mod:`par_prompt.data.csv_table`        a CSV file (your own data); 1
``rethinking``  :mod:`par_prompt.data.rethinking`       a Rethinking_of_PAR / OpenPAR pickle
==============  =====================================  ==================================

Names are case-insensitive, and ``-`` / ``_`` / spaces in them are ignored (``PA100K``,
``PETA-ZS``). Writing (checks, skip options, safe output) is shared: see
:func:`par_prompt.data.writer.write_annotation` and :mod:`par_prompt.data.output`.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from .common import ParDataError

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
    "csv": "csv_table:read_csv_table",
    "rethinking": "rethinking:read_rethinking",
}
#: The readers whose ``--src`` is a file rather than a folder.
_FILE_SOURCES = ("csv", "rethinking")

#: The names :func:`convert` accepts.
KNOWN_DATASETS: tuple[str, ...] = tuple(_READERS)


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", str(name)).lower()


def normalize_name(name: str) -> str:
    """The converter name for ``name``, ignoring case, ``-``, ``_`` and spaces."""
    for known in KNOWN_DATASETS:
        if _key(known) == _key(name):
            return known
    raise ParDataError(f"unknown dataset {name!r}; known datasets: {', '.join(KNOWN_DATASETS)}")


def reader_module(name: str):
    """The module of converter ``name`` (its docstring documents the expected files)."""
    module = _READERS[normalize_name(name)].split(":")[0]
    return importlib.import_module(f".{module}", __package__)


def _reader(name: str):
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
    *,
    images: str | Path | None = None,
    sentences: str | Path | None = None,
    seed: int | None = None,
) -> datasets.DatasetDict:
    """Convert data set ``name`` from the files in ``src`` into a ``DatasetDict`` at ``out``.

    Args:
        name: one of :data:`KNOWN_DATASETS`, in any case (anything else: ``ParDataError``
            listing them).
        src: the folder holding the files as downloaded, or the file itself for ``csv``
            and ``rethinking`` (layouts: the readers' docstrings).
        out: output directory. It must not be or contain any input; an existing one is
            only replaced with ``overwrite`` and only if it is an earlier conversion
            (see :mod:`par_prompt.data.output`). Written atomically: no partial output
            on any error.
        partition: which of the benchmark's partitions to convert (0-based).
        skip_missing: skip images listed in the annotations but absent on disk (the
            count is logged) instead of failing.
        skip_corrupt: skip images that cannot be decoded or are no regular files (the
            count is logged) instead of failing.
        overwrite: replace an earlier conversion at ``out`` (only once the new one is
            complete).
        images: the folder the image names are relative to (default: found in ``src``;
            for ``csv`` the CSV's folder; for ``rethinking`` next to the pickle). Every
            image must lie inside it (or inside ``src`` when it is not given).
        sentences: a file with one sentence per attribute replacing the built-in ones
            (see :func:`par_prompt.data.common.read_sentences_file`).
        seed: ``csv`` only: the seed of the random split of a table without a
            ``split`` column (default 0).

    Returns:
        The data set, loaded back from ``out``; the attribute names and sentences are in
        its metadata (read them with :func:`par_prompt.data.load`).
    """
    from .common import read_sentences_file
    from .output import check_output
    from .writer import write_annotation

    key = normalize_name(name)
    reader = _reader(key)
    if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
        raise ParDataError(f"partition must be an integer >= 0, got {partition!r}")
    src = Path(src)
    if key in _FILE_SOURCES:
        from .files import check_regular

        check_regular(src, f"{key} source file")
    elif not src.is_dir():
        raise ParDataError(f"source directory not found: {src}")
    options = {}
    if images is not None:
        images = Path(images)
        if not images.is_dir():
            raise ParDataError(f"image folder not found: {images}")
        options["images"] = images
    if seed is not None:
        if key != "csv":
            raise ParDataError(f"seed only applies to the csv converter (its random split), not to {key}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ParDataError(f"seed must be an integer, got {seed!r}")
        options["seed"] = seed
    inputs = [p for p in (src, images, sentences) if p is not None]
    check_output(out, inputs, overwrite)  # before reading anything: fail fast, lose nothing
    annotation = reader(src, partition, **options)
    if sentences is not None:
        annotation.sentences = read_sentences_file(Path(sentences), annotation.attributes)
    return write_annotation(
        annotation, out, skip_missing=skip_missing, skip_corrupt=skip_corrupt, overwrite=overwrite, inputs=inputs
    )
