"""Layers point one way: the model code imports neither the layers above it (inference,
evaluation, training, the CLI, the converters) nor the demo; the file names are a leaf."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "par_prompt"
ABOVE_MODELING = ("inference", "evaluation", "training", "official", "onnx", "cli", "demo", "testing")


def imported_modules(path: Path, source: str | None = None) -> set[str]:
    """Every par_prompt module that ``path`` (or ``source``, as if it were that file)
    imports, at any level (functions included), as a dotted name relative to the
    package (``inference.predict``)."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    package = parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                names = [".".join(base + ([node.module] if node.module else []))]
                if not node.module:
                    names = [".".join(base + [alias.name]) for alias in node.names]
            elif (node.module or "").startswith("par_prompt."):
                names = [node.module[len("par_prompt."):]]
            else:
                continue
            found.update(name.strip(".") for name in names)
        elif isinstance(node, ast.Import):
            found.update(a.name[len("par_prompt."):] for a in node.names if a.name.startswith("par_prompt."))
    return found


@pytest.mark.parametrize("path", sorted((PACKAGE / "modeling").glob("*.py")), ids=lambda p: p.name)
def test_modeling_imports_nothing_above_it(path):
    above = sorted(m for m in imported_modules(path) if m.split(".")[0] in ABOVE_MODELING)
    assert above == [], f"{path.name} imports {above}"


@pytest.mark.parametrize("name", ["saved_files.py", "hub.py", "image_processing.py"])
def test_lower_modules_do_not_import_modeling(name):
    assert not [m for m in imported_modules(PACKAGE / name) if m.split(".")[0] in ("modeling", *ABOVE_MODELING)]


def test_the_scan_sees_function_level_imports():
    """The check can fail: the import PromptPARModel.predict used to make is found."""
    source = "def predict(self):\n    from ..inference.predict import predict\n"
    assert imported_modules(PACKAGE / "modeling" / "modeling_promptpar.py", source) == {"inference.predict"}
