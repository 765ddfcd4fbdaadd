"""What every converter shares: records, label checks, metadata and atomic output.

A converter reads a benchmark's annotation files into an :class:`Annotation` (attribute
names, sentences and, per split, a list of :class:`Record`: image file + label row).
:func:`write_annotation` then turns it into a ``datasets.DatasetDict`` on disk:

1. images listed but missing on disk -> :class:`ParDataError` naming the first one
   (``skip_missing=True`` drops them and logs how many);
2. an empty split -> :class:`ParDataError`;
3. every image is read and fully decoded once; an unreadable one -> :class:`ParDataError`
   naming the file (``skip_corrupt=True`` drops it and logs the count);
4. the splits are written to a temporary directory next to ``out`` and renamed to
   ``out`` only when everything succeeded; on any error the temporary directory is
   removed, so no partial output is ever left behind.

Steps 1-2 run before anything is written. Images are stored as their original file
bytes (no re-encoding); the ``path`` of the ``Image`` feature keeps the file's base name
(``datasets`` drops directories when it embeds files), so errors can name the image. A
record with a crop box (WIDER) stores the crop, re-encoded.

Metadata: the attribute names and sentences are a JSON object under the key
``"par_prompt"`` in each split's ``DatasetInfo.description`` (see
:mod:`par_prompt.data.pardata` for why there and how it reaches the Hub).
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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
    """A benchmark read from its files, ready to be written."""

    name: str
    attributes: list[str]
    sentences: list[str]
    splits: dict[str, list[Record]]
    source: Path
    partition: int = 0


# ------------------------------------------------------------------------------ layout


def find_file(src: Path, candidates: Sequence[str], what: str) -> Path:
    """The first of ``candidates`` (paths relative to ``src``) that is a file."""
    for candidate in candidates:
        if (src / candidate).is_file():
            return src / candidate
    raise ParDataError(f"{what} not found in {src}: looked for {list(candidates)}")


def find_image_root(src: Path, candidates: Sequence[str], names: Sequence[str]) -> Path:
    """The first candidate directory under ``src`` holding one of the first listed images.

    Falls back to the first existing candidate (then to ``src``) so that a missing image
    is reported with a full path by :func:`drop_missing`.
    """
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


# ----------------------------------------------------------------------- atomic output


# The implementation is shared with model saving: see par_prompt.fileio.
from ..fileio import atomic_directory  # noqa: E402


# ------------------------------------------------------------------------------ images


def _decode_errors() -> tuple[type[BaseException], ...]:
    from PIL import Image

    return (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _decode(data: bytes):
    """Fully decode ``data`` (raises on a corrupt, truncated or unknown image)."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _crop(image, box: tuple[float, float, float, float]) -> bytes | None:
    """Crop ``box`` (clipped to the image) and re-encode; ``None`` when it has no area."""
    width, height = image.size
    left, upper, right, lower = box
    left, upper = max(0, int(round(left))), max(0, int(round(upper)))
    right, lower = min(width, int(round(right))), min(height, int(round(lower)))
    if right <= left or lower <= upper:
        return None
    crop = image.crop((left, upper, right, lower))
    buffer = io.BytesIO()
    if crop.mode in ("RGB", "L", "CMYK"):
        crop.save(buffer, format="JPEG", quality=95)
    else:
        crop.save(buffer, format="PNG")
    return buffer.getvalue()


class _SplitWriter:
    """Encodes the records of one split, counting what it skips."""

    def __init__(self, split: str, records: list[Record], skip_corrupt: bool):
        self.split = split
        self.records = records
        self.skip_corrupt = skip_corrupt
        self.corrupt = 0
        self.empty_boxes = 0
        self.written = 0

    @staticmethod
    def _encode(record: Record, cache: dict) -> bytes | None:
        """The bytes to store; the last decoded image is cached (WIDER: boxes of one photo)."""
        if cache.get("path") != record.path:
            cache.clear()
            data = record.path.read_bytes()
            image = _decode(data)  # full decode: a corrupt file fails here
            cache.update(path=record.path, data=data, image=image)
        if record.box is None:
            return cache["data"]
        return _crop(cache["image"], record.box)

    def examples(self) -> Iterator[dict]:
        cache: dict = {}
        errors = _decode_errors()
        for i, record in enumerate(self.records):
            try:
                data = self._encode(record, cache)
            except errors as error:
                cache.clear()
                if not self.skip_corrupt:
                    raise ParDataError(
                        f"cannot read image {record.path} ({self.split} split): {error}. "
                        "Pass skip_corrupt=True (--skip-corrupt) to skip unreadable images."
                    ) from error
                self.corrupt += 1
                logger.warning("skipping unreadable image %s (%s): %s", record.path, self.split, error)
                continue
            if data is None:
                self.empty_boxes += 1
                logger.warning(
                    "skipping %s: its box %s has no area inside the image", record.name, record.box
                )
                continue
            self.written += 1
            if (i + 1) % 5000 == 0:
                logger.info("%s: %d/%d images", self.split, i + 1, len(self.records))
            yield {"image": {"bytes": data, "path": record.name}, "labels": record.labels.tolist()}


def drop_missing(annotation: Annotation, skip_missing: bool) -> Annotation:
    """Check that every listed image exists; drop the missing ones if ``skip_missing``."""
    splits = {}
    total_missing = 0
    for split, records in annotation.splits.items():
        present = []
        for record in records:
            if record.path.is_file():
                present.append(record)
            elif not skip_missing:
                raise ParDataError(
                    f"image {record.name!r} ({split} split) is listed in the annotations but "
                    f"{record.path} does not exist. Pass skip_missing=True (--skip-missing) to skip "
                    "missing images."
                )
        missing = len(records) - len(present)
        if missing:
            logger.warning("%s: skipped %d missing image(s)", split, missing)
        total_missing += missing
        splits[split] = present
    if total_missing:
        logger.warning("skipped %d missing image(s) in total", total_missing)
    return dataclasses.replace(annotation, splits=splits)


def check_splits(annotation: Annotation) -> None:
    """Every split must be non-empty and its label rows must match the attributes."""
    if not annotation.splits:
        raise ParDataError(f"{annotation.source}: no splits were found")
    n = len(annotation.attributes)
    for split, records in annotation.splits.items():
        if not records:
            raise ParDataError(f"{annotation.source}: the {split!r} split is empty")
        for record in records:
            if record.labels.shape != (n,):
                raise ParDataError(
                    f"{annotation.source}: {record.name} has {record.labels.size} labels but the "
                    f"attribute list has {n} names"
                )


def _unwrap_generation_error(error: BaseException) -> BaseException:
    """``datasets`` wraps errors raised inside a generator; return ours if it is inside."""
    seen = error
    while seen is not None:
        if isinstance(seen, ParDataError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return error


def write_annotation(
    annotation: Annotation,
    out: str | Path,
    skip_missing: bool = False,
    skip_corrupt: bool = False,
    overwrite: bool = False,
) -> datasets.DatasetDict:
    """Write ``annotation`` to ``out`` atomically and return the data set loaded from it.

    See the module docstring for the checks and their order.
    """
    from datasets import Dataset, DatasetDict, load_from_disk
    from datasets.exceptions import DatasetGenerationError

    check_splits(annotation)  # before looking at the disk: width / empty annotation
    annotation = drop_missing(annotation, skip_missing)
    check_splits(annotation)  # a split may be empty once its missing images are gone
    features = make_features(len(annotation.attributes))
    meta = metadata_dict(
        annotation.name,
        annotation.attributes,
        annotation.sentences,
        source=annotation.source.name,
        partition=annotation.partition,
    )
    with atomic_directory(out, overwrite=overwrite) as target:
        cache_dir = target.parent / "cache"
        splits = {}
        for split, records in annotation.splits.items():
            writer = _SplitWriter(split, records, skip_corrupt)
            try:
                dataset = Dataset.from_generator(
                    writer.examples, features=features, cache_dir=str(cache_dir), fingerprint=uuid.uuid4().hex
                )
            except DatasetGenerationError as error:
                raise _unwrap_generation_error(error) from error
            if writer.corrupt:
                logger.warning("%s: skipped %d unreadable image(s)", split, writer.corrupt)
            if writer.empty_boxes:
                logger.warning("%s: skipped %d box(es) with no area", split, writer.empty_boxes)
            if writer.written == 0:
                raise ParDataError(
                    f"{annotation.source}: the {split!r} split is empty after skipping unreadable images"
                )
            logger.info("%s: %d examples", split, writer.written)
            splits[split] = dataset
        dataset_dict = attach_metadata(DatasetDict(splits), meta)
        dataset_dict.save_to_disk(str(target))
        del dataset_dict, splits
    return load_from_disk(str(Path(out)))
