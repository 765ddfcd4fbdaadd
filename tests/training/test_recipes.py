"""Recipes (--recipe), settings files (--config) and the command line, in that order of
precedence; the resolved settings written to the output directory."""

from __future__ import annotations

import ast
import fnmatch
import json

import pytest

from par_prompt.training import resolve_arguments
from par_prompt.training.arguments import PAPER_DEFAULTS
from par_prompt.training.recipe import build_arguments, load_recipe, recipe_names

from .conftest import ROOT

ALL = ("pa100k", "peta", "rapv1", "rapv2", "wider", "peta_zs", "rap_zs")
#: docs/method.md §8 and the paper: smaller rates on WIDER and the zero-shot splits.
LOW_RATES = ("wider", "peta_zs", "rap_zs")


def test_every_paper_data_set_has_a_recipe():
    assert sorted(recipe_names()) == sorted(ALL)


@pytest.mark.parametrize("name", ALL)
def test_a_recipe_is_the_papers_setting_for_its_data_set(name):
    model, data, training, sources = build_arguments({"data_dir": "data/x"}, recipe=name)
    model, data, training = resolve_arguments(model, data, training)
    assert sources["recipe"] == name and data.dataset == name
    expected = (2e-3, 1e-3) if name in LOW_RATES else (8e-3, 4e-3)
    assert (training.lr_head, training.lr_prompt) == expected
    assert isinstance(training.lr_head, float) and isinstance(training.lr_prompt, float)
    assert model.clip == "openai/clip-vit-large-patch14" and model.fusion == "google/vit-base-patch16-224"
    paper = PAPER_DEFAULTS["training"]
    assert (training.epochs, training.batch_size, training.warmup_epochs) == (
        paper["epochs"], paper["batch_size"], paper["warmup_epochs"])
    assert (training.momentum, training.weight_decay, training.warmup_start_factor, training.max_grad_norm) == (
        0.9, 1e-4, 0.01, 10.0)
    assert (model.num_regions, model.overlap_rows, model.prompts_per_group, model.text_prompts,
            model.fusion_layers, model.gl_alpha) == (4, 2, 10, 3, 1, 0.5)


def test_recipe_names_are_case_insensitive():
    assert load_recipe("PETA-ZS") == load_recipe("peta_zs")


def test_command_line_overrides_the_file_which_overrides_the_recipe(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("recipe: wider\nepochs: 7\nlr-head: 1e-2   # YAML 1.1 reads this as a string\n"
                      "data_dir: data/wider\n")
    model, data, training, sources = build_arguments({"epochs": 9}, config=config)
    assert training.epochs == 9  # command line
    assert training.lr_head == 0.01  # the file (a number, although YAML read a string)
    assert training.lr_prompt == 1e-3 and data.dataset == "wider"  # the recipe named in the file
    assert sources == {"recipe": "wider", "config": str(config), "command_line": ["epochs"]}
    _, _, training, sources = build_arguments({}, recipe="pa100k", config=config)
    assert training.lr_prompt == 4e-3 and sources["recipe"] == "pa100k"  # --recipe beats the file's recipe


def test_json_files_and_an_earlier_runs_training_args(tmp_path):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"epochs": 3, "batch-size": 8}))
    _, _, training, _ = build_arguments({}, config=config)
    assert (training.epochs, training.batch_size) == (3, 8)
    record = tmp_path / "training_args.json"
    record.write_text(json.dumps({"arguments": {"epochs": 5, "seed": 3, "dataset": "synthetic"},
                                  "sources": {}, "resume": {}, "version": "0"}))
    _, data, training, _ = build_arguments({}, config=record)
    assert (training.epochs, training.seed, data.dataset) == (5, 3, "synthetic")


def test_recipes_are_shipped_in_the_wheel():
    pyproject = (ROOT / "pyproject.toml").read_text()
    section = pyproject[pyproject.index("[tool.setuptools.package-data]"):]
    line = next(line for line in section.splitlines() if line.startswith("par_prompt"))
    patterns = ast.literal_eval(line.split("=", 1)[1].strip())
    folder = ROOT / "src" / "par_prompt" / "training" / "recipes"
    files = sorted(folder.iterdir())
    assert len(files) == len(ALL)
    for path in files:
        relative = path.relative_to(ROOT / "src" / "par_prompt").as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative
