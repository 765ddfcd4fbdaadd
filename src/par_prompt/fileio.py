"""File-system helpers shared by the package: atomic output directories and files, staged
multi-file writes, file permissions, and safe safetensors reads.

Every writer here leaves either the old content or the new, never a partial file: it
writes to a hidden temporary next to the destination, flushes it to disk, then renames
it into place. The temporaries are named ``.<name>.partial-<host>-<pid>-<random>``; one
left behind by a process that was killed is removed by the next write of the same name
on the same host (a process that is still running keeps its temporaries).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator, Optional, Union

import torch

PathLike = Union[str, os.PathLike]


# ------------------------------------------------------------------ permissions and fsync
def _umask() -> int:
    """The process umask (read from /proc where possible: setting it to read it races with threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The permissions ``open(path, "w")`` gives a new file (0o644 under the usual umask)."""
    return 0o666 & ~_umask()


def fsync_file(path: PathLike) -> None:
    """Flush a written file's content to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_directory(path: PathLike) -> None:
    """Flush a directory's entries (renames into it) to disk; a no-op where the platform
    cannot open directories (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def finish_file(path: PathLike) -> None:
    """Give a file written through a temporary the permissions of any other new file
    (``mkstemp`` and safetensors create 0600) and flush it to disk."""
    os.chmod(path, default_file_mode())
    fsync_file(path)


# ------------------------------------------------------------------------ temporaries
_PARTIAL = ".partial-"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def partial_prefix(name: str) -> str:
    """Prefix of this process's hidden temporaries for ``name``."""
    return f".{name}{_PARTIAL}{_host()}-{os.getpid()}-"


def _process_alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # no safe liveness probe: keep the temporary
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def remove_stale_partials(directory: PathLike, name: str) -> list[Path]:
    """Remove the temporaries for ``name`` in ``directory`` that processes on this host
    left when they were killed; return what was removed. Temporaries of running
    processes, and of other hosts, are left alone."""
    directory = Path(directory)
    start = f".{name}{_PARTIAL}"
    removed = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(start):
            continue
        fields = entry.name[len(start):].rsplit("-", 2)
        if len(fields) != 3 or fields[0] != _host() or not fields[1].isdigit():
            continue
        if _process_alive(int(fields[1])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _missing_ancestors(path: Path) -> list[Path]:
    """Ancestors of ``path`` (itself included) that do not exist yet, deepest first."""
    missing = []
    for candidate in [path, *path.parents]:
        if candidate.exists():
            break
        missing.append(candidate)
    return missing


def remove_created(directories: list[Path]) -> None:
    """Remove directories a failed write created (deepest first), as long as they are empty."""
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:
            break


@contextmanager
def atomic_directory(out: Union[str, Path], overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh path to write a directory into; it becomes ``out`` on success.

    The path lies in a hidden temporary directory next to ``out`` (same file system, so
    the final step is a rename). On any exception the temporary directory, and any parent
    directories this call created, are removed and ``out`` is left as it was. An existing
    ``out`` is an error unless ``overwrite`` is true, in which case it is replaced only
    after the new content is complete: the old directory is renamed aside, the new one
    renamed into place, and only then is the old one deleted. Temporaries that earlier,
    killed runs left next to ``out`` are removed first.
    """
    out = Path(out).absolute()
    if out.exists() and not overwrite:
        raise FileExistsError(f"output directory {out} already exists; pass overwrite=True to replace it")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a directory; choose another output path")
    created = _missing_ancestors(out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out.parent, out.name)
    tmp = Path(tempfile.mkdtemp(prefix=partial_prefix(out.name), dir=out.parent))
    target = tmp / "output"
    succeeded = False
    try:
        yield target
        if not target.is_dir():
            raise RuntimeError(f"nothing was written to {target}")
        previous = tmp / "previous"
        if out.exists():
            out.rename(previous)
        try:
            target.rename(out)
        except BaseException:
            if previous.exists() and not out.exists():
                previous.rename(out)  # put the old content back before the temporary is removed
            raise
        fsync_directory(out.parent)
        succeeded = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not succeeded:
            remove_created(created)


@contextmanager
def atomic_open(path: PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a hidden temporary next to ``path`` for writing (``mode`` "w" or "wb",
    ``kwargs`` as for ``open``; text defaults to UTF-8). When the block ends without an
    exception the file gets the permissions of any new file, is flushed to disk and
    renamed over ``path``; otherwise it is removed. A crash or an error leaves either the
    old file or the new one, never a partial file."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    if mode == "w":
        kwargs.setdefault("encoding", "utf-8")
    path = Path(path)
    remove_stale_partials(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=partial_prefix(path.name), dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
        finish_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def _write_atomic(path: PathLike, mode: str, content: Union[str, bytes]) -> Path:
    with atomic_open(path, mode) as handle:
        handle.write(content)
    return Path(path)


def check_output_file(path: PathLike, what: str = "the output file", suffix: Optional[str] = None) -> Path:
    """``path`` if a file can be written there now, else ``ValueError`` naming the problem
    and the fix: the path is a directory or another non-regular file (a FIFO, a device),
    its folder is missing or not a folder, or the folder is not writable (tested by
    creating and removing a hidden file, so read-only mounts are caught too). Nothing is
    left behind. Call it before long work, so that its result is not lost at the end.

    ``suffix`` (e.g. ``".png"``): the name must end in it, so that a slip cannot replace
    some other file (a photo, an earlier JSON output) with a file of another kind."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise ValueError(f"{what} {path} is a directory; give the path of a file (in it or elsewhere)")
    if path.exists() and not path.is_file():
        raise ValueError(f"{what} {path} exists and is not a regular file (a device or a pipe); "
                         "give the path of a regular file")
    if suffix is not None and path.suffix.lower() != suffix:
        raise ValueError(f"{what} must end in {suffix}, got {path}; e.g. {path.with_suffix(suffix)}")
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise ValueError(f"the folder of {what} ({folder}) {problem}; create it first or choose another path")
    try:
        fd, probe = tempfile.mkstemp(prefix=partial_prefix(path.name), dir=folder)
    except OSError as error:
        raise ValueError(f"cannot write {what} in {folder}: {error.strerror or error}; "
                         "choose a writable folder") from None
    os.close(fd)
    os.unlink(probe)
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{what} {path} is read-only; make it writable or choose another path")
    return path


def check_outside(path: PathLike, sources: dict[str, Any], option: str) -> None:
    """``ValueError`` when the output ``path`` is, or lies inside, one of the local
    ``sources`` (``{"--model": path_or_hub_id, ...}``; names that are not existing paths,
    e.g. Hub ids, are skipped): writing there would change what is being read (a model's
    config.json, a data set's files)."""
    target = os.path.realpath(path)
    for name, source in sources.items():
        if source is None or not os.path.exists(source):
            continue
        real = os.path.realpath(source)
        if target == real or target.startswith(real.rstrip(os.sep) + os.sep):
            relation = "is" if target == real else "lies inside"
            raise ValueError(f"{option} {path} {relation} {name} {source}; writing there would change it. "
                             "Choose an output path outside it")


#: The most bytes a JSON file of a model folder may have to be read (config.json and the
#: processor's files are a few kB; a larger file is not one of ours).
MAX_JSON_BYTES = 32 * 2**20


def read_json_object(path: PathLike, max_bytes: int = MAX_JSON_BYTES) -> Optional[dict]:
    """The JSON object in ``path``, read leniently: None when the file is missing, larger
    than ``max_bytes``, not JSON, or not an object (for questions such as "whose folder is
    this?", where an unreadable file simply is not ours)."""
    path = Path(path)
    try:
        if path.stat().st_size > max_bytes:
            return None
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically: a temporary file in the same folder, flushed
    to disk, then renamed over ``path``. A crash leaves either the old file or the new one,
    never a partial file. The file gets the permissions of any new file (0644 under the
    usual umask)."""
    return _write_atomic(path, "w", text)


def write_bytes_atomic(path: PathLike, data: bytes) -> Path:
    """``data`` written like :func:`write_text_atomic`."""
    return _write_atomic(path, "wb", data)


def write_json_atomic(path: PathLike, value: Any) -> Path:
    """``value`` as indented JSON (with a final newline), written by :func:`write_text_atomic`."""
    return write_text_atomic(path, json.dumps(value, indent=2) + "\n")


# ------------------------------------------------------------------ staged multi-file writes
@contextmanager
def staging_directory(directory: PathLike, name: str) -> Iterator[Path]:
    """A hidden temporary directory inside ``directory`` to write a set of files into
    before :func:`publish_files` moves them into place one by one.

    ``directory`` (and missing parents) is created; if the block fails, the temporary is
    removed, and so are the directories this call created if they are still empty. The
    temporary is always removed at the end; ones left by killed processes are removed
    first (see :func:`remove_stale_partials`).
    """
    directory = Path(directory).absolute()
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} exists and is not a directory; choose another output path.")
    created = _missing_ancestors(directory)
    succeeded = False
    try:
        directory.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(directory, name)
        staging = Path(tempfile.mkdtemp(prefix=partial_prefix(name), dir=directory))
        try:
            yield staging
            succeeded = True
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        if not succeeded:
            remove_created(created)


def publish_files(staging: PathLike, directory: PathLike, relative_paths) -> None:
    """Move files from ``staging`` to the same relative paths in ``directory``, in the
    given order: each is given the default permissions and flushed to disk, then renamed
    over its destination (atomic per file); the folders are flushed at the end."""
    staging, directory = Path(staging), Path(directory)
    folders = {directory}
    for relative in relative_paths:
        source, target = staging / relative, directory / relative
        finish_file(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        folders.add(target.parent)
    for folder in folders:
        fsync_directory(folder)


# --------------------------------------------------------------------------- safetensors
def read_safetensors(path: Union[str, Path], what: str) -> dict[str, torch.Tensor]:
    """Load a safetensors file on the CPU; a corrupt or truncated file gets an error that
    names it. (safetensors holds no code, unlike pickle-based formats.)"""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = _existing(path, what)
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise _corrupt(what, path, error) from error


@dataclass(frozen=True)
class SafetensorsHeader:
    """What a safetensors file holds, read from its header only (no tensor data)."""

    shapes: dict[str, tuple[int, ...]]
    metadata: dict[str, str]


def read_safetensors_header(path: Union[str, Path], what: str) -> SafetensorsHeader:
    """Names, shapes and metadata of a safetensors file, without reading its tensors
    (to check sizes before anything is allocated)."""
    from safetensors import SafetensorError, safe_open

    path = _existing(path, what)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise _corrupt(what, path, error) from error
    return SafetensorsHeader(shapes, metadata)


def _existing(path: Union[str, Path], what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} is missing.")
    return path


def _corrupt(what: str, path: Path, error: Exception) -> ValueError:
    return ValueError(f"{what} file {path} is corrupt or truncated ({error}). Download or save it again.")
