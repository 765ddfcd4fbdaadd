"""Layers point one way: a module of the package imports only from its own layer and the
layers below it (the README's "Development" section draws them).

Every import counts, at the top of a module or inside a function (a lazy import is still a
dependency). ``from par_prompt import X`` counts as an import of the module that defines X.
"""

from __future__ import annotations

import ast
from pathlib import Path

import par_prompt

PACKAGE = Path(par_prompt.__file__).parent

#: Bottom to top. A module's layer is that of its first name under ``par_prompt``; every
#: ``cli`` module (and ``__main__``) is the command line, wherever it lives.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    # needs nothing else of the package (or only other modules of this layer)
    ("foundation", frozenset({
        "backbone_sizes", "cache", "fileio", "hf_metrics", "losses", "metrics", "progress", "quiet", "saved_files",
        "sentences",
        "testing", "thresholds", "tiny_backbones",
    })),
    ("data and tuner", frozenset({"data", "tuner"})),
    # the model, its image processor, saving it (hub) and importing the official checkpoints into
    # it (official: the counterpart of the convert_* scripts in a transformers model folder)
    ("modeling", frozenset({"modeling", "image_processing", "hub", "official"})),
    ("inference", frozenset({"inference", "onnx"})),
    ("evaluation", frozenset({"evaluation"})),
    ("training", frozenset({"training"})),
    ("demo", frozenset({"demo"})),  # an application of the training
    ("command line", frozenset({"cli", "__main__"})),
)
LAYER_INDEX = {name: index for index, (_, names) in enumerate(LAYERS) for name in names}
COMMAND_LINE = len(LAYERS) - 1

#: Upward imports that are known and being removed, each with its reason.
ALLOWED_UPWARD: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    parts = module.split(".")
    if parts[-1] in ("cli", "__main__"):
        return COMMAND_LINE
    assert parts[1] in LAYER_INDEX, f"{module} is in no layer: add {parts[1]!r} to LAYERS in {__file__}"
    return LAYER_INDEX[parts[1]]


def root_exports() -> dict[str, str]:
    """Name -> defining module, for the names ``par_prompt/__init__.py`` imports."""
    exports = {}
    for node in ast.parse((PACKAGE / "__init__.py").read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            for alias in node.names:
                exports[alias.asname or alias.name] = f"par_prompt.{node.module}"
    return exports


def is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(path: Path) -> set[str]:
    """The package's modules that the file ``path`` imports."""
    module = module_name(path)
    return imports_of(path.read_text(), module if path.name == "__init__.py" else module.rsplit(".", 1)[0])


def imports_of(source: str, package: str) -> set[str]:
    """The package's modules that ``source``, a module of ``package``, imports (names that the
    root re-exports resolved to the module defining them)."""
    exports = root_exports()
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "par_prompt")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            if base.split(".")[0] != "par_prompt":
                continue
            for alias in node.names:
                if is_module(f"{base}.{alias.name}"):
                    found.add(f"{base}.{alias.name}")
                elif base == "par_prompt":
                    if alias.name in exports:
                        found.add(exports[alias.name])  # e.g. PromptPARModel: par_prompt.modeling
                    # else package metadata such as __version__: no layer
                else:
                    found.add(base)
    return found


def package_modules() -> list[Path]:
    """Every module but the root ``__init__`` (the public face, which imports from all layers)."""
    return sorted(path for path in PACKAGE.rglob("*.py")
                  if "__pycache__" not in path.parts and path != PACKAGE / "__init__.py")


def test_every_module_has_a_layer():
    for path in package_modules():
        layer_of(module_name(path))


def test_no_module_imports_from_a_layer_above_its_own():
    upward = []
    for path in package_modules():
        importer = module_name(path)
        for imported in sorted(imported_modules(path)):
            if layer_of(imported) > layer_of(importer) and (importer, imported) not in ALLOWED_UPWARD:
                upward.append(f"{importer} ({LAYERS[layer_of(importer)][0]}) imports {imported} "
                              f"({LAYERS[layer_of(imported)][0]})")
    assert upward == [], "upward imports:\n" + "\n".join(upward)


def test_the_allowed_exceptions_still_exist():
    """An exception that no longer occurs must leave the list (so it cannot hide a new one)."""
    for importer, imported in ALLOWED_UPWARD:
        path = PACKAGE.parent.joinpath(*importer.split(".")).with_suffix(".py")
        assert imported in imported_modules(path), f"{importer} no longer imports {imported}: remove the exception"


def test_nothing_in_the_package_uses_the_compatibility_module_testing():
    users = [module_name(path) for path in package_modules() if "par_prompt.testing" in imported_modules(path)]
    assert users == ["par_prompt.testing"] or users == []


def test_the_checker_sees_upward_imports():
    """The test above can fail: the edges it must refuse are seen, lazy imports included."""
    assert layer_of("par_prompt.demo") > layer_of("par_prompt.training.loop")
    assert layer_of("par_prompt.modeling.fusion") > layer_of("par_prompt.data.synthetic")
    assert layer_of("par_prompt.inference.predict") > layer_of("par_prompt.modeling.modeling_promptpar")
    assert layer_of("par_prompt.training.cli") > layer_of("par_prompt.demo")  # the CLI may run the demo
    source = ("from ..fileio import write_json_atomic\n"
              "def f():\n    from ..demo import train_demo\n    from .. import PromptPARModel, __version__\n"
              "    import par_prompt.inference.predict\n    from . import data\n")
    assert imports_of(source, "par_prompt.training") == {
        "par_prompt.fileio", "par_prompt.demo", "par_prompt.modeling", "par_prompt.inference.predict",
        "par_prompt.training.data"}


def test_saved_file_names_are_a_leaf_and_the_hub_does_not_call_back_into_the_model():
    """One module names the saved files and imports nothing of the package; serialization and
    the Hub upload both read the names from it, and only the model calls the upload (the Hub
    code works on saved folders and configs, never on the model's code)."""
    assert imported_modules(PACKAGE / "saved_files.py") == set()
    hub = imported_modules(PACKAGE / "hub.py")
    assert not {name for name in hub if name.startswith("par_prompt.modeling")}, hub
    assert "par_prompt.saved_files" in hub
    assert "par_prompt.saved_files" in imported_modules(PACKAGE / "modeling" / "serialization.py")
