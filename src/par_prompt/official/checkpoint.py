"""Reading an official PromptPAR checkpoint without running any of its code.

The official ``train.py`` saves, with ``torch.save``, a dict of:

=====================  ===========================================================
``epoch``              the epoch number (int)
``optimizer``          the SGD state of the classifier's parameters
``model_state_dict``   the classifier (fusion block, heads, BatchNorm), float32
``clip_model``         the prompted CLIP, mostly float16; the official test scripts
                       read it as ``ViT_model``, and published files may use either
``result``             the validation metrics, an ``easydict.EasyDict`` of numpy
                       arrays and numpy floats
=====================  ===========================================================

The tensors were on ``cuda:0`` when saved. The file is read with
``torch.load(weights_only=True)`` on the CPU, which rebuilds only tensors and plain
containers; the allow-list adds exactly what the ``result`` entry needs (the EasyDict,
read as an ``OrderedDict``, and numpy's array and scalar constructors, under the names
numpy 1.x and numpy 2 write). Anything else -- a class, a function, code -- is refused
with an error naming the global the file asked for.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch

from .errors import OfficialCheckpointError

#: Keys under which the CLIP state dict may be stored (train.py, the test scripts).
CLIP_KEYS = ("clip_model", "ViT_model")
CLASSIFIER_KEY = "model_state_dict"
#: Entries the importer reads for the model card only, or leaves out on purpose.
METADATA_KEYS = ("epoch", "optimizer", "result")
#: Metrics of the official ``result`` object, in the paper's column order.
RESULT_METRICS = (("ma", "mA"), ("instance_acc", "Acc"), ("instance_prec", "Prec"), ("instance_recall", "Rec"),
                  ("instance_f1", "F1"))


def _safe_globals() -> list:
    import numpy as np

    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray

    # numpy >= 2 builds each dtype as an instance of its own class (numpy.dtypes.Float64DType, ...),
    # which the loader checks before restoring its state; numpy 1.x uses numpy.dtype itself.
    dtype_classes = {type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"}
    allowed: list = [(OrderedDict, "easydict.EasyDict"), np.ndarray, np.dtype, *sorted(dtype_classes, key=str)]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed += [(multiarray._reconstruct, f"{module}._reconstruct"), (multiarray.scalar, f"{module}.scalar")]
    return allowed


@dataclass
class OfficialCheckpoint:
    """The parts of an official checkpoint the importer uses.

    Attributes:
        path: the file.
        clip_state: the CLIP state dict (OpenAI layout, with the prompts), on the CPU.
        classifier_state: the TransformerClassifier's state dict.
        clip_key: the key the CLIP weights were stored under.
        epoch: the saved epoch, when the file records it.
        result: the stored validation metrics that are numbers (e.g. ``{"mA": 0.87}``).
    """

    path: Path
    clip_state: dict[str, torch.Tensor]
    classifier_state: dict[str, torch.Tensor]
    clip_key: str
    epoch: Optional[int] = None
    result: dict[str, float] = field(default_factory=dict)

    def sha256(self) -> str:
        """The SHA-256 of the file (read in 16 MiB chunks)."""
        digest = hashlib.sha256()
        with open(self.path, "rb") as handle:
            for chunk in iter(lambda: handle.read(16 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()


def _refused(path: Path, error: pickle.UnpicklingError) -> OfficialCheckpointError:
    text = " ".join(str(error).split())
    if match := re.search(r"GLOBAL (\S+)", text):
        what = f"the Python global {match.group(1)!r}"
    elif match := re.search(r"got <class '([^']+)'>", text):
        what = f"an object of type {match.group(1)!r}"
    elif match := re.search(r"unrecognized function (\S+)", text):
        what = f"a call of {match.group(1)}"
    else:
        reason = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", text)
        what = f"something it may not build ({(reason.group(1) if reason else text)[:200]})"
    return OfficialCheckpointError(
        f"{path} asks to unpickle {what}, which an official PromptPAR checkpoint does not need; refusing to load it "
        "(unpickling it could run code). Re-save the file with only tensors, or get it from the official source."
    )


def _asks_for_code(error: pickle.UnpicklingError) -> bool:
    """Whether the safe loader refused an object (a global, a type, a call), as opposed to
    failing on bytes that are no torch.save file at all (a plain pickle, a damaged file)."""
    text = " ".join(str(error).split())
    return bool(re.search(r"GLOBAL \S+|got <class '|unrecognized function ", text))


def _unreadable(path: Path, error: BaseException) -> OfficialCheckpointError:
    reason = " ".join(str(error).split())[:200] or type(error).__name__
    return OfficialCheckpointError(
        f"{path} is not a readable PyTorch checkpoint ({reason}). Check that the download is complete and that "
        "it is the .pth file the official code saved."
    )


def _load(path: Path) -> Any:
    with torch.serialization.safe_globals(_safe_globals()):
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):
                raise
            # Files in the legacy (pre-zip) format cannot be memory-mapped.
            return torch.load(path, map_location="cpu", weights_only=True)


def read_checkpoint(path: Union[str, Path]) -> OfficialCheckpoint:
    """Read ``path`` safely (see the module docstring) and pick out its parts.

    Raises :class:`OfficialCheckpointError` for a missing or unreadable file, a file that
    needs anything beyond the allow-list, a file that is not a dict with a classifier
    and one CLIP state dict, and top-level entries the official code never writes.
    """
    path = Path(path)
    if not path.is_file():
        raise OfficialCheckpointError(f"{path} is not a file; give the path of the official checkpoint (.pth).")
    try:
        with warnings.catch_warnings():  # torch warns about a plain pickle before refusing it: the error says it
            warnings.simplefilter("ignore")
            blob = _load(path)
    except pickle.UnpicklingError as error:
        if _asks_for_code(error):
            raise _refused(path, error) from error
        raise _unreadable(path, error) from error
    except Exception as error:  # noqa: BLE001 - a damaged file makes the unpickler fail in many ways
        raise _unreadable(path, error) from error
    if not isinstance(blob, Mapping):
        raise OfficialCheckpointError(
            f"{path} holds a {type(blob).__name__}, not the dict the official train.py saves "
            f"({CLASSIFIER_KEY!r} and {' or '.join(map(repr, CLIP_KEYS))})."
        )
    clip_keys = [key for key in CLIP_KEYS if key in blob]
    if CLASSIFIER_KEY not in blob or len(clip_keys) != 1:
        problem = (f"both {clip_keys[0]!r} and {clip_keys[1]!r}" if len(clip_keys) == 2
                   else f"entries {sorted(map(str, blob))}")
        raise OfficialCheckpointError(
            f"{path} is not an official PromptPAR checkpoint: it has {problem}, but one needs {CLASSIFIER_KEY!r} and "
            f"exactly one of {' or '.join(map(repr, CLIP_KEYS))}."
        )
    unknown = sorted(str(key) for key in blob if key not in (CLASSIFIER_KEY, *CLIP_KEYS, *METADATA_KEYS))
    if unknown:
        raise OfficialCheckpointError(
            f"{path} has entries the official code does not write: {unknown}; nothing of them would be imported. "
            f"Re-save it with only {CLASSIFIER_KEY!r}, {clip_keys[0]!r} and {', '.join(map(repr, METADATA_KEYS))}."
        )
    clip_state = _state_dict(blob[clip_keys[0]], clip_keys[0], path)
    classifier_state = _state_dict(blob[CLASSIFIER_KEY], CLASSIFIER_KEY, path)
    epoch = blob.get("epoch")
    return OfficialCheckpoint(
        path=path, clip_state=clip_state, classifier_state=classifier_state, clip_key=clip_keys[0],
        epoch=int(epoch) if isinstance(epoch, int) and not isinstance(epoch, bool) else None,
        result=_result_metrics(blob.get("result")),
    )


def _state_dict(value: Any, key: str, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(value, Mapping):
        raise OfficialCheckpointError(f"{path}: {key!r} holds a {type(value).__name__}, not a state dict.")
    not_tensors = sorted(str(name) for name, tensor in value.items() if not isinstance(tensor, torch.Tensor))
    if not_tensors:
        raise OfficialCheckpointError(f"{path}: {key!r} holds entries that are not tensors: {not_tensors[:10]}.")
    return dict(value)


def _result_metrics(result: Any) -> dict[str, float]:
    """The numeric paper metrics of the official ``result`` object (fractions), when present."""
    if not isinstance(result, Mapping):
        return {}
    metrics = {}
    for key, name in RESULT_METRICS:
        value = result.get(key)
        try:
            metrics[name] = float(value)
        except (TypeError, ValueError):
            continue
    return metrics
