"""What every converter shares: records, label and split-name checks, metadata.

A converter reads a benchmark's annotation files into an :class:`Annotation` (attribute
names, sentences, the folder its images must lie in and, per split, a list of
:class:`Record`: image file + label row). :func:`par_prompt.data.writer.write_annotation`
then turns it into a ``datasets.DatasetDict`` on disk.

Metadata: the attribute names and sentences are a JSON object under the key
``"par_prompt"`` in each split's ``DatasetInfo.description`` (see
:mod:`par_prompt.data.pardata` for why there and how it reaches the Hub).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import datasets

logger = logging.getLogger(__name__)

#: The standard split names, in order.
SPLITS = ("train", "validation", "test")
#: Label value of an uncertain entry (weight 0 in the loss, left out of the metrics).
UNCERTAIN = 2
#: The only label values a data set may hold.
LABEL_VALUES = (0, 1, UNCERTAIN)
#: Key of the metadata object inside ``DatasetInfo.description``.
METADATA_KEY = "par_prompt"
METADATA_VERSION = 1


class ParDataError(ValueError):
    """Bad PAR input: a missing field or file, inconsistent labels, an empty split, ..."""


@dataclass(frozen=True)
class Record:
    """One sample before conversion.

    ``name`` identifies the image in messages and, reduced to its base name, is stored
    as the image's ``path`` in the data set; ``path`` is the file on disk; ``labels`` is a row of
    int8 in {0, 1, 2}; ``box`` an optional crop ``(left, upper, right, lower)`` in pixels.
    """

    name: str
    path: Path
    labels: np.ndarray
    box: tuple[float, float, float, float] | None = None


@dataclass
class Annotation:
    """A benchmark read from its files, ready to be written.

    ``image_root`` is the folder every image must lie in (after resolving symbolic links
    and ``..``): the ``--src`` folder, or the image folder the user named.
    """

    name: str
    attributes: list[str]
    sentences: list[str]
    splits: dict[str, list[Record]]
    source: Path
    partition: int = 0
    image_root: Path = field(kw_only=True)


# -------------------------------------------------------------------------- split names

#: A split name: word characters, dots between them (the rule ``datasets`` applies).
_SPLIT_NAME = re.compile(r"\w+(\.\w+)*")


def check_split_name(name: object, where: str) -> str:
    """``name`` if it is a plain split name (it becomes a folder name), else :class:`ParDataError`.

    Plain: letters, digits, ``_`` and inner dots, e.g. ``train``, ``query_2``. Absolute
    paths, ``..``, path separators and empty names are refused.
    """
    if not isinstance(name, str) or not _SPLIT_NAME.fullmatch(name):
        raise ParDataError(
            f"{where}: split name {name!r} is not a plain name (letters, digits, '_' and inner dots "
            "only; no path separators, '..' or absolute paths)"
        )
    return name


# ------------------------------------------------------------------------------ layout


def find_file(src: Path, candidates: Sequence[str], what: str) -> Path:
    """The first of ``candidates`` (paths relative to ``src``) that exists; it must be a
    regular file (a FIFO or directory of that name is an error, never opened)."""
    from .files import check_regular

    for candidate in candidates:
        path = src / candidate
        if path.exists():
            check_regular(path, what)
            return path
    raise ParDataError(f"{what} not found in {src}: looked for {list(candidates)}")


def find_image_root(
    src: Path, candidates: Sequence[str], names: Sequence[str], images: Path | None = None
) -> Path:
    """The folder the image names are relative to.

    ``images`` (the user's ``--images``) wins. Otherwise the first candidate directory
    under ``src`` holding one of the first listed images, falling back to the first
    existing candidate (then to ``src``) so that a missing image is reported with a full
    path.
    """
    if images is not None:
        return images
    directories = [src / c for c in candidates if (src / c).is_dir()] + [src]
    for directory in directories:
        if any((directory / name).is_file() for name in names[:5]):
            return directory
    return directories[0]


def select_rows(labels: np.ndarray, names: Sequence[str], indices: np.ndarray, root: Path) -> list[Record]:
    """Records for the given row indices of an (images × attributes) annotation."""
    return [Record(names[i], root / names[i], labels[i]) for i in indices.tolist()]


# ----------------------------------------------------------------------------- labels


def check_label_matrix(labels: Any, num_attributes: int, where: str) -> np.ndarray:
    """Validate a label matrix and return it as int8 of shape ``(rows, num_attributes)``.

    ``where`` names the file/field in error messages. Raises :class:`ParDataError` when
    the matrix is not 2-D, its width differs from the attribute list, or it holds a value
    other than 0, 1 or 2.
    """
    array = np.asarray(labels)
    if array.ndim != 2:
        raise ParDataError(f"{where}: expected a 2-D label matrix, got shape {array.shape}")
    if array.shape[1] != num_attributes:
        raise ParDataError(
            f"{where}: the label matrix has {array.shape[1]} columns but the attribute list "
            f"has {num_attributes} names"
        )
    if array.size:
        if not np.issubdtype(array.dtype, np.number):
            raise ParDataError(f"{where}: labels must be numbers, got dtype {array.dtype}")
        if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
            raise ParDataError(f"{where}: the label matrix holds NaN or infinite values")
        bad = ~np.isin(array, LABEL_VALUES)
        if bad.any():
            values = sorted({float(v) for v in np.unique(array[bad])})[:10]
            raise ParDataError(
                f"{where}: labels must be 0 (negative), 1 (positive) or 2 (uncertain); found {values}"
            )
    return array.astype(np.int8)


def make_features(num_attributes: int) -> datasets.Features:
    """The common schema: ``image`` (``Image()``) and ``labels`` (int8 × N)."""
    from datasets import Features, Image, List, Value

    return Features({"image": Image(), "labels": List(Value("int8"), length=num_attributes)})


# --------------------------------------------------------------------------- metadata


def metadata_dict(
    name: str | None, attributes: Sequence[str], sentences: Sequence[str], **extra: Any
) -> dict:
    """The metadata object stored with a data set (JSON-serialisable)."""
    attributes = [str(a) for a in attributes]
    sentences = [str(s) for s in sentences]
    if len(attributes) != len(sentences):
        raise ParDataError(f"{len(attributes)} attributes but {len(sentences)} sentences")
    if len(set(attributes)) != len(attributes):
        dupes = sorted({a for a in attributes if attributes.count(a) > 1})
        raise ParDataError(f"duplicate attribute names: {dupes}")
    meta = {"version": METADATA_VERSION, "name": name, "attributes": attributes, "sentences": sentences}
    meta.update(extra)
    return meta


def attach_metadata(splits: datasets.DatasetDict, meta: dict) -> datasets.DatasetDict:
    """Store ``meta`` in every split's ``DatasetInfo.description`` (in place; returned)."""
    text = json.dumps({METADATA_KEY: meta}, ensure_ascii=False)
    for split in splits.values():
        split.info.description = text
    return splits


def read_metadata(dataset: datasets.Dataset) -> dict | None:
    """The metadata object of one split, or ``None`` when it carries none."""
    text = getattr(dataset.info, "description", None)
    if not text:
        return None
    try:
        blob = json.loads(text)
    except (TypeError, ValueError):
        return None
    if isinstance(blob, dict) and isinstance(blob.get(METADATA_KEY), dict):
        return blob[METADATA_KEY]
    return None


# --------------------------------------------------------------------------- sentences


def read_sentences_file(path: Path, attributes: Sequence[str]) -> list[str]:
    """One sentence per attribute from ``path``.

    A ``.json`` file holds an object ``{"attribute name": "sentence", ...}`` naming every
    attribute exactly once; any other file holds one sentence per line, in the order of
    the attributes (blank lines are ignored).
    """
    from par_prompt.sentences import resolve_sentences

    from .files import read_text

    text = read_text(path, "sentences file")
    if path.suffix.lower() == ".json":
        try:
            table = json.loads(text)
        except ValueError as error:
            raise ParDataError(f"sentences file {path} is not valid JSON: {error}") from error
        if not isinstance(table, dict):
            raise ParDataError(f"sentences file {path}: expected a JSON object {{attribute: sentence}}")
        missing = [a for a in attributes if a not in table]
        extra = sorted(set(table) - set(attributes))
        if missing or extra:
            raise ParDataError(
                f"sentences file {path}: it must name every attribute exactly once; missing {missing}, "
                f"unknown {extra}"
            )
        sentences = [table[a] for a in attributes]
    else:
        sentences = [line.strip() for line in text.split("\n") if line.strip()]
    try:
        return resolve_sentences(list(attributes), sentences)
    except ValueError as error:
        raise ParDataError(f"sentences file {path}: {error}") from error
