"""--resume with other settings: every argument either must match the checkpoint's run
(refused, naming it, before anything loads) or is explicitly allowed to change (listed,
documented, and recorded in training_args.json when it does)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from par_prompt.data import load, save
from par_prompt.training import DataArguments, ModelArguments, TrainingArguments, TrainingError, train
from par_prompt.training.arguments import RESUME_MAY_CHANGE

from .conftest import ROOT, tiny_arguments, train_tiny

#: A changed value for every argument that must not change on resume (the tiny run's
#: values are those of conftest.tiny_arguments).
MUST_MATCH = {
    "clip": "{other}", "fusion": "{other}", "clip_revision": "main", "fusion_revision": "main",
    "num_regions": 2, "overlap_rows": 0, "prompts_per_group": 2, "vision_depth": 1, "text_prompts": 2,
    "text_depth": 1, "prompt_init": "zeros", "fusion_layers": 0, "gl_alpha": 0.25, "gl_threshold": 0.4,
    "threshold": 0.45, "dataset": "peta", "data_dir": "{other}", "train_split": "train2",
    "validation_split": "val", "synthetic_train": 10, "synthetic_validation": 10, "synthetic_test": 10,
    "synthetic_seed": 1, "augment_pad": 3, "epochs": 3, "batch_size": 2, "gradient_accumulation_steps": 2,
    "lr_head": 0.04, "lr_prompt": 0.04, "momentum": 0.8, "weight_decay": 1e-3, "warmup_epochs": 0.5,
    "warmup_start_factor": 0.1, "max_grad_norm": 5.0, "mixed_precision": "bf16", "seed": 8,
    "metric_for_best": "f1", "demo_pretrain_steps": 5,
}
#: Of these, the options the tiny run (a --clip, a --data-dir) cannot set (they would be
#: ignored, so they are refused): the checkpoint records the other value instead.
RECORDED_ONLY = ("synthetic_train", "synthetic_validation", "synthetic_test", "synthetic_seed", "demo_pretrain_steps")


def test_every_argument_is_classified():
    names = {f.name for group in (ModelArguments, DataArguments, TrainingArguments) for f in dataclasses.fields(group)}
    assert set(MUST_MATCH) | set(RESUME_MAY_CHANGE) == names, sorted(names - set(MUST_MATCH) - set(RESUME_MAY_CHANGE))
    assert not set(MUST_MATCH) & set(RESUME_MAY_CHANGE)
    readme = (ROOT / "README.md").read_text() + (ROOT / "docs" / "training.md").read_text()
    for name in RESUME_MAY_CHANGE:  # documented for users
        assert f"--{name.replace('_', '-')}" in readme, name


@pytest.fixture(scope="module")
def finished_run(tiny_backbones, tiny_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("settings") / "out"
    train_tiny(tiny_backbones, tiny_data_dir, out, epochs=2)
    return out


@pytest.mark.parametrize("name", sorted(MUST_MATCH))
def test_a_changed_setting_is_refused_by_name_before_anything_loads(name, finished_run, tiny_backbones,
                                                                     tiny_data_dir, tmp_path, monkeypatch):
    from par_prompt.training import loop

    def no_data(*args, **kwargs):
        raise AssertionError("the data loaded before the settings were checked")

    monkeypatch.setattr(loop, "load_training_data", no_data)
    out = tmp_path / "out"
    shutil.copytree(finished_run / "checkpoints", out / "checkpoints")
    value = MUST_MATCH[name]
    if value == "{other}":
        value = str(tmp_path)  # an existing folder, other than the run's
    if name in RECORDED_ONLY:
        for state_file in (out / "checkpoints").glob("epoch-*/trainer_state.json"):
            state = json.loads(state_file.read_text())
            state["arguments"][name] = value
            state_file.write_text(json.dumps(state))
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    overrides = {"epochs": 2, "resume": "latest"} | ({} if name in RECORDED_ONLY else {name: value})
    data_dir = overrides.pop("data_dir", tiny_data_dir)
    args = tiny_arguments(tiny_backbones, data_dir, out, **overrides)
    with pytest.raises(TrainingError) as caught:
        train(*args)
    message = str(caught.value)
    assert f"{name}: " in message and "in the checkpoint" in message, message
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before


def test_the_same_path_written_differently_is_the_same_setting(finished_run, tiny_backbones, tiny_data_dir,
                                                               tmp_path, monkeypatch):
    """A relative --data-dir naming the same folder is accepted; the check compares folders, not strings."""
    from par_prompt.training import loop

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(loop, "load_training_data", stop)  # the settings check passed if the data loads
    out = tmp_path / "out"
    shutil.copytree(finished_run / "checkpoints", out / "checkpoints")
    monkeypatch.chdir(tiny_data_dir.parent)
    with pytest.raises(Stop):
        train(*tiny_arguments(tiny_backbones, f"./{tiny_data_dir.name}/", out, epochs=2, resume="latest"))


def test_other_data_at_the_same_path_is_refused(finished_run, tiny_backbones, tiny_data_dir, tmp_path):
    data = load(str(tiny_data_dir))
    labels = np.asarray(data.splits["train"]["labels"])
    labels[0] = 1 - np.minimum(labels[0], 1)
    data.splits["train"] = data.splits["train"].remove_columns("labels").add_column(
        "labels", labels.tolist(), feature=data.splits["train"].features["labels"])
    copy = tmp_path / "data"
    save(data, copy)
    out = tmp_path / "out"
    shutil.copytree(finished_run / "checkpoints", out / "checkpoints")
    # the checkpoint's run used tiny_data_dir; point the record at the copy, as if it had been replaced
    for state_file in (out / "checkpoints").glob("epoch-*/trainer_state.json"):
        state = json.loads(state_file.read_text())
        state["arguments"]["data_dir"] = str(copy.resolve())
        state_file.write_text(json.dumps(state))
    with pytest.raises(TrainingError, match="the data differ from the data the checkpoint was trained on"):
        train(*tiny_arguments(tiny_backbones, copy, out, epochs=2, resume="latest"))


def test_allowed_changes_resume_and_are_recorded(finished_run, tiny_backbones, tiny_data_dir, tmp_path,
                                                 single_thread):
    out = tmp_path / "elsewhere"
    shutil.copytree(finished_run / "checkpoints", out / "checkpoints")
    shutil.rmtree(out / "checkpoints" / "epoch-2")
    changes = dict(num_workers=1, logging_steps=3, report_to="none", eval_batch_size=4, save_total_limit=3,
                   test_split="none", attn_implementation="eager")
    result = train(*tiny_arguments(tiny_backbones, tiny_data_dir, out, epochs=2, resume="latest", **changes))
    assert [row["epoch"] for row in result.validation_history] == [1, 2]
    record = json.loads((out / "training_args.json").read_text())
    assert set(record["resume"]["may_change"]) == set(RESUME_MAY_CHANGE)
    (resumed,) = record["resume"]["resumed"]
    assert resumed["checkpoint"].endswith("epoch-1")
    assert resumed["changed"]["num_workers"] == [0, 1] and resumed["changed"]["test_split"] == ["test", None]
    assert resumed["changed"]["output_dir"][1] == str(out)
    assert set(resumed["changed"]) <= set(RESUME_MAY_CHANGE)
    assert record["arguments"]["num_workers"] == 1  # the settings now in effect
    # the trainer state carries the record on, for a later resume
    state = json.loads((out / "checkpoints" / "epoch-2" / "trainer_state.json").read_text())
    assert state["resumes"] == record["resume"]["resumed"]
    # the best epoch so far was the checkpoint's own: its adapter is exported to the new folder
    assert (out / "best" / "config.json").is_file()


def test_resume_elsewhere_without_the_best_adapter_is_refused_before_training(finished_run, tiny_backbones,
                                                                            tiny_data_dir, tmp_path):
    out = tmp_path / "elsewhere"
    shutil.copytree(finished_run / "checkpoints", out / "checkpoints")
    state_file = out / "checkpoints" / "epoch-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["best"]["epoch"] = 1  # the best adapter lies in the original run's best/ folder ...
    state["arguments"]["output_dir"] = str(tmp_path / "gone")  # ... which no longer exists
    state_file.write_text(json.dumps(state))
    with pytest.raises(TrainingError, match=r"best adapter so far \(epoch 1\) is not in .*copy its best/ folder"):
        train(*tiny_arguments(tiny_backbones, tiny_data_dir, out, epochs=2, resume="latest"))
    assert not (out / "best").exists()
