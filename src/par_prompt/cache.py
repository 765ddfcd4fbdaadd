"""The package's own cache: folders built once (the demo backbones, the synthetic data set)
and reused by later runs.

The cache lives in ``$PAR_PROMPT_CACHE``, else ``~/.cache/par_prompt`` (or a folder the
caller names). :func:`cached_folder` builds a folder in a temporary directory next to its
final place and renames it into place (:func:`par_prompt.fileio.atomic_directory`): an
interrupted build never leaves a half-written folder, and concurrent runs never read one.
A folder is complete when it holds ``settings.json``; every builder writes it last.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Union

__all__ = ["CACHE_ENV", "cache_root", "cached_folder"]

CACHE_ENV = "PAR_PROMPT_CACHE"
#: Written last by every builder: its presence marks a complete folder.
SETTINGS_FILE = "settings.json"


def cache_root(cache_dir: Union[None, str, os.PathLike] = None) -> Path:
    """``cache_dir``, else ``$PAR_PROMPT_CACHE``, else ``~/.cache/par_prompt``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "par_prompt"


def is_complete(folder: Path) -> bool:
    return (folder / SETTINGS_FILE).is_file()


def cached_folder(folder: Path, build: Callable[[Path], None]) -> Path:
    """``folder``, built first by ``build(path)`` unless complete already. ``build`` writes
    into ``path`` (which it creates), ending with ``settings.json``; the result is renamed
    into place. If another process published ``folder`` meanwhile, its copy is kept."""
    from .fileio import atomic_directory

    if is_complete(folder):
        return folder
    try:
        with atomic_directory(folder, overwrite=False) as tmp:
            build(tmp)
    except (FileExistsError, OSError):
        if is_complete(folder):  # a concurrent run got there first
            return folder
        raise
    return folder
