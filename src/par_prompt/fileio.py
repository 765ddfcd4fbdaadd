"""File-system helpers shared by the package: atomic output directories and files, and
safe safetensors reads."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator, Union

import torch


def _missing_ancestors(path: Path) -> list[Path]:
    """Ancestors of ``path`` (itself included) that do not exist yet, deepest first."""
    missing = []
    for candidate in [path, *path.parents]:
        if candidate.exists():
            break
        missing.append(candidate)
    return missing


@contextmanager
def atomic_directory(out: Union[str, Path], overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh path to write a directory into; it becomes ``out`` on success.

    The path lies in a hidden temporary directory next to ``out`` (same file system, so
    the final step is a rename). On any exception the temporary directory, and any parent
    directories this call created, are removed and ``out`` is left as it was. An existing
    ``out`` is an error unless ``overwrite`` is true, in which case it is replaced only
    after the new content is complete: the old directory is renamed aside, the new one
    renamed into place, and only then is the old one deleted.
    """
    out = Path(out).absolute()
    if out.exists() and not overwrite:
        raise FileExistsError(f"output directory {out} already exists; pass overwrite=True to replace it")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a directory; choose another output path")
    created = _missing_ancestors(out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    target = tmp / "output"
    succeeded = False
    try:
        yield target
        if not target.is_dir():
            raise RuntimeError(f"nothing was written to {target}")
        if out.exists():
            out.rename(tmp / "previous")
        target.rename(out)
        succeeded = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not succeeded:
            for directory in created:  # deepest first
                try:
                    directory.rmdir()
                except OSError:
                    break


@contextmanager
def atomic_open(path: Union[str, os.PathLike], mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing (``mode`` "w" or "wb", ``kwargs``
    as for ``open``; text defaults to UTF-8); when the block ends without an exception it is
    flushed to disk and renamed over ``path``, otherwise removed. A crash or an error leaves
    either the old file or the new one, never a partial file. The file is readable by
    others (0644), like one made by ``open``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    if mode == "w":
        kwargs.setdefault("encoding", "utf-8")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Union[str, os.PathLike], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_open`)."""
    with atomic_open(path, "w") as handle:
        handle.write(text)
    return Path(path)


def check_output_file(path: Union[str, os.PathLike], what: str = "the output file") -> Path:
    """``path`` if a file can be written there now, else ``ValueError`` naming the problem
    and the fix: the path is a directory or another non-regular file (a FIFO, a device),
    its folder is missing or not a folder, or the folder is not writable (tested by
    creating and removing a hidden file, so read-only mounts are caught too). Nothing is
    left behind. Call it before long work, so that its result is not lost at the end."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise ValueError(f"{what} {path} is a directory; give the path of a file (in it or elsewhere)")
    if path.exists() and not path.is_file():
        raise ValueError(f"{what} {path} exists and is not a regular file (a device or a pipe); "
                         "give the path of a regular file")
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise ValueError(f"the folder of {what} ({folder}) {problem}; create it first or choose another path")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=folder)
    except OSError as error:
        raise ValueError(f"cannot write {what} in {folder}: {error.strerror or error}; "
                         "choose a writable folder") from None
    os.close(fd)
    os.unlink(probe)
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{what} {path} is read-only; make it writable or choose another path")
    return path


def write_json_atomic(path: Union[str, os.PathLike], value: Any) -> Path:
    """``value`` as indented JSON (with a final newline), written by :func:`write_text_atomic`."""
    return write_text_atomic(path, json.dumps(value, indent=2) + "\n")


def read_safetensors(path: Union[str, Path], what: str) -> dict[str, torch.Tensor]:
    """Load a safetensors file on the CPU; a corrupt or truncated file gets an error that
    names it. (safetensors holds no code, unlike pickle-based formats.)"""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} is missing.")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ValueError(
            f"{what} file {path} is corrupt or truncated ({error}). Download or save it again."
        ) from error
