"""Opening input files safely: only regular files, checked before they are opened.

Opening a FIFO (named pipe) for reading blocks until a writer appears, and a character
device such as ``/dev/zero`` never ends; a directory cannot be read at all. Every file
the data code reads (images, annotation files, split pickles, CSV and sentence files)
therefore goes through :func:`open_regular`: the path is ``stat``-ed first (following
symbolic links) and anything but a regular file is refused with a :class:`ParDataError`
that names the path and what it is. The file is then opened non-blocking and checked
again on the open descriptor, so a path swapped for a FIFO in between cannot block
either.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from .common import ParDataError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a regular file (``"does not exist"``, ``"is a FIFO
    (named pipe), not a regular file"``, ...), or ``None`` when it can. Never opens it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "does not exist"
    except NotADirectoryError:
        return "does not exist (a part of the path is a file, not a directory)"
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if stat.S_ISREG(mode):
        return None
    return f"is {_kind(mode)}, not a regular file"


def check_regular(path: str | os.PathLike, what: str = "file") -> None:
    """Raise :class:`ParDataError` (``"{what} {path} is a FIFO ..."``) unless ``path`` is a
    regular file."""
    problem = file_problem(path)
    if problem is not None:
        raise ParDataError(f"{what} {path} {problem}")


def open_regular(path: str | os.PathLike, what: str = "file") -> BinaryIO:
    """Open a regular file for binary reading; anything else is refused without blocking."""
    check_regular(path, what)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        raise ParDataError(f"{what} {path} cannot be opened: {error.strerror or error}") from error
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # replaced between the check and the open
        os.close(fd)
        raise ParDataError(f"{what} {path} is {_kind(mode)}, not a regular file")
    return os.fdopen(fd, "rb")


def read_regular(path: str | os.PathLike, what: str = "file") -> bytes:
    """The bytes of a regular file (see :func:`open_regular`)."""
    with open_regular(path, what) as handle:
        return handle.read()


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """A regular file decoded as UTF-8 (a byte-order mark is dropped); errors name the file."""
    data = read_regular(path, what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ParDataError(f"{what} {Path(path)} is not UTF-8 text: {error}") from error
