"""Reading MATLAB v5 ``.mat`` annotation files with clear errors.

PA100K, PETA and RAP ship their annotations as classic (v5) ``.mat`` files, which
``scipy.io.loadmat`` reads. Files are loaded with ``squeeze_me=False`` and
``struct_as_record=True``, so every value keeps its MATLAB shape: a struct is a 1×1
record array, a cell array an object array, a string a 1-element unicode array. The
helpers below navigate that form and turn each failure into a
:class:`~par_prompt.data.common.ParDataError` naming the field and the file.

Struct fields are looked up by name (with the known spelling variants) and, where the
official preprocessing scripts read a field by its position, by that position when no
name matches. The index vectors of a partition struct are read by position, as those
scripts do, whatever the fields are called (:meth:`MatStruct.index_fields`): only when
every field carries a known name are the names used instead. Any failure to read the
file (empty, truncated, not a MATLAB file) is one :class:`ParDataError` naming it.

MATLAB v7.3 files are HDF5 containers that scipy cannot read; they are refused with an
explanation (re-save as v7 in MATLAB, ``save(file, '-v7')``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .common import ParDataError


def load_mat(path: Path) -> dict[str, Any]:
    """Load a v5 ``.mat`` file (scipy imported lazily; a clear error if it is missing)."""
    try:
        import scipy.io
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading the .mat annotation files of PA100K, PETA and RAP needs scipy: pip install scipy"
        ) from error
    from .files import open_regular

    if not path.exists():
        raise ParDataError(f"annotation file not found: {path}")
    with open_regular(path, "annotation file") as handle:
        try:
            mat = scipy.io.loadmat(handle, squeeze_me=False, struct_as_record=True, chars_as_strings=True)
        except NotImplementedError as error:  # scipy's answer to v7.3 / HDF5
            raise ParDataError(
                f"{path} is a MATLAB v7.3 (HDF5) file, which is not supported: the benchmark is "
                "distributed as a v5 .mat file; re-save it in MATLAB with save(file, '-v7')"
            ) from error
        except Exception as error:  # noqa: BLE001 - scipy's parser raises many kinds on a bad file
            detail = str(error) or type(error).__name__
            raise ParDataError(
                f"cannot read {path} as a MATLAB .mat file ({detail}); the file is empty, truncated or "
                "not a .mat file: download it again"
            ) from error
    if not any(not key.startswith("__") for key in mat):
        raise ParDataError(f"{path} holds no MATLAB variables (an empty .mat file); download it again")
    return mat


class MatStruct:
    """A 1×1 MATLAB struct with field access by name and errors naming the file."""

    def __init__(self, value: Any, where: str, path: Path):
        array = np.asarray(value)
        if array.dtype.names is None or array.size != 1:
            raise ParDataError(f"{path}: {where} should be a 1×1 MATLAB struct, got {_describe(array)}")
        self.record = array.reshape(-1)[0]
        self.names = tuple(array.dtype.names)
        self.where = where
        self.path = path

    def has(self, name: str) -> bool:
        return name in self.names

    def field(self, *names: str, position: int | None = None) -> Any:
        """The value of the first of ``names`` present (aliases cover spelling variants).

        With ``position``, a struct whose field of that name is missing gives its field
        number ``position`` (0-based) instead, as the official scripts read it.
        """
        for name in names:
            if name in self.names:
                return self.record[name]
        if position is not None and position < len(self.names):
            return self.record[self.names[position]]
        raise ParDataError(
            f"{self.path}: field {names[0]!r} is missing from {self.where}"
            + (f" (also looked for {list(names[1:])})" if len(names) > 1 else "")
            + f"; it has {list(self.names)}"
        )

    def index_fields(self, roles: dict[str, tuple[str, ...]], size: int) -> dict[str, np.ndarray]:
        """The index vectors of a partition struct, 0-based, one per role (e.g. ``train``).

        ``roles`` maps each role, in the file's order, to its known field names. The
        struct must hold exactly one field per role; they are read by position, unless
        every role finds one of its names (then by name, whatever the order).
        """
        by_name = all(any(alias in self.names for alias in aliases) for aliases in roles.values())
        if not by_name and len(self.names) != len(roles):
            raise ParDataError(
                f"{self.path}: {self.where} should hold {len(roles)} index vectors ({', '.join(roles)}, in "
                f"that order); it has {len(self.names)} fields {list(self.names)}"
            )
        out = {}
        for position, (role, aliases) in enumerate(roles.items()):
            name = next(a for a in aliases if a in self.names) if by_name else self.names[position]
            indices = index_vector(self.record[name], f"{self.where}.{name} ({role})", self.path, size)
            if indices.size == 0:
                raise ParDataError(f"{self.path}: {self.where}.{name} ({role}) holds no indices")
            out[role] = indices
        return out

    def indices(self, name: str, size: int) -> np.ndarray:
        """Field ``name`` as 0-based row indices (see :func:`index_vector`)."""
        return index_vector(self.field(name), f"{self.where}.{name}", self.path, size)

    def partition(self, partition: int, *names: str, position: int | None = None) -> MatStruct:
        """Struct number ``partition`` (0-based) of the cell array in field ``names``."""
        partitions = cell_items(self.field(*names, position=position))
        if not 0 <= partition < len(partitions):
            raise ParDataError(
                f"{self.path}: partition {partition} requested, the file has {len(partitions)} "
                f"(0..{len(partitions) - 1})"
            )
        return MatStruct(partitions[partition], f"{self.where}.{names[0]}{{{partition + 1}}}", self.path)


def _describe(array: np.ndarray) -> str:
    return f"an array of shape {array.shape} and dtype {array.dtype}"


def top_level(mat: dict[str, Any], name: str, path: Path) -> Any:
    """A top-level variable of a loaded ``.mat`` file."""
    if name not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise ParDataError(f"{path}: field {name!r} is missing; the file holds {found}")
    return mat[name]


def cell_items(value: Any) -> list[Any]:
    """The elements of a cell array (any shape), in MATLAB's column-major order."""
    array = np.asarray(value)
    if array.dtype != object:
        return [array]
    return list(array.ravel(order="F"))


def _string(item: Any, where: str, path: Path) -> str:
    array = np.asarray(item)
    if array.dtype == object and array.size == 1:  # a nested 1×1 cell
        return _string(array.reshape(-1)[0], where, path)
    if array.dtype.kind == "U":
        return "".join(str(s) for s in array.ravel()).strip()
    raise ParDataError(f"{path}: {where} should hold strings, got {_describe(array)}")


def strings(value: Any, where: str, path: Path) -> list[str]:
    """A cell array of strings (or a char matrix, one string per row) as a list."""
    array = np.asarray(value)
    if array.dtype.kind == "U":  # char matrix: one string per row
        if array.ndim == 2 and array.shape[1] == 1:
            return [str(s).strip() for s in array[:, 0]]
        return [str(s).strip() for s in array.ravel()]
    if array.dtype != object:
        raise ParDataError(f"{path}: {where} should be a cell array of strings, got {_describe(array)}")
    return [_string(item, f"{where}{{{i + 1}}}", path) for i, item in enumerate(cell_items(array))]


def matrix(value: Any, where: str, path: Path) -> np.ndarray:
    """A numeric 2-D matrix."""
    array = np.asarray(value)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise ParDataError(f"{path}: {where} should be a numeric matrix, got {_describe(array)}")
    return array


def index_vector(value: Any, where: str, path: Path, size: int) -> np.ndarray:
    """A vector of 1-based (MATLAB) indices into ``size`` rows, returned 0-based (int64)."""
    array = np.asarray(value)
    if array.dtype == object and array.size == 1:
        array = np.asarray(array.reshape(-1)[0])
    if not np.issubdtype(array.dtype, np.number):
        raise ParDataError(f"{path}: {where} should be a vector of indices, got {_describe(array)}")
    if array.ndim > 2 or (array.ndim == 2 and min(array.shape) > 1):
        raise ParDataError(f"{path}: {where} should be a vector of indices, got shape {array.shape}")
    flat = array.ravel()
    if flat.size and (not np.all(np.isfinite(flat)) or np.any(flat != np.round(flat))):
        raise ParDataError(f"{path}: {where} holds non-integer indices")
    indices = flat.astype(np.int64)
    if indices.size and (indices.min() < 1 or indices.max() > size):
        raise ParDataError(
            f"{path}: {where} holds indices outside 1..{size} (MATLAB indices are 1-based): "
            f"min {indices.min()}, max {indices.max()}"
        )
    return indices - 1
