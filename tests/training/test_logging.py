"""Logs and trackers: OUTPUT/logs/train.log, the loss terms and learning rates under train/,
every Accelerate tracker by name, the Hub checked before training, gradient checkpointing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import LocalTokenNotFoundError

from par_prompt import PromptPARModel
from par_prompt.training import TrainingError, train, trackers

from .conftest import tiny_arguments, train_tiny


class Events:
    """The order of Hub calls and training forward passes in a run."""

    def __init__(self, monkeypatch, whoami=None):
        self.log = []
        events = self

        def fake_whoami(self, token=None, **kwargs):
            events.log.append("whoami")
            if whoami is not None:
                return whoami()
            return {"name": "alice", "orgs": [], "auth": {"accessToken": {"role": "write"}}}

        def fake_create_repo(self, repo_id, **kwargs):
            events.log.append(("create_repo", repo_id, kwargs.get("exist_ok")))

            class Url(str):
                pass

            url = Url(f"https://huggingface.co/{repo_id}")
            url.repo_id = repo_id
            return url

        def fake_upload_folder(self, **kwargs):
            events.log.append(("upload_folder", kwargs["repo_id"]))

            class Info(str):
                commit_url = "https://huggingface.co/alice/x/commit/1"

            return Info("1")

        original_forward = PromptPARModel.forward

        def forward(model, *args, **kwargs):
            if model.training and "forward" not in events.log:
                events.log.append("forward")
            return original_forward(model, *args, **kwargs)

        monkeypatch.setattr(HfApi, "whoami", fake_whoami)
        monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
        monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
        monkeypatch.setattr(PromptPARModel, "forward", forward)


@pytest.fixture(scope="module")
def pushed_run(tiny_backbones, tiny_data_dir, tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        events = Events(monkeypatch)
        out = tmp_path_factory.mktemp("logs") / "out"
        train_tiny(tiny_backbones, tiny_data_dir, out, epochs=2, push_to_hub="alice/promptpar-test")
    return out, events.log


def test_the_hub_is_checked_before_training_and_pushed_after(pushed_run):
    _, log = pushed_run
    assert log[:3] == ["whoami", ("create_repo", "alice/promptpar-test", True), "forward"], log
    assert log[-1] == ("upload_folder", "alice/promptpar-test")


@pytest.mark.parametrize("answer, message", [
    ("no_token", "you are not logged in"),
    ("read_token", "is read-only"),
    ("other_org", "are neither 'acme' nor a member"),
])
def test_a_hub_that_cannot_be_written_stops_the_run_before_any_data(answer, message, tiny_backbones,
                                                                    tiny_data_dir, tmp_path, monkeypatch):
    from par_prompt.training import loop

    def whoami():
        if answer == "no_token":
            raise LocalTokenNotFoundError("no token")
        role = "read" if answer == "read_token" else "write"
        return {"name": "alice", "orgs": [{"name": "other", "roleInOrg": "admin"}],
                "auth": {"accessToken": {"role": role}}}

    def no_data(*args, **kwargs):
        raise AssertionError("data loaded before the Hub was checked")

    events = Events(monkeypatch, whoami=whoami)
    monkeypatch.setattr(loop, "load_training_data", no_data)
    with pytest.raises(TrainingError, match=message):
        train(*tiny_arguments(tiny_backbones, tiny_data_dir, tmp_path / "out", push_to_hub="acme/promptpar"))
    assert events.log == ["whoami"]


def test_train_log_holds_the_settings_epochs_and_results(pushed_run):
    out, _ = pushed_run
    log = (out / "logs" / "train.log").read_text()
    assert "---- run:" in log
    assert "Settings (defaults, then the command line" in log and "overlap_rows=2" in log
    assert "epoch 1/2: train loss" in log and "epoch 2/2: train loss" in log
    assert "Best epoch" in log and "Pushed to https://huggingface.co/alice/x/commit/1" in log


def test_loss_terms_and_learning_rates_are_logged_separately(pushed_run):
    out, _ = pushed_run
    lines = [json.loads(line) for line in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in lines if "train/loss" in line]
    assert len(steps) == 6  # 2 epochs x 6 updates, every 2 updates
    gl_alpha = lines[0]["config"]["gl_alpha"]
    for line in steps:
        for key in ("train/attribute_loss", "train/gl_loss", "train/lr_head", "train/lr_prompt"):
            assert np.isfinite(line[key]), key
        # the logged loss is the sum the model trains on: L = L_attributes + alpha * L_GL
        assert line["train/loss"] == pytest.approx(line["train/attribute_loss"] + gl_alpha * line["train/gl_loss"],
                                                   rel=1e-5)
    assert steps[0]["train/lr_head"] != steps[-1]["train/lr_head"]  # the schedule moves


def test_report_to_takes_every_accelerate_tracker(monkeypatch, tmp_path):
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    names = sorted(LOGGER_TYPE_TO_CLASS)
    assert {"tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive"} <= set(names)
    monkeypatch.setattr(trackers, "installed_trackers", lambda: names)
    for name in names:
        assert trackers.select_trackers(name, tmp_path) == [name]
    chosen = trackers.select_trackers("jsonl, wandb,mlflow", tmp_path)
    assert isinstance(chosen[0], trackers.JSONLinesTracker) and chosen[1:] == ["wandb", "mlflow"]
    everything = trackers.select_trackers("all", tmp_path)
    assert isinstance(everything[0], trackers.JSONLinesTracker) and everything[1:] == names
    assert trackers.select_trackers("none", tmp_path) == []


def test_report_to_refuses_unknown_and_missing_trackers(monkeypatch, tmp_path):
    monkeypatch.setattr(trackers, "installed_trackers", lambda: ["tensorboard"])
    with pytest.raises(ValueError, match=r"--report-to wandb: not installed here \(pip install wandb\)"):
        trackers.select_trackers("wandb", tmp_path)
    with pytest.raises(ValueError, match="unknown tracker 'tensorbord'"):
        trackers.select_trackers("tensorbord", tmp_path)
    assert trackers.select_trackers("auto", tmp_path) == ["tensorboard"]
    monkeypatch.setattr(trackers, "installed_trackers", lambda: [])
    assert isinstance(trackers.select_trackers("auto", tmp_path)[0], trackers.JSONLinesTracker)


@pytest.mark.parametrize("entry", ["activation_checkpointing_enable", "gradient_checkpointing_enable"])
def test_gradient_checkpointing_reaches_the_model(entry, tiny_backbones, tiny_data_dir, tmp_path, monkeypatch):
    """Through transformers' current name, and through an override of the older one
    (which transformers still calls; the model side may define it)."""
    calls = []

    class Reached(Exception):
        pass

    def enable(model, *args, **kwargs):
        calls.append((type(model).__name__, kwargs))
        raise Reached

    if not hasattr(PromptPARModel, entry):
        pytest.skip(f"this transformers has no {entry}")
    monkeypatch.setattr(PromptPARModel, entry, enable)
    with pytest.raises(Reached):
        train(*tiny_arguments(tiny_backbones, tiny_data_dir, tmp_path / "on", gradient_checkpointing=True))
    ((name, kwargs),) = calls
    assert name == "PromptPARModel"
    assert {"use_reentrant": False} in kwargs.values(), kwargs


def test_no_gradient_checkpointing_by_default(tiny_backbones, tiny_data_dir, tmp_path, monkeypatch):
    from par_prompt.training import PromptPARTrainer

    monkeypatch.setattr(PromptPARTrainer, "_enable_checkpointing", staticmethod(lambda model: 1 / 0))
    train(*tiny_arguments(tiny_backbones, tiny_data_dir, tmp_path / "off", epochs=1, test_split="none"))
