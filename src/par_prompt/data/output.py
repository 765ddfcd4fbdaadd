"""Where a data set may be written, and how an earlier one is replaced without loss.

Used by :func:`~par_prompt.data.convert` and :func:`~par_prompt.data.save`. The rules:

- The output must not be, or contain, any of the inputs (the raw download, the image
  folder, the CSV or pickle file, ...), after resolving symbolic links: it is refused.
  An output inside an input folder (``--src data/PA100k --out data/PA100k/hf``) is
  fine: it is a new folder, and the rules below keep it from being anything else.
- An existing output that is empty is used as is. A non-empty one is replaced only with
  ``overwrite=True``, and only when it is a data set this package wrote, recognised by
  what it writes: ``dataset_dict.json``; the split folders it lists, holding nothing but
  the files ``datasets`` writes there (``data-*.arrow``, ``cache-*.arrow``,
  ``dataset_info.json``, ``state.json``); and the ``par_prompt`` metadata in every
  split's ``dataset_info.json``. Anything else (a download, a model, a folder with one
  file of the user's added) is refused, naming the entry that is not ours.
- An output that is a file or a symbolic link, or whose folder cannot be written, is
  refused before any work is done.
- The data set is built in a hidden directory next to the output
  (:func:`par_prompt.fileio.atomic_directory`) and swapped in only when complete; the
  old one is deleted only after the swap. Nothing is written where the output goes
  until then.
- Hidden temporaries left by a run that was killed (no clean-up could run) are removed
  by the next run for the same output (``fileio.remove_stale_partials``). A run
  killed in the middle of the swap leaves the previous data set inside its temporary;
  :func:`clean_stale_partials` puts it back first.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .common import METADATA_KEY, ParDataError, check_split_name

logger = logging.getLogger(__name__)

_SPLIT_FILE = re.compile(r"(data-\d+-of-\d+|cache-[\w.-]+)\.arrow|dataset_info\.json|state\.json")


def _partial_prefix(out: Path) -> str:
    """The name prefix of ``fileio.atomic_directory``'s temporary directories for ``out``."""
    return f".{out.name}.partial-"


def _contains(outer: str, inner: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def foreign_entry(path: Path) -> str | None:
    """Why the directory ``path`` is not a data set this package wrote, or ``None`` if it is
    (or is empty)."""
    entries = sorted(path.iterdir())
    if not entries:
        return None
    index = path / "dataset_dict.json"
    if not index.is_file() or index.is_symlink():
        return "it holds no dataset_dict.json, so it is not a data set written by par-prompt"
    try:
        splits = json.loads(index.read_text(encoding="utf-8"))["splits"]
        if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits):
            raise TypeError("'splits' is not a list of names")
        for split in splits:
            check_split_name(split, f"{index}")
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"its dataset_dict.json cannot be read ({error})"
    for entry in entries:
        if entry.name != "dataset_dict.json" and entry.name not in splits:
            return f"it holds {entry.name!r}, which par-prompt did not write"
    for split in splits:
        folder = path / split
        if folder.is_symlink() or not folder.is_dir():
            return f"its split {split!r} is not a folder"
        for entry in folder.iterdir():
            if entry.is_symlink() or not entry.is_file() or not _SPLIT_FILE.fullmatch(entry.name):
                return f"it holds {split}/{entry.name}, which par-prompt did not write"
        try:
            info = json.loads((folder / "dataset_info.json").read_text(encoding="utf-8"))
            description = json.loads(info.get("description") or "null")
        except (OSError, ValueError, AttributeError) as error:
            return f"its split {split!r} has no readable dataset_info.json ({error})"
        if not isinstance(description, dict) or not isinstance(description.get(METADATA_KEY), dict):
            return f"its split {split!r} carries no par-prompt metadata, so it was not written by par-prompt"
    return None


def _writable_ancestor(out: Path) -> Path:
    """The nearest existing ancestor of ``out``; it must be a directory we can write to."""
    ancestor = out.parent
    while not ancestor.exists() and not ancestor.is_symlink():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ParDataError(f"cannot create output {out}: {ancestor} is a file, not a directory")
    try:
        probe = tempfile.mkdtemp(prefix=".par-prompt-probe-", dir=ancestor)
    except OSError as error:
        raise ParDataError(
            f"cannot write output {out}: directory {ancestor} is not writable "
            f"({error.strerror or error}); choose another output directory"
        ) from error
    os.rmdir(probe)
    return ancestor


def check_output(out: str | Path, inputs: Iterable[str | Path] = (), overwrite: bool = False) -> bool:
    """Apply the rules of the module docstring to ``out``; returns whether it exists.

    ``inputs`` are the paths the data is read from; ``out`` must be none of them and
    contain none of them. Raises :class:`ParDataError` (or ``FileExistsError`` for an
    existing data set without ``overwrite``) with a one-line message.
    """
    out = Path(out).absolute()
    real_out = os.path.realpath(out)
    for source in inputs:
        real_source = os.path.realpath(source)
        if _contains(real_out, real_source):
            relation = "is" if real_out == real_source else "contains"
            raise ParDataError(
                f"output {out} {relation} the input {source}; writing there would replace it. "
                "Choose an output directory outside the input."
            )
    if out.is_symlink():
        raise ParDataError(f"output {out} is a symbolic link; give the directory itself or a new path")
    _writable_ancestor(out)
    clean_stale_partials(out)
    if not out.exists():
        return False
    if not out.is_dir():
        raise ParDataError(f"output {out} is a file, not a directory; choose another output path")
    problem = foreign_entry(out)
    if problem is not None:
        raise ParDataError(
            f"refusing to write to {out}: the directory exists and {problem}. Only an empty directory or a "
            "data set written by par-prompt (with overwrite / --overwrite) can be replaced; choose another output"
        )
    if any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"output directory {out} already holds a data set; pass overwrite=True (--overwrite) to replace it"
        )
    return True


# ------------------------------------------------------------------------ partial output


def clean_stale_partials(out: str | Path) -> None:
    """Put back a data set that a run killed in the middle of the swap left behind.

    ``fileio.atomic_directory`` renames the old ``out`` to ``previous`` inside its hidden
    temporary directory, then the new one to ``out``. A run killed between the two
    renames leaves no ``out`` and the old data set in ``previous``: it is renamed back
    before anything else happens; then the temporaries of killed runs are removed
    (``fileio.remove_stale_partials``). A live run's swap takes microseconds; were it
    caught in between, its second rename fails and it reports an error, with the old
    data set in place.
    """
    from ..fileio import remove_stale_partials

    out = Path(out).absolute()
    if not out.exists() and not out.is_symlink():
        try:
            partials = sorted(out.parent.glob(f"{glob.escape(_partial_prefix(out))}*"))
        except OSError:
            partials = []
        for partial in partials:
            previous = partial / "previous"
            if not partial.is_symlink() and previous.is_dir() and not previous.is_symlink():
                previous.rename(out)
                logger.warning("restored %s from %s, left by an interrupted run", out, partial.name)
                break
    for removed in remove_stale_partials(out.parent, out.name):
        logger.warning("removed %s, left by an interrupted run", removed)


@contextmanager
def dataset_output(out: str | Path, inputs: Iterable[str | Path] = (), overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh path to ``save_to_disk`` into; it becomes ``out`` when the block succeeds.

    :func:`check_output` runs first; on any error nothing is left behind.
    """
    from ..fileio import atomic_directory

    exists = check_output(out, inputs, overwrite)
    with atomic_directory(out, overwrite=exists) as target:
        yield target
