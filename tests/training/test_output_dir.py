"""One output directory, one run: a run resumed from another folder's checkpoint never
writes into (prunes, overwrites, reports) a folder that holds a run of its own; a new run
never replaces an earlier run's best/ or metrics.json without --overwrite-output-dir; and
best/ is, on resume, the very adapter the checkpoint records (its save id)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from par_prompt import PromptPARModel, cli
from par_prompt.fileio import read_safetensors
from par_prompt.training import TrainingError, train, trainable_state_dict
from par_prompt.training.checkpoint import TRAINABLE_STATE_FILE

from .conftest import cli_arguments, tiny_arguments, train_tiny


def _snapshot(folder):
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _save_id(folder):
    return json.loads((folder / "config.json").read_text())["save_id"]


def _run_cli(argv, capsys):
    code = cli.main(["train", *argv])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def run_a(tiny_backbones, tiny_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("a") / "out"
    train_tiny(tiny_backbones, tiny_data_dir, out, epochs=2)
    return out


@pytest.fixture(scope="module")
def run_c(tiny_backbones, tiny_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("c") / "out"
    train_tiny(tiny_backbones, tiny_data_dir, out, epochs=1, seed=11)
    return out


def test_the_best_adapter_is_recorded_in_every_checkpoint(run_a):
    state = json.loads((run_a / "checkpoints" / "epoch-2" / "trainer_state.json").read_text())
    assert state["best"]["save_id"] == _save_id(run_a / "best")


@pytest.mark.parametrize("save_total_limit", [2, 1])
def test_resuming_another_runs_checkpoint_into_a_taken_folder_is_refused(
        save_total_limit, run_a, run_c, tiny_backbones, tiny_data_dir, tmp_path, capsys):
    a, c = tmp_path / "a", tmp_path / "c"
    shutil.copytree(run_a, a)
    shutil.copytree(run_c, c)
    before_a, before_c = _snapshot(a), _snapshot(c)
    argv = [*cli_arguments(tiny_backbones, tiny_data_dir, c, epochs=2, save_total_limit=save_total_limit),
            "--resume", str(a / "checkpoints" / "epoch-1")]
    code, err = _run_cli(argv, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "continues the run of another output directory" in err and "holds a run of its own" in err, err
    assert _snapshot(c) == before_c  # nothing pruned, overwritten or added to the other run
    assert _snapshot(a) == before_a


@pytest.mark.parametrize("left", ["best", "metrics"])
def test_a_folder_with_only_results_left_is_still_taken(left, run_c, tiny_backbones, tiny_data_dir, tmp_path,
                                                        capsys):
    c = tmp_path / "c"
    shutil.copytree(run_c, c)
    shutil.rmtree(c / "checkpoints")
    if left == "metrics":
        shutil.rmtree(c / "best")
    before = _snapshot(c)
    code, err = _run_cli(cli_arguments(tiny_backbones, tiny_data_dir, c, epochs=1), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "holds the results of an earlier run" in err and "--overwrite-output-dir" in err, err
    assert _snapshot(c) == before


def test_overwrite_output_dir_removes_the_earlier_results(run_c, tiny_backbones, tiny_data_dir, tmp_path):
    """All of them, before the new run starts: a new run that then stops leaves no best/ or
    metrics.json of the earlier run behind to be taken for its own; other files stay."""
    from par_prompt.data import load
    from par_prompt.training import TrainingDataError

    c = tmp_path / "c"
    shutil.copytree(run_c, c)
    (c / "notes.txt").write_text("mine")
    data = load(str(tiny_data_dir))
    data.splits["train"] = data.splits["train"].select([])  # the new run stops after the clean-up
    with pytest.raises(TrainingDataError, match="is empty"):
        train(*tiny_arguments(tiny_backbones, "unused", c, epochs=1, overwrite_output_dir=True), data=data)
    assert not (c / "checkpoints").exists() and not (c / "best").exists() and not (c / "metrics.json").exists()
    assert (c / "notes.txt").read_text() == "mine"  # only what the option names is removed


def _outside_checkpoint(run_a, tmp_path, best_epoch, save_id):
    """A copy of run A's epoch-2 checkpoint outside any output folder, whose record says
    the best epoch so far is ``best_epoch`` (its adapter in A/best, with ``save_id``)."""
    checkpoint = tmp_path / "moved" / "epoch-2"
    shutil.copytree(run_a / "checkpoints" / "epoch-2", checkpoint)
    state_file = checkpoint / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["best"].update(epoch=best_epoch, save_id=save_id)
    state_file.write_text(json.dumps(state))
    return checkpoint


def test_resuming_into_a_new_folder_copies_the_recorded_best_adapter(run_a, tiny_backbones, tiny_data_dir,
                                                                     tmp_path):
    checkpoint = _outside_checkpoint(run_a, tmp_path, 1, _save_id(run_a / "best"))
    out = tmp_path / "new"
    result = train(*tiny_arguments(tiny_backbones, tiny_data_dir, out, epochs=2, resume=str(checkpoint)))
    assert result.best_epoch == 1
    assert _save_id(out / "best") == _save_id(run_a / "best")


def test_another_adapter_in_the_earlier_runs_best_is_not_taken_for_the_best(run_a, tiny_backbones, tiny_data_dir,
                                                                           tmp_path):
    # the checkpoint's best adapter was replaced in A/best (by a later epoch, or another run)
    checkpoint = _outside_checkpoint(run_a, tmp_path, 1, "0" * 32)
    out = tmp_path / "new"
    with pytest.raises(TrainingError, match=r"holds another adapter .*would report as its best"):
        train(*tiny_arguments(tiny_backbones, tiny_data_dir, out, epochs=2, resume=str(checkpoint)))
    assert not (out / "best").exists() and not (out / "metrics.json").exists()


def test_another_adapter_in_the_own_best_is_replaced_by_the_resumed_best_epoch(run_a, tiny_backbones,
                                                                               tiny_data_dir, tmp_path):
    """Resuming the run's own checkpoint whose best epoch is its own: best/ (here another
    adapter) is exported anew from the checkpoint, not reported as it is."""
    out = tmp_path / "a"
    shutil.copytree(run_a, out)
    state_file = out / "checkpoints" / "epoch-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["best"].update(epoch=2, save_id="0" * 32)
    state_file.write_text(json.dumps(state))
    stale = _save_id(out / "best")
    (out / "metrics.json").unlink()
    result = train(*tiny_arguments(tiny_backbones, tiny_data_dir, out, epochs=2, resume="latest"))
    assert result.best_epoch == 2 and _save_id(out / "best") != stale
    exported = trainable_state_dict(PromptPARModel.from_pretrained(out / "best"))
    saved = read_safetensors(out / "checkpoints" / "epoch-2" / TRAINABLE_STATE_FILE, "checkpoint")
    assert exported.keys() == saved.keys() and all(torch.equal(exported[k], saved[k]) for k in saved)
    assert json.loads((out / "metrics.json").read_text())["best_epoch"] == 2
