"""Faults: a NaN loss stops training and names the step; bad data fails before the first step."""

import json

import datasets
import pytest
import torch

from par_prompt import PromptPARModel
from par_prompt.data import load
from par_prompt.training import (
    NonFiniteLossError,
    TrainingDataError,
    load_trainable_state,
    train,
    trainable_state_dict,
)
from par_prompt.training.checkpoint import TRAINABLE_STATE_FILE, TRAINER_STATE_FILE

from .conftest import tiny_arguments


@pytest.fixture
def forward_calls(monkeypatch):
    """Count training forward passes; make the loss NaN at the ones listed in ``calls.nan_at``."""
    original = PromptPARModel.forward
    calls = type("Calls", (), {"training": 0, "nan_at": ()})()

    def forward(self, *args, **kwargs):
        output = original(self, *args, **kwargs)
        if self.training and kwargs.get("training") is not False:  # not a validation forward
            calls.training += 1
            if calls.training in calls.nan_at:
                output.loss = output.loss * float("nan")
        return output

    monkeypatch.setattr(PromptPARModel, "forward", forward)
    return calls


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(
        tiny_backbones, tiny_data_dir, tmp_path, forward_calls, single_thread):
    # 24 training images, batch 4: 6 steps per epoch; the 8th step is epoch 2, batch 2
    forward_calls.nan_at = (8,)
    args = tiny_arguments(tiny_backbones, tiny_data_dir, tmp_path / "out", epochs=3)
    with pytest.raises(NonFiniteLossError) as caught:
        train(*args)
    message = str(caught.value)
    checkpoint = tmp_path / "out" / "checkpoints" / "epoch-1"
    assert "loss is nan at global step 8 (epoch 2, batch 2 of 6" in message
    assert f"The last good checkpoint is {checkpoint}" in message
    assert caught.value.step == 8 and caught.value.checkpoint == checkpoint
    # the advice is one the resume check accepts: a changed learning rate or precision is a new run
    assert "start a new run with the changed setting" in message and "Resume from it" not in message
    assert forward_calls.training == 8  # stopped at once

    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["epoch-1"]
    assert json.loads((checkpoint / TRAINER_STATE_FILE).read_text())["epoch"] == 1
    model = PromptPARModel.from_backbones(tiny_backbones.clip, [f"a{i}" for i in range(18)], tiny_backbones.vit,
                                          prompts_per_group=1, text_prompts=1)
    load_trainable_state(model, checkpoint / TRAINABLE_STATE_FILE)
    assert all(torch.isfinite(t).all() for t in trainable_state_dict(model).values())

    # and the run resumes from it
    forward_calls.nan_at = ()
    resumed = train(*tiny_arguments(tiny_backbones, tiny_data_dir, tmp_path / "out", epochs=3, resume="latest"))
    assert [row["epoch"] for row in resumed.validation_history] == [1, 2, 3]


def _variable_width_labels(data, split, width):
    """``data`` with ``split``'s labels cut to ``width`` values, stored as a variable-length list."""
    features = datasets.Features({"image": datasets.Image(), "labels": datasets.List(datasets.Value("int8"))})
    splits = {}
    for name, dataset in data.splits.items():
        rows = dataset.to_dict()
        if name == split:
            rows["labels"] = [row[:width] for row in rows["labels"]]
        splits[name] = datasets.Dataset.from_dict(rows, features=features)
    return load(datasets.DatasetDict(splits), attributes=data.attributes, sentences=data.sentences, name=data.name)


@pytest.mark.parametrize("problem, message", [
    ("empty", "The training split 'train' is empty"),
    ("width", "The training split 'train' has labels of width 17, but there are 18 attributes"),
    ("no_validation", "no validation split 'validation'"),
])
def test_bad_data_fails_before_the_first_step(problem, message, tiny_backbones, tiny_data_dir, tmp_path,
                                               forward_calls):
    data = load(str(tiny_data_dir))
    if problem == "empty":
        data.splits["train"] = data.splits["train"].select([])
    elif problem == "width":
        data = _variable_width_labels(data, "train", 17)
    else:
        del data.splits["validation"]
    with pytest.raises(TrainingDataError, match=message):
        train(*tiny_arguments(tiny_backbones, "unused", tmp_path / "out"), data=data)
    assert forward_calls.training == 0
    assert not (tmp_path / "out" / "checkpoints").exists()


@pytest.mark.parametrize("problem, message", [
    ("batch_1", "the heads end in a BatchNorm, which needs at least 2"),
    ("batch_too_large", "The training split has 24 examples, fewer than one update needs"),
    ("unscored_validation", "The validation split 'validation' scores no attribute"),
])
def test_checks_that_need_no_model_run_before_the_backbones_load(problem, message, tiny_backbones, tiny_data_dir,
                                                                 tmp_path, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the backbones loaded before the check")

    monkeypatch.setattr(PromptPARModel, "from_backbones", no_model)
    data = load(str(tiny_data_dir))
    overrides = {"batch_1": {"batch_size": 1}, "batch_too_large": {"batch_size": 32}}.get(problem, {})
    if problem == "unscored_validation":  # every validation label negative or uncertain
        labels = [[0 if i % 2 else 2 for i, _ in enumerate(row)] for row in data.splits["validation"]["labels"]]
        data.splits["validation"] = data.splits["validation"].remove_columns("labels").add_column(
            "labels", labels, feature=data.splits["validation"].features["labels"])
    with pytest.raises(TrainingDataError, match=message):
        train(*tiny_arguments(tiny_backbones, "unused", tmp_path / "out", **overrides), data=data)
    assert not (tmp_path / "out" / "checkpoints").exists()
