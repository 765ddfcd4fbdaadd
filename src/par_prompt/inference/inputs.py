"""The image inputs of a prediction command: files, folders and ``@list`` files.

:func:`expand_inputs` turns the command line's arguments into the list of image paths to
predict, in order, before any model is loaded:

* ``PATH`` that is a folder: the image files in it (extensions :data:`IMAGE_EXTENSIONS`,
  any case), sorted by name; subfolders too with ``recursive`` (sorted by relative path;
  symbolic links to folders are not followed, so a link loop cannot hang the walk).
  Hidden files and folders (names starting with ".") are skipped. A folder without any
  image file is an error.
* ``@LIST``: a text file (UTF-8) with one image path per line; blank lines and lines
  starting with ``#`` are ignored, surrounding spaces are stripped, and a relative path
  is resolved against the folder of the list file (not the current directory). A list
  without any entry is an error. (A file whose name starts with ``@`` can be given as
  ``./@name``.)
* Anything else is passed on as an image path; whether it exists, is a regular file and
  decodes is checked per image when it is read (``par_prompt.inference.predict``), so one
  bad image does not stop the others.

A problem with an argument itself (a missing or unreadable list, an empty folder) raises
:class:`InputListError`: the command reports it in one line and exits with code 2.
Nothing here depends on the model, so other predictors (ONNX) reuse it as is.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable

__all__ = ["IMAGE_EXTENSIONS", "InputListError", "expand_inputs", "list_folder", "read_list_file"]

#: File extensions (lower case) taken from a folder; Pillow reads all of them.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class InputListError(ValueError):
    """A command-line input that cannot be expanded into images (bad list file, empty folder)."""


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_folder(folder: Path, recursive: bool = False) -> list[str]:
    """The image files of ``folder`` (see the module docstring), as paths that start with
    ``folder`` as given, sorted; :class:`InputListError` when there is none."""
    found: list[tuple[tuple[str, ...], str]] = []

    def walk(directory: Path, parts: tuple[str, ...]) -> None:
        try:
            entries = list(os.scandir(directory))
        except OSError as error:
            raise InputListError(f"cannot list the folder {directory}: {error.strerror or error}") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                if recursive:
                    walk(Path(entry.path), parts + (entry.name,))
            elif entry.is_dir():  # a link to a folder: never followed
                continue
            elif _is_image_name(entry.name):  # a FIFO named x.png is kept: reading it reports the error
                found.append((parts + (entry.name,), entry.path))

    walk(folder, ())
    if not found:
        hint = "" if recursive else " (add --recursive to look into its subfolders)"
        raise InputListError(
            f"the folder {folder} holds no image files{hint}; images need one of the extensions "
            f"{', '.join(IMAGE_EXTENSIONS)}"
        )
    return [path for _, path in sorted(found)]


def read_list_file(list_path: Path) -> list[str]:
    """The image paths named by a list file (see the module docstring)."""
    try:
        mode = list_path.stat().st_mode
    except FileNotFoundError:
        raise InputListError(f"the list file @{list_path} does not exist") from None
    except OSError as error:
        raise InputListError(f"cannot read the list file @{list_path}: {error.strerror or error}") from None
    if not stat.S_ISREG(mode):
        raise InputListError(f"the list file @{list_path} is not a regular file; give a text file with one "
                             "image path per line")
    try:
        text = list_path.read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors) is not a path
    except UnicodeDecodeError:
        raise InputListError(f"the list file @{list_path} is not UTF-8 text; give a text file with one image "
                             "path per line") from None
    except OSError as error:
        raise InputListError(f"cannot read the list file @{list_path}: {error.strerror or error}") from None
    if "\0" in text:
        raise InputListError(f"the list file @{list_path} holds NUL bytes, so it is not a text list of paths")
    base = list_path.parent
    entries = []
    for line in text.split("\n"):  # \n only (\r is stripped): U+2028 may be part of a file name
        line = line.strip()
        if line and not line.startswith("#"):
            entries.append(line if os.path.isabs(line) else os.path.join(base, line))
    if not entries:
        raise InputListError(f"the list file @{list_path} names no image (one path per line; lines starting "
                             "with # are comments)")
    return entries


def expand_inputs(arguments: Iterable[str], recursive: bool = False) -> list[str]:
    """The image paths named by command-line ``arguments``, in order (see the module
    docstring); :class:`InputListError` for an argument that cannot be expanded."""
    paths: list[str] = []
    for argument in arguments:
        argument = str(argument)
        if argument.startswith("@") and len(argument) > 1:
            paths.extend(read_list_file(Path(argument[1:])))
        elif os.path.isdir(argument):
            paths.extend(list_folder(Path(argument), recursive))
        else:
            paths.append(argument)
    return paths
