"""Writing an :class:`~par_prompt.data.common.Annotation` as a ``datasets.DatasetDict``.

:func:`write_annotation` checks, in this order, before anything is written:

1. every split has a plain name (:func:`~par_prompt.data.common.check_split_name`), is
   non-empty, and its label rows match the attributes;
2. every image resolves (symbolic links and ``..`` followed, absolute names included)
   inside the annotation's ``image_root``: otherwise :class:`ParDataError` naming the
   entry and where it leads;
3. no image is in two of the ``train`` / ``validation`` / ``test`` splits (a test image
   that is also trained on or used to pick the checkpoint);
4. images listed but missing on disk -> :class:`ParDataError` naming the first one
   (``skip_missing=True`` drops them and logs how many); a listed path that is not a
   regular file (a FIFO, a directory) counts as unreadable (step 5), never opened.

Then the output is checked (:mod:`par_prompt.data.output`), and:

5. every image is read and fully decoded once, with a progress bar per split; an
   unreadable one -> :class:`ParDataError` naming the file (``skip_corrupt=True`` drops
   it and logs the count);
6. the splits are written to a hidden directory next to ``out`` and swapped in only when
   everything succeeded; on any error nothing is left behind.

Images are stored as their original file bytes (no re-encoding, EXIF orientation tag
included: it is applied when the image is read, see
:func:`par_prompt.data.transforms.decode_image`); the ``path`` of the ``Image`` feature
keeps the file's base name (``datasets`` drops directories when it embeds files), so
errors can name the image. A record with a crop box (WIDER) stores the crop, re-encoded:
the box is in the stored pixels' coordinates (as the image is read without applying the
orientation, the frame every annotation script uses), and the crop is then turned
upright with the photo's EXIF orientation.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .common import (
    Annotation,
    ParDataError,
    Record,
    attach_metadata,
    check_split_name,
    make_features,
    metadata_dict,
)

if TYPE_CHECKING:  # pragma: no cover
    import datasets

logger = logging.getLogger(__name__)

#: The splits that must not share an image.
DISJOINT_SPLITS = ("train", "validation", "test")


# ------------------------------------------------------------------------------ checks


def check_splits(annotation: Annotation) -> None:
    """Every split must have a plain name, be non-empty, and match the attributes in width."""
    if not annotation.splits:
        raise ParDataError(f"{annotation.source}: no splits were found")
    n = len(annotation.attributes)
    for split, records in annotation.splits.items():
        check_split_name(split, str(annotation.source))
        if not records:
            raise ParDataError(f"{annotation.source}: the {split!r} split is empty")
        for record in records:
            if record.labels.shape != (n,):
                raise ParDataError(
                    f"{annotation.source}: {record.name} has {record.labels.size} labels but the "
                    f"attribute list has {n} names"
                )


def confine_images(annotation: Annotation) -> Annotation:
    """Every record's path resolved; one that leads outside ``image_root`` is an error."""
    root = os.path.realpath(annotation.image_root)
    inside = root.rstrip(os.sep) + os.sep
    parents: dict[Path, str] = {}
    resolved: dict[Path, Path] = {}
    splits = {}
    for split, records in annotation.splits.items():
        kept = []
        for record in records:
            real = resolved.get(record.path)
            if real is None:
                path = record.path
                if path.name in ("", ".", "..") or os.path.islink(path):
                    real_text = os.path.realpath(path)
                else:
                    parent = parents.get(path.parent)
                    if parent is None:
                        parent = parents[path.parent] = os.path.realpath(path.parent)
                    real_text = os.path.join(parent, path.name)
                if real_text != root and not real_text.startswith(inside):
                    raise ParDataError(
                        f"{annotation.source}: image {record.name!r} ({split} split) leads to {real_text}, "
                        f"outside the image folder {annotation.image_root}. Image names must be relative "
                        "paths inside it (no absolute paths, no '..', no symbolic links that lead out); "
                        "if the images really live elsewhere, name their folder with --images"
                    )
                real = resolved[record.path] = Path(real_text)
            kept.append(dataclasses.replace(record, path=real))
        splits[split] = kept
    return dataclasses.replace(annotation, splits=splits)


def check_disjoint(annotation: Annotation) -> None:
    """No image file may be in two of :data:`DISJOINT_SPLITS` (paths already resolved)."""
    owner: dict[Path, str] = {}
    for split in DISJOINT_SPLITS:
        for record in annotation.splits.get(split, ()):
            first = owner.setdefault(record.path, split)
            if first != split:
                shared = {r.path for r in annotation.splits[split]} & {
                    r.path for r in annotation.splits[first]
                }
                raise ParDataError(
                    f"{annotation.source}: image {record.name!r} is in both the {first!r} and the "
                    f"{split!r} split ({len(shared)} image(s) are shared); the splits must not overlap"
                )


def drop_missing(annotation: Annotation, skip_missing: bool, skip_corrupt: bool = False) -> Annotation:
    """Check that every listed image is a regular file; drop missing ones if ``skip_missing``
    and ones that are no regular file (a FIFO, a directory, ...) if ``skip_corrupt``."""
    from .files import file_problem

    splits = {}
    total_missing = 0
    for split, records in annotation.splits.items():
        present = []
        missing = unreadable = 0
        for record in records:
            problem = file_problem(record.path)
            if problem is None:
                present.append(record)
            elif problem == "does not exist" and skip_missing:
                missing += 1
            elif problem != "does not exist" and skip_corrupt:
                unreadable += 1
                logger.warning("skipping image %s (%s split): it %s", record.path, split, problem)
            elif problem == "does not exist":
                raise ParDataError(
                    f"image {record.name!r} ({split} split) is listed in the annotations but "
                    f"{record.path} does not exist. If the images are in another folder, name it with "
                    "--images; pass skip_missing=True (--skip-missing) to skip missing images."
                )
            else:
                raise ParDataError(
                    f"image {record.name!r} ({split} split): {record.path} {problem}. Pass "
                    "skip_corrupt=True (--skip-corrupt) to skip unreadable images."
                )
        if missing:
            logger.warning("%s: skipped %d missing image(s)", split, missing)
        if unreadable:
            logger.warning("%s: skipped %d image(s) that are not regular files", split, unreadable)
        total_missing += missing
        splits[split] = present
    if total_missing:
        logger.warning("skipped %d missing image(s) in total", total_missing)
    return dataclasses.replace(annotation, splits=splits)


# ------------------------------------------------------------------------------ images


def _decode_errors() -> tuple[type[BaseException], ...]:
    from PIL import Image

    return (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _crop(image, box: tuple[float, float, float, float], orientation: int) -> bytes | None:
    """Crop ``box`` (clipped to the image), turn it upright, re-encode; ``None`` without area."""
    from .transforms import apply_orientation

    width, height = image.size
    left, upper, right, lower = box
    left, upper = max(0, int(round(left))), max(0, int(round(upper)))
    right, lower = min(width, int(round(right))), min(height, int(round(lower)))
    if right <= left or lower <= upper:
        return None
    crop = apply_orientation(image.crop((left, upper, right, lower)), orientation)
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
        """The bytes to store. A cropped record keeps its decoded photo cached (WIDER:
        several boxes of one photo); a whole image is decoded only to be checked."""
        from .files import read_regular
        from .transforms import decode_image, exif_orientation

        if record.box is None:
            cache.clear()
            data = read_regular(record.path, "image")
            decode_image(data, orient=False)  # full decode: a corrupt file fails here
            return data
        if cache.get("path") != record.path:
            cache.clear()
            image = decode_image(read_regular(record.path, "image"), orient=False)
            cache.update(path=record.path, image=image, orientation=exif_orientation(image))
        return _crop(cache["image"], record.box, cache["orientation"])

    def examples(self) -> Iterator[dict]:
        from ..progress import progress_bar

        cache: dict = {}
        errors = _decode_errors()
        bar = progress_bar(total=len(self.records), desc=f"converting {self.split}", unit="img")
        try:
            for record in self.records:
                bar.update(1)
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
                yield {"image": {"bytes": data, "path": record.name}, "labels": record.labels.tolist()}
        finally:
            bar.close()


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
    inputs: Iterable[str | Path] = (),
) -> datasets.DatasetDict:
    """Write ``annotation`` to ``out`` atomically and return the data set loaded from it.

    ``inputs`` are the files and folders the data was read from: ``out`` may not be or
    contain any of them (nor ``annotation.image_root``). See the module docstring for
    the checks and their order.
    """
    from datasets import Dataset, DatasetDict, load_from_disk
    from datasets.exceptions import DatasetGenerationError

    from .output import dataset_output

    check_splits(annotation)  # before looking at the disk: names, width, empty annotation
    annotation = confine_images(annotation)
    check_disjoint(annotation)
    annotation = drop_missing(annotation, skip_missing, skip_corrupt)
    check_splits(annotation)  # a split may be empty once its missing images are gone
    features = make_features(len(annotation.attributes))
    meta = metadata_dict(
        annotation.name,
        annotation.attributes,
        annotation.sentences,
        source=annotation.source.name,
        partition=annotation.partition,
    )
    protected = [*inputs, annotation.source, annotation.image_root]
    with dataset_output(out, protected, overwrite=overwrite) as target:
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
