"""The data set pickles of Rethinking_of_PAR and OpenPAR (``dataset_all.pkl`` and kin).

Both toolkits' preprocessing scripts turn a benchmark into one pickled ``EasyDict``
(``dataset_all.pkl``, ``dataset_zs_run0.pkl``, ``pad.pkl``, ...). It is read here only
through the restricted unpickler of :mod:`par_prompt.data.safe_pickle`: numpy arrays,
plain containers and ``EasyDict``, nothing that can run code.

Expected layout (``convert rethinking --src FILE.pkl [--images DIR]``)::

    FILE.pkl                  an EasyDict with
        image_name            N image file names, relative to the image folder
        label                 N×A numeric array of 0/1 (2 = uncertain, kept)
        attr_name             A attribute names, in label-column order
        label_idx.eval        (optional) the columns of the evaluated attributes, in
                              the order to keep; without it every column is kept
        partition             split name -> array of 0-based row indices, or a list
                              of such arrays, one per partition (``--partition K``
                              picks entry K): ``train`` / ``val`` / ``test``, or
                              ``trainval`` / ``test`` (RAPv1); more names allowed
        description           the benchmark (``pa100k``, ``peta``, ``rap``, ``rap2``,
                              ``wider``, ...): chooses the sentence table
        root                  the image folder on the machine that wrote the file;
                              only its last part is used (see below)
        weight_train, attributes, attr_words, ...   ignored
    images/                   the image folder: ``--images DIR``; by default the
                              folder next to FILE.pkl named like the last part of
                              ``root`` (``images``, ``RAP_dataset``, ``data``, ...),
                              else the folder holding FILE.pkl

Splits: train / validation / test from ``partition.train`` / ``val`` / ``test``. A file
with ``trainval`` and ``test`` only (RAPv1's) gets a validation split drawn from
``trainval`` as ``convert rapv1`` draws it (:func:`par_prompt.data.rap.split_validation`);
``trainval`` is otherwise skipped (it is train + val). Any other key becomes an extra
split of that name; it must be a plain name (letters, digits, ``_``, inner dots).
Attribute names, sentences: ``attr_name`` (after ``label_idx.eval``); sentences from
the table of ``description`` (names outside it get the template), or ``--sentences``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .common import Annotation, ParDataError, check_label_matrix, check_split_name, select_rows
from .safe_pickle import load_split_pickle

logger = logging.getLogger(__name__)

_STANDARD = {"train": "train", "val": "validation", "test": "test"}
_TRAINVAL = "trainval"


def _field(blob: Mapping, name: str, path: Path) -> Any:
    if name not in blob:
        raise ParDataError(f"{path}: field {name!r} is missing; the file holds {sorted(map(str, blob))}")
    return blob[name]


def _strings(value: Any, name: str, path: Path) -> list[str]:
    items = list(value) if isinstance(value, (list, tuple, np.ndarray)) else None
    if items is None or not all(isinstance(item, (str, np.str_)) for item in items):
        raise ParDataError(f"{path}: {name} should be a list of strings, got {type(value).__name__}")
    return [str(item) for item in items]


def _array(value: Any, where: str, path: Path) -> np.ndarray:
    """``value`` as a numpy array; a ragged or non-sequence value is a :class:`ParDataError`."""
    try:
        return np.asarray(list(value) if isinstance(value, range) else value)
    except (ValueError, TypeError) as error:
        raise ParDataError(f"{path}: {where} is not an array ({error})") from error


def _indices(value: Any, where: str, path: Path, size: int, entry: int) -> np.ndarray:
    """Row indices of one split: an array, or entry ``entry`` of a list of arrays."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (np.ndarray, list, range)) for v in value):
        if not 0 <= entry < len(value):
            raise ParDataError(
                f"{path}: partition {entry} requested but {where} holds {len(value)} (0..{len(value) - 1})"
            )
        value = value[entry]
    elif entry:
        raise ParDataError(f"{path}: partition {entry} requested but {where} holds a single partition")
    array = _array(value, where, path)
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        raise ParDataError(
            f"{path}: {where} should be a 1-D array of row indices, got {array.dtype} {array.shape}"
        )
    if array.size and (array.min() < 0 or array.max() >= size):
        raise ParDataError(f"{path}: {where} holds indices outside 0..{size - 1}")
    return array.astype(np.int64)


def default_image_root(path: Path, blob: Mapping) -> Path:
    """The folder next to ``path`` named like the last part of ``blob.root``, else ``path``'s folder."""
    root = blob.get("root")
    if isinstance(root, str) and root.strip():
        candidate = path.parent / Path(root.replace("\\", "/").rstrip("/")).name
        if candidate.name not in ("", ".", "..") and candidate.is_dir():
            return candidate
    return path.parent


def sentence_table(description: Any) -> str | None:
    """The sentence table for a ``description`` (``"rap2"`` -> ``"rapv2"``), or ``None``."""
    from par_prompt.sentences import normalize_dataset_name

    if not isinstance(description, str):
        return None
    try:
        return normalize_dataset_name(description)
    except ValueError:
        return None


def read_description(
    path: Path,
    *,
    entry: int = 0,
    images: Path | None = None,
    name: str | None = None,
    expected_attributes: int | None = None,
    image_dirs: tuple[str, ...] = (),
) -> Annotation:
    """Read a pickled data set description (layout in the module docstring).

    ``entry`` picks the partition where the file lists several; ``images`` is the image
    folder (default: :func:`default_image_root`, or the first of ``image_dirs`` next to
    the file that exists); ``name`` and ``expected_attributes`` are set by the
    zero-shot readers, which know the benchmark.
    """
    from par_prompt.sentences import expand_attributes

    from .rap import split_validation
    from .safe_pickle import UnsafePickleError

    try:
        blob = load_split_pickle(path)
    except UnsafePickleError:
        raise
    except ParDataError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure to parse the file is bad input
        raise ParDataError(f"cannot read {path} as a pickle ({type(error).__name__}: {error})") from error
    if not isinstance(blob, Mapping):
        raise ParDataError(f"{path}: expected a dict-like data set description, got {type(blob).__name__}")

    names = _strings(_field(blob, "image_name", path), "image_name", path)
    raw_names = _strings(_field(blob, "attr_name", path), "attr_name", path)
    raw = _array(_field(blob, "label", path), "label", path)
    if raw.ndim != 2 or raw.shape[1] != len(raw_names):
        raise ParDataError(
            f"{path}: the label matrix has shape {raw.shape} but attr_name has {len(raw_names)} names"
        )
    if raw.shape[0] != len(names):
        raise ParDataError(f"{path}: the label matrix has {raw.shape[0]} rows but image_name lists {len(names)}")
    label_idx = blob.get("label_idx")
    if isinstance(label_idx, Mapping) and "eval" in label_idx:
        columns = _array(label_idx["eval"], "label_idx.eval", path)
        if columns.ndim != 1 or (columns.size and not np.issubdtype(columns.dtype, np.integer)):
            raise ParDataError(f"{path}: label_idx.eval should hold column indices, got {columns.dtype}")
        columns = columns.astype(np.int64)
        if columns.size and (columns.min() < 0 or columns.max() >= len(raw_names)):
            raise ParDataError(f"{path}: label_idx.eval holds indices outside 0..{len(raw_names) - 1}")
    else:
        columns = np.arange(len(raw_names))
    if expected_attributes is not None and columns.size != expected_attributes:
        raise ParDataError(
            f"{path}: {name} evaluates {expected_attributes} attributes, the file selects {columns.size}"
        )
    attributes = [raw_names[i] for i in columns]
    labels = check_label_matrix(raw[:, columns], len(attributes), f"{path} field 'label'")

    parts = _field(blob, "partition", path)
    if not isinstance(parts, Mapping):
        raise ParDataError(f"{path}: 'partition' should be a dict of index arrays, got {type(parts).__name__}")
    for key in parts:
        check_split_name(key, f"{path} partition")
    if images is None:
        found = [path.parent / d for d in image_dirs if (path.parent / d).is_dir()]
        images = found[0] if found else default_image_root(path, blob)
    rows: dict[str, np.ndarray] = {}
    if all(key in parts for key in _STANDARD):
        for key, split in _STANDARD.items():
            rows[split] = _indices(parts[key], f"partition.{key}", path, len(names), entry)
    elif _TRAINVAL in parts and "test" in parts:
        trainval = _indices(parts[_TRAINVAL], f"partition.{_TRAINVAL}", path, len(names), entry)
        rows["train"], rows["validation"] = split_validation(trainval, entry)
        rows["test"] = _indices(parts["test"], "partition.test", path, len(names), entry)
        logger.info("%s has trainval and test only: validation drawn from trainval", path)
    else:
        raise ParDataError(
            f"{path}: 'partition' should hold train, val and test (or trainval and test); it holds "
            f"{sorted(map(str, parts))}"
        )
    for key, value in parts.items():
        if key not in _STANDARD and key != _TRAINVAL:
            if key in rows:  # e.g. a 'validation' key next to 'val': one would silently replace the other
                raise ParDataError(f"{path}: partition.{key} would replace the {key!r} split made from the standard "
                                   f"keys ({', '.join(sorted(map(str, parts)))}); rename or remove it")
            rows[key] = _indices(value, f"partition.{key}", path, len(names), entry)
    splits = {split: select_rows(labels, names, indices, images) for split, indices in rows.items()}

    description = blob.get("description")
    table = sentence_table(name or description)
    if table is None and isinstance(description, str) and description.strip().lower() == "wider":
        from .wider import wider_sentences

        sentences = wider_sentences(attributes)
    else:
        sentences = expand_attributes(attributes, dataset=table)
    return Annotation(
        name or table or "rethinking", attributes, sentences, splits, path, entry, image_root=images
    )


def read_rethinking(src: Path, partition: int = 0, images: Path | None = None) -> Annotation:
    """``convert rethinking``: ``src`` is the pickle itself (layout in the module docstring)."""
    return read_description(src, entry=partition, images=images)
