"""The optional ``onnx`` extra: its packages are imported on first use, with one line
that says how to install them when they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType

#: The command that installs what ``par_prompt.onnx`` needs.
INSTALL_COMMAND = 'pip install "par-prompt[onnx]"'


class MissingExtraError(ImportError):
    """A package of the ``onnx`` extra is not installed."""


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (``onnx``, ``onnxscript`` or ``onnxruntime``) for ``purpose``
    ("exporting to ONNX", ...); :class:`MissingExtraError` naming the install command if
    it is missing or broken."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(
            f"{purpose} needs the {module} package, which is not installed ({error}); install it with "
            f"{INSTALL_COMMAND}"
        ) from error
