"""Training settings from a packaged recipe, a user's file and the command line.

``par-prompt train --recipe NAME --config FILE --flag value ...`` resolves its settings
in layers, each overriding the one before:

1. the defaults of the argument dataclasses (the paper's recipe with ``--clip``, the demo's
   without, see :mod:`par_prompt.training.arguments` and :mod:`par_prompt.demo`);
2. ``--recipe NAME``: a YAML file shipped in ``par_prompt/training/recipes/``, the paper's
   setting for one data set (:func:`recipe_names`; WIDER and the zero-shot splits use the
   paper's smaller learning rates);
3. ``--config FILE``: the user's YAML or JSON file of options (a mapping from option
   names, with dashes or underscores, to values; ``recipe: NAME`` in it picks a recipe,
   and an earlier run's ``OUTPUT/training_args.json`` works too);
4. the flags given on the command line.

Unknown keys, keys given twice (also in JSON, or once with dashes and once with
underscores), values of the wrong type and unreadable files are ``ValueError`` s naming
the file and the key. YAML is read with PyYAML's safe loader (no code, no custom tags).
:func:`build_arguments` is the Python entry point to the same resolution.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from .arguments import DataArguments, ModelArguments, TrainingArguments, _has_type, _type_name

__all__ = ["ARGUMENT_GROUPS", "build_arguments", "load_recipe", "load_settings_file", "recipe_names"]

ARGUMENT_GROUPS = (ModelArguments, DataArguments, TrainingArguments)
RECIPE_DIR = "recipes"
#: Keys of a settings file that are not options.
FILE_KEYS = ("recipe",)


def argument_names() -> list[str]:
    return [f.name for group in ARGUMENT_GROUPS for f in dataclasses.fields(group)]


def recipe_names() -> list[str]:
    """The packaged recipes, e.g. ``["pa100k", "peta", ...]``."""
    folder = resources.files("par_prompt.training").joinpath(RECIPE_DIR)
    return sorted(entry.name[:-len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def load_recipe(name: str) -> dict[str, Any]:
    """The settings of the packaged recipe ``name`` (case-insensitive, ``-`` or ``_``)."""
    key = str(name).strip().lower().replace("-", "_")
    names = recipe_names()
    if key not in names:
        close = difflib.get_close_matches(key, names, n=1)
        raise ValueError(f"--recipe {name!r} is not a recipe; choose from {', '.join(names)}"
                         + (f" (did you mean {close[0]}?)" if close else "") + ".")
    text = resources.files("par_prompt.training").joinpath(RECIPE_DIR, f"{key}.yaml").read_text(encoding="utf-8")
    return _checked(_parse_yaml(text, f"recipe {key}"), f"recipe {key}")


def load_settings_file(path: Union[str, os.PathLike]) -> dict[str, Any]:
    """The options in a user's ``.yaml`` / ``.yml`` / ``.json`` file (see the module docstring)."""
    path = Path(path).expanduser()
    what = f"--config {path}"
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise ValueError(f"{what}: the file must end in .yaml, .yml or .json.")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not YAML
    except FileNotFoundError:
        raise ValueError(f"{what}: no such file.") from None
    except IsADirectoryError:
        raise ValueError(f"{what}: is a directory; pass a .yaml or .json file.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{what}: cannot be read ({error}).") from None
    if suffix == ".json":
        try:
            values = json.loads(text, object_pairs_hook=_unique_pairs)
        except _DuplicateKey as error:
            raise ValueError(f"{what}: key {error.key!r} is given twice; keep one.") from None
        except ValueError as error:
            raise ValueError(f"{what}: not valid JSON ({error}).") from None
    else:
        values = _parse_yaml(text, what)
    if isinstance(values, Mapping) and isinstance(values.get("arguments"), Mapping) \
            and set(values) <= {"arguments", "sources", "resume", "version"}:
        values = values["arguments"]  # an earlier run's training_args.json
    return _checked(values, what)


class _DuplicateKey(Exception):
    """A mapping key given twice in a settings file (``lines``: where, for YAML)."""

    def __init__(self, key: Any, lines: tuple[int, int] = (0, 0)) -> None:
        super().__init__(key)
        self.key, self.lines = key, lines


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``' object hook: a dict, refusing a key given twice (JSON keeps the last)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _unique_key_loader():
    """PyYAML's ``SafeLoader``, refusing a mapping key given twice (PyYAML keeps the last).
    Keys brought in by a merge (``<<: *anchor``) may still be overridden, as YAML intends."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen: dict[Any, int] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
                    try:
                        if key in seen:
                            raise _DuplicateKey(key, (seen[key], line))
                        seen[key] = line
                    except TypeError:  # an unhashable key: SafeLoader reports it
                        continue
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def _parse_yaml(text: str, what: str) -> Any:
    try:
        import yaml
    except ImportError:  # pragma: no cover - a dependency of transformers and accelerate
        raise ValueError(f"{what}: reading YAML needs PyYAML (pip install pyyaml), or use a .json file.") from None
    try:
        return yaml.load(text, Loader=_unique_key_loader())  # a SafeLoader subclass: no code, no custom tags
    except _DuplicateKey as error:
        first, second = error.lines
        lines = f" (lines {first} and {second})" if first != second else f" (line {first})"
        raise ValueError(f"{what}: key {error.key!r} is given twice{lines}; keep one.") from None
    except yaml.YAMLError as error:
        raise ValueError(f"{what}: not valid YAML ({' '.join(str(error).split())}).") from None


def _checked(values: Any, what: str) -> dict[str, Any]:
    """Keys normalised to option names (dashes to underscores), unknown keys refused, and
    numbers written as strings (YAML 1.1 reads ``1e-3`` as a string) converted."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ValueError(f"{what}: must hold a mapping of option names to values, not a {type(values).__name__}.")
    known = argument_names()
    out: dict[str, Any] = {}
    spelled: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).strip().lstrip("-").replace("-", "_")
        if name not in known and name not in FILE_KEYS:
            close = difflib.get_close_matches(name, known, n=1)
            raise ValueError(f"{what}: unknown option {key!r}" + (f" (did you mean {close[0]}?)" if close else "")
                             + "; see `par-prompt train --help` for the options.")
        if name in out:
            raise ValueError(f"{what}: option {name!r} is given twice (as {spelled[name]!r} and {key!r}); keep one.")
        spelled[name] = key
        value = _number(name, value)
        if name not in FILE_KEYS and not _has_type(value, _field_types()[name]):
            raise ValueError(f"{what}: {name} must be {_type_name(_field_types()[name])}; got {value!r}.")
        out[name] = value
    return out


def _field_types() -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for group in ARGUMENT_GROUPS:
        hints.update(typing.get_type_hints(group))
    return hints


def _number(name: str, value: Any) -> Any:
    if name not in FILE_KEYS and isinstance(value, str):
        kinds = typing.get_args(_field_types()[name]) or (_field_types()[name],)
        if float in kinds and str not in kinds:
            try:
                return float(value)
            except ValueError:
                return value  # reported with the option's type by check_arguments
    return value


def build_arguments(overrides: Optional[Mapping[str, Any]] = None, *, recipe: Optional[str] = None,
                    config: Union[None, str, os.PathLike] = None):
    """``(ModelArguments, DataArguments, TrainingArguments, sources)`` from a recipe, a
    settings file and explicit ``overrides`` (see the module docstring).

    ``sources`` records where the settings came from: ``{"recipe": name or None,
    "config": absolute path or None, "command_line": [option names]}``.
    """
    overrides = _checked(dict(overrides or {}), "command line")
    file_values = load_settings_file(config) if config is not None else {}
    recipe = recipe if recipe is not None else file_values.pop("recipe", None)
    file_values.pop("recipe", None)
    if recipe is not None and not isinstance(recipe, str):
        raise ValueError(f"--config {config}: recipe must be a name such as pa100k, got {recipe!r}.")
    values = load_recipe(recipe) if recipe is not None else {}
    values.pop("recipe", None)
    values.update(file_values)
    values.update({k: v for k, v in overrides.items() if k not in FILE_KEYS})
    groups = []
    for group in ARGUMENT_GROUPS:
        names = {f.name for f in dataclasses.fields(group)}
        try:
            groups.append(group(**{k: v for k, v in values.items() if k in names}))
        except TypeError as error:  # pragma: no cover - keys are checked above
            raise ValueError(str(error)) from None
    sources = {"recipe": recipe.lower().replace("-", "_") if recipe else None,
               "config": str(Path(config).expanduser().absolute()) if config is not None else None,
               "command_line": sorted(overrides)}
    return (*groups, sources)
