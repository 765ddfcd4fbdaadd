"""A restricted unpickler for the data set pickles of Rethinking_of_PAR and OpenPAR.

Unpickling can run arbitrary code: every global a pickle names is imported and may be
called. :func:`load_split_pickle` therefore resolves globals through a fixed allow-list
and refuses everything else with :class:`UnsafePickleError` (a
``pickle.UnpicklingError``) naming the refused global, before anything is called.

Admitted, and nothing more:

- numpy array and scalar reconstruction: ``numpy.core.multiarray._reconstruct`` and
  ``numpy._core.multiarray._reconstruct`` (numpy 1 and 2 spellings), ``...scalar``,
  ``numpy.core.numeric._frombuffer`` (protocol 5), ``numpy.ndarray``, ``numpy.dtype``;
- plain containers from ``builtins``: ``list``, ``dict``, ``tuple``, ``set``,
  ``frozenset``, ``range``, ``slice``, ``complex``, ``bytearray``, ``object`` (only as
  the base class for ``copyreg._reconstructor``), and ``collections.OrderedDict``;
- ``_codecs.encode`` / ``codecs.encode`` with the latin-1 codec only (protocol-2 pickles
  store ``bytes`` that way);
- ``easydict.EasyDict``, the attribute dictionary the files use, mapped to
  :class:`AttrDict` (easydict itself is never imported);
- ``copyreg._reconstructor`` (protocol 0/1 objects), checked to build only an
  :class:`AttrDict` or an ``OrderedDict``.
"""

from __future__ import annotations

import _compat_pickle
import collections
import copyreg
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list."""


class AttrDict(dict):
    """A plain ``dict`` whose keys can also be read as attributes (stands in for EasyDict)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setstate__(self, state: Any) -> None:
        # EasyDict pickles its items and, as object state, a ``__dict__`` mirroring them.
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = state[0]
        if isinstance(state, dict):
            for key, value in state.items():
                self.setdefault(key, value)


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refused codecs.encode with codec {encoding!r}: only latin-1 is allowed")
    return text.encode("latin-1", errors)


_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's array reconstructor, whichever module holds it
_SCALAR = np.float64(0).__reduce__()[0]  # numpy's scalar reconstructor
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]  # protocol-5 array reconstructor


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    if cls not in (AttrDict, collections.OrderedDict) or base not in (object, dict):
        raise UnsafePickleError(f"refused copyreg._reconstructor({cls!r}, {base!r}, ...)")
    return copyreg._reconstructor(cls, base, state)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("builtins", "list"): list,
    ("builtins", "dict"): dict,
    ("builtins", "tuple"): tuple,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "range"): range,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "object"): object,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): _latin1_encode,
    ("codecs", "encode"): _latin1_encode,
    ("easydict", "EasyDict"): AttrDict,
    ("copyreg", "_reconstructor"): _reconstructor,
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose globals come only from the allow-list above."""

    def __init__(self, file: BinaryIO, source: str = "<pickle>"):
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 spellings (``__builtin__.xrange``, ``copy_reg``), mapped as pickle's own
        # find_class maps them; the allow-list below stays the only gate.
        key = _compat_pickle.NAME_MAPPING.get(
            (module, name), (_compat_pickle.IMPORT_MAPPING.get(module, module), name)
        )
        if key not in _ALLOWED:
            raise UnsafePickleError(
                f"refused to load global '{module}.{name}' from {self.source}: only numpy arrays, "
                "plain containers and easydict.EasyDict are allowed in a data set pickle"
            )
        return _ALLOWED[key]

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"refused persistent id {pid!r} in {self.source}")


def load_split_pickle(path: str | Path) -> Any:
    """Load a split file with :class:`RestrictedUnpickler` (EasyDicts become :class:`AttrDict`)."""
    from .files import open_regular

    path = Path(path)
    with open_regular(path, "pickle file") as handle:
        return RestrictedUnpickler(handle, source=str(path)).load()


def loads(data: bytes, source: str = "<bytes>") -> Any:
    """:func:`load_split_pickle` for bytes in memory."""
    import io

    return RestrictedUnpickler(io.BytesIO(data), source=source).load()
