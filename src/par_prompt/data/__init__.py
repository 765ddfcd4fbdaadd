"""PAR data: benchmark converters, a synthetic data set, and the image pipeline.

Every data set is a ``datasets.DatasetDict`` with splits ``train``, ``validation`` and
``test`` and two columns: ``image`` (an ``Image()`` feature) and ``labels`` (a
fixed-length sequence of int8: 1 positive, 0 negative, 2 uncertain). The attribute
names and their sentences travel with the data (see :mod:`par_prompt.data.pardata`
for where they are stored).

Public names::

    load(path_or_hub_id, split=None) -> ParData        save(data, path)
    convert(name, src, out, partition=0, ...)          KNOWN_DATASETS
    make_synthetic(num_train, num_val, num_test, seed=0, image_size=(128, 64))
    load_synthetic(num_train, num_val, num_test, seed=0, cache_dir=None) -> ParData (cached)
    positive_ratios(split) -> np.ndarray
    to_rgb, pad_to_square, fit_to_square, ImageTransform, CLIP_MEAN, CLIP_STD

Importing this package is cheap: it imports nothing heavy (no ``datasets``, ``torch``,
``scipy`` or PIL) until one of the names above is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> submodule that defines it (resolved lazily, PEP 562)
_EXPORTS = {
    "ParData": "pardata",
    "load": "pardata",
    "save": "pardata",
    "positive_ratios": "pardata",
    "ParDataError": "common",
    "KNOWN_DATASETS": "converters",
    "convert": "converters",
    "make_synthetic": "synthetic",
    "load_synthetic": "synthetic",
    "CLIP_MEAN": "transforms",
    "CLIP_STD": "transforms",
    "ImageTransform": "transforms",
    "fit_to_square": "transforms",
    "pad_to_square": "transforms",
    "to_rgb": "transforms",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover - for type checkers; at run time __getattr__ imports lazily
    from .common import ParDataError  # noqa: F401
    from .converters import KNOWN_DATASETS, convert  # noqa: F401
    from .pardata import ParData, load, positive_ratios, save  # noqa: F401
    from .synthetic import load_synthetic, make_synthetic  # noqa: F401
    from .transforms import (  # noqa: F401
        CLIP_MEAN,
        CLIP_STD,
        ImageTransform,
        fit_to_square,
        pad_to_square,
        to_rgb,
    )


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
    value = getattr(module, name)
    globals()[name] = value  # cache: later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
