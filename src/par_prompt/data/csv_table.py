"""Your own data: a CSV table of labels plus a folder of images.

Expected layout (``convert csv --src labels.csv --images DIR``)::

    labels.csv                UTF-8, comma-separated, one header row:
        image                 the image file, relative to --images (sub-folders allowed)
        <attribute> ...       one column per attribute, named by the attribute; each
                              cell 0 (negative), 1 (positive) or 2 (uncertain)
        split                 (optional) train, validation (or val) or test; another
                              plain name (letters, digits, _) makes an extra split
    DIR/                      the images (default: the folder holding labels.csv)

Without a ``split`` column the rows are split at random, seeded by ``--seed`` (default
0): :data:`SPLIT_RATIOS` = 80 % train, 10 % validation, 10 % test (each at least one
image; rows keep their file order inside a split). The same seed and table always give
the same split. Sentences: ``--sentences FILE`` (see
:func:`par_prompt.data.common.read_sentences_file`), else each attribute name is
looked up in the built-in tables and otherwise turned into a sentence by the template
of :func:`par_prompt.sentences.template_sentence` (a warning lists those names).

Every bad cell is an error naming its line and column; an image listed twice, an empty
table, or a missing ``image`` column too.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from .common import Annotation, ParDataError, Record, check_split_name

#: The column holding the image file names.
IMAGE_COLUMN = "image"
#: The optional column holding each row's split.
SPLIT_COLUMN = "split"
#: Share of the rows in train / validation / test when the table has no split column.
SPLIT_RATIOS = (0.8, 0.1, 0.1)
_SPLIT_ALIASES = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}
_LABELS = {"0": 0, "1": 1, "2": 2}


def seeded_split(count: int, seed: int, ratios: tuple[float, float, float] = SPLIT_RATIOS) -> list[str]:
    """A split name per row: a seeded permutation cut by ``ratios`` (each split >= 1 row)."""
    if count < 3:
        raise ParDataError(
            f"a random train / validation / test split needs at least 3 images, the table has {count}; "
            "add a 'split' column"
        )
    validation = max(1, int(round(ratios[1] * count)))
    test = max(1, int(round(ratios[2] * count)))
    order = np.random.default_rng(seed).permutation(count)
    names = ["train"] * count
    for i in order[:validation]:
        names[i] = "validation"
    for i in order[validation : validation + test]:
        names[i] = "test"
    return names


def _header(row: list[str], path: Path) -> tuple[int, int | None, list[tuple[int, str]]]:
    """(image column, split column or None, [(column, attribute name)])."""
    header = [cell.strip() for cell in row]
    if IMAGE_COLUMN not in header:
        raise ParDataError(f"{path}: the header has no {IMAGE_COLUMN!r} column; it has {header}")
    seen: dict[str, int] = {}
    for column, name in enumerate(header):
        if not name:
            raise ParDataError(f"{path}: column {column + 1} of the header is empty; name every column")
        if name in seen:
            raise ParDataError(f"{path}: the header names {name!r} twice (columns {seen[name] + 1} and {column + 1})")
        seen[name] = column
    attributes = [(c, n) for c, n in enumerate(header) if n not in (IMAGE_COLUMN, SPLIT_COLUMN)]
    if not attributes:
        raise ParDataError(f"{path}: the header has no attribute columns (only {header})")
    return header.index(IMAGE_COLUMN), seen.get(SPLIT_COLUMN), attributes


def read_csv_table(src: Path, partition: int = 0, images: Path | None = None, seed: int = 0) -> Annotation:
    """Read ``src`` (layout in the module docstring) with images under ``images``."""
    from par_prompt.sentences import expand_attributes

    from .files import read_text

    if partition != 0:
        raise ParDataError(f"csv has a single split; partition must be 0, got {partition}")
    root = images if images is not None else src.parent
    if not root.is_dir():
        raise ParDataError(f"image folder not found: {root}")
    rows = csv.reader(io.StringIO(read_text(src, "CSV file"), newline=""))
    try:
        header = next(rows)
    except StopIteration:
        raise ParDataError(f"{src} is empty; it needs a header row ({IMAGE_COLUMN!r} + attribute columns)") from None
    except csv.Error as error:
        raise ParDataError(f"{src}, line 1: {error}") from error
    image_column, split_column, attributes = _header(header, src)
    width = len(header)

    names: list[str] = []
    labels: list[list[int]] = []
    split_names: list[str] = []
    first_line: dict[str, int] = {}
    try:
        for row in rows:
            line = rows.line_num
            if not any(cell.strip() for cell in row):
                continue  # blank line
            if len(row) != width:
                raise ParDataError(f"{src}, line {line}: {len(row)} cells, the header has {width}")
            name = row[image_column].strip()
            if not name:
                raise ParDataError(f"{src}, line {line}, column {IMAGE_COLUMN!r}: the image name is empty")
            key = os.path.normpath(name)  # ./img/0.png and img/0.png name one file
            if key in first_line:
                raise ParDataError(
                    f"{src}, line {line}: image {name!r} is listed again (first on line {first_line[key]})"
                )
            first_line[key] = line
            values = []
            for column, attribute in attributes:
                cell = row[column].strip()
                if cell not in _LABELS:
                    raise ParDataError(
                        f"{src}, line {line}, column {attribute!r}: {row[column]!r} is not a label; use 0 "
                        "(negative), 1 (positive) or 2 (uncertain)"
                    )
                values.append(_LABELS[cell])
            if split_column is not None:
                split = row[split_column].strip()
                split = _SPLIT_ALIASES.get(split.lower(), split)
                check_split_name(split, f"{src}, line {line}, column {SPLIT_COLUMN!r}")
                split_names.append(split)
            names.append(name)
            labels.append(values)
    except csv.Error as error:
        raise ParDataError(f"{src}, line {rows.line_num}: {error}") from error
    if not names:
        raise ParDataError(f"{src} lists no images (only a header)")
    if split_column is None:
        split_names = seeded_split(len(names), seed)

    matrix = np.asarray(labels, dtype=np.int8)
    splits: dict[str, list[Record]] = {}
    for name, row_labels, split in zip(names, matrix, split_names):
        splits.setdefault(split, []).append(Record(name, root / name, row_labels))
    missing = [s for s in ("train", "validation", "test") if s not in splits]
    if missing:
        raise ParDataError(
            f"{src}: the split column gives no row to {missing}; every data set needs train, validation "
            "and test rows"
        )
    order = ["train", "validation", "test"] + sorted(s for s in splits if s not in ("train", "validation", "test"))
    attribute_names = [name for _, name in attributes]
    return Annotation(
        src.stem,
        attribute_names,
        expand_attributes(attribute_names, dataset=None),
        {split: splits[split] for split in order},
        src,
        image_root=root,
    )
