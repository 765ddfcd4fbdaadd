"""The demo: cached, keyed, atomic, deterministic backbones; demo defaults; an application of the
training that the training does not know; documented options."""

import dataclasses
import json

import pytest
import torch
from transformers import HfArgumentParser

from par_prompt import demo
from par_prompt.cache import cache_root
from par_prompt.data import load_synthetic
from par_prompt.demo import DEMO_DEFAULTS, DemoSettings, demo_backbones
from par_prompt.fileio import read_safetensors
from par_prompt.training import DataArguments, ModelArguments, TrainingArguments, resolve_arguments
from par_prompt.training.arguments import PAPER_DEFAULTS

#: Seconds, not minutes: the same code path as the demo's settings, at toy sizes.
TOY = DemoSettings(image_size=32, patch_size=8, vision_width=16, vision_layers=1, vision_heads=2, text_width=16,
                   text_layers=1, text_heads=2, projection_dim=16, fusion_width=16, fusion_heads=2,
                   pretrain_images=16, pretrain_steps=3, pretrain_batch_size=8, pretrain_warmup_steps=1)


def _clip_weights(backbones):
    return read_safetensors(f"{backbones.clip}/model.safetensors", "clip")


def test_backbones_are_built_once_and_keyed_by_the_settings(tmp_path, monkeypatch):
    first = demo_backbones(tmp_path, TOY, verbose=False)
    folder = tmp_path / f"demo-backbones-{TOY.key()}"
    assert first.clip == str(folder / "clip") and (folder / "settings.json").is_file()
    assert "pretraining" in (folder / "settings.json").read_text()

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(demo, "_build_backbones", no_rebuild)
    assert demo_backbones(tmp_path, TOY, verbose=False) == first
    other = dataclasses.replace(TOY, seed=1)
    assert other.key() != TOY.key()
    with pytest.raises(AssertionError, match="cache was not used"):
        demo_backbones(tmp_path, other, verbose=False)


def test_pretraining_is_deterministic_and_changes_the_weights(tmp_path):
    from par_prompt.tiny_backbones import write_tiny_backbones

    a = _clip_weights(demo_backbones(tmp_path / "a", TOY, verbose=False))
    b = _clip_weights(demo_backbones(tmp_path / "b", TOY, verbose=False))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    random = write_tiny_backbones(tmp_path / "random", image_size=32, patch_size=8, vision_width=16,
                                  vision_layers=1, vision_heads=2, text_width=16, text_layers=1, text_heads=2,
                                  projection_dim=16, fusion_width=16, fusion_heads=2, seed=TOY.seed,
                                  extra_words=demo.demo_words())
    before = _clip_weights(random)
    changed = [k for k in a if not torch.equal(a[k], before[k])]
    assert any("vision_model.encoder" in k for k in changed) and any("text_model.encoder" in k for k in changed)


def test_a_failed_build_leaves_no_cache_behind(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("power cut")

    monkeypatch.setattr(demo, "pretrain_contrastive", broken)
    with pytest.raises(RuntimeError, match="power cut"):
        demo_backbones(tmp_path, TOY, verbose=False)
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a partial copy


def test_cache_location(tmp_path, monkeypatch):
    monkeypatch.setenv("PAR_PROMPT_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "given") == tmp_path / "given"
    monkeypatch.delenv("PAR_PROMPT_CACHE")
    assert cache_root().parts[-2:] == (".cache", "par_prompt")


def test_synthetic_data_is_cached(tmp_path, monkeypatch):
    data = load_synthetic(4, 2, 2, seed=5, cache_dir=tmp_path)
    assert [len(data.splits[s]) for s in ("train", "validation", "test")] == [4, 2, 2]

    def no_regeneration(*args, **kwargs):
        raise AssertionError("regenerated")

    monkeypatch.setattr("par_prompt.data.synthetic.make_synthetic", no_regeneration)
    again = load_synthetic(4, 2, 2, seed=5, cache_dir=tmp_path)
    assert again.splits["train"]["labels"] == data.splits["train"]["labels"]


def test_the_demo_defaults_and_the_paper_recipe():
    model, data, training = resolve_arguments(ModelArguments(), DataArguments(), TrainingArguments(),
                                              defaults=DEMO_DEFAULTS)
    assert data.dataset == "synthetic" and training.output_dir == "outputs/demo"
    assert training.epochs == DEMO_DEFAULTS["training"]["epochs"]
    assert model.prompts_per_group == DEMO_DEFAULTS["model"]["prompts_per_group"]

    model, data, training = resolve_arguments(ModelArguments(clip="openai/clip-vit-large-patch14"),
                                              DataArguments(dataset="pa100k", data_dir="d"), TrainingArguments())
    paper = PAPER_DEFAULTS["training"]
    assert (training.epochs, training.batch_size, training.lr_head, training.lr_prompt, training.warmup_epochs) == (
        40, 16, 8e-3, 4e-3, 5) == tuple(paper[k] for k in ("epochs", "batch_size", "lr_head", "lr_prompt",
                                                            "warmup_epochs"))
    assert (training.momentum, training.weight_decay, training.max_grad_norm, training.warmup_start_factor) == (
        0.9, 1e-4, 10.0, 0.01)
    assert model.prompts_per_group == 10 and training.eval_batch_size == 32


def test_the_demo_sets_every_option_the_paper_recipe_sets():
    """Otherwise a paper default (a real run's) would fill in a demo run."""
    for group, values in PAPER_DEFAULTS.items():
        assert set(values) <= set(DEMO_DEFAULTS[group]), group


def test_a_real_run_must_name_its_data():
    with pytest.raises(ValueError, match="--data-dir"):
        resolve_arguments(ModelArguments(clip="openai/clip-vit-large-patch14"), DataArguments(), TrainingArguments())


def test_training_without_a_clip_or_a_source_of_backbones_says_what_to_pass():
    from par_prompt.training import TrainingError, train

    with pytest.raises(TrainingError, match="No CLIP backbone: pass --clip"):
        train()


def test_the_command_line_runs_the_demo_without_clip_and_the_training_with_it(monkeypatch, tmp_path):
    from par_prompt.training import cli, loop

    calls = []

    def fake_train(m, d, t, **kwargs):
        calls.append((m.clip, kwargs.get("defaults"), kwargs.get("backbones")))

    monkeypatch.setattr(loop, "train", fake_train)
    monkeypatch.setattr("par_prompt.training.train", fake_train)
    assert cli.main(["--output-dir", str(tmp_path / "demo")]) == 0
    clip, defaults, backbones = calls.pop()
    assert clip is None and defaults is DEMO_DEFAULTS and backbones is not None
    assert cli.main(["--clip", "openai/clip-vit-large-patch14", "--dataset", "synthetic",
                     "--output-dir", str(tmp_path / "real")]) == 0
    assert calls.pop() == ("openai/clip-vit-large-patch14", None, None)


def test_every_option_is_documented():
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    text = parser.format_help()
    for group in (ModelArguments, DataArguments, TrainingArguments):
        for field in dataclasses.fields(group):
            assert field.metadata.get("help"), f"--{field.name} has no help"
            assert f"--{field.name}" in text
    assert "--mixed_precision {no,bf16,fp16}" in text or "--mixed-precision {no,bf16,fp16}" in text


def test_the_demo_names_no_data_set_for_data_from_data_dir(tiny_data_dir):
    _, data, _ = resolve_arguments(ModelArguments(), DataArguments(data_dir=str(tiny_data_dir)), TrainingArguments(),
                                   defaults=DEMO_DEFAULTS)
    assert data.dataset is None  # the data's own name is used, not the demo's "synthetic"


def test_a_demo_run_on_other_data_names_them_in_the_card(tiny_backbones, tmp_path):
    """`par-prompt train --data-dir DIR` without --clip: the settings and the model card name
    the data of DIR, not the demo's synthetic data set."""
    from par_prompt.data import load, make_synthetic, save
    from par_prompt.training import train

    from .conftest import one_thread, tiny_arguments

    people = tmp_path / "people"
    save(load(make_synthetic(24, 8, 8, seed=3, image_size=(64, 32)), name="people"), people)
    m, d, t = tiny_arguments(tiny_backbones, people, tmp_path / "out", epochs=1)
    m = dataclasses.replace(m, clip=None, fusion=None)
    d = dataclasses.replace(d, dataset=None)
    with one_thread():
        train(m, d, t, defaults=DEMO_DEFAULTS, backbones=lambda args, verbose: (tiny_backbones.clip,
                                                                                 tiny_backbones.vit))
    record = json.loads((tmp_path / "out" / "training_args.json").read_text())
    assert record["arguments"]["dataset"] is None
    card = (tmp_path / "out" / "best" / "README.md").read_text()
    metadata = card.split("---")[1]  # the card's YAML header: what the Hub lists the model under
    assert "datasets:\n- people\n" in metadata and "synthetic" not in metadata
    assert "trained on people" in card and "trained on synthetic" not in card
