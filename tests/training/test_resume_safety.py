"""--resume unpickles nothing: a code-running pickle planted in any file a resume reads is
refused in one line (exit 2) and never runs; a checkpoint of the old pickle-based layout is
refused; a whole resumed run calls neither torch.load nor pickle."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
import torch

from par_prompt import cli
from par_prompt.training import train
from par_prompt.training.checkpoint import LEGACY_FILES, TRAINER_STATE_FILE

from .conftest import cli_arguments, tiny_arguments, train_tiny


class Payload:
    """Unpickling this object creates the file ``marker``: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.fixture(scope="module")
def finished_run(tiny_backbones, tiny_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("safety") / "out"
    train_tiny(tiny_backbones, tiny_data_dir, out, epochs=2)
    return out


def _checkpoint_files(finished_run):
    return sorted(p.name for p in (finished_run / "checkpoints" / "epoch-1").iterdir())


def test_checkpoints_hold_no_pickle(finished_run):
    names = _checkpoint_files(finished_run)
    assert names and all(name.endswith((".json", ".safetensors")) for name in names), names
    for name in names:
        head = (finished_run / "checkpoints" / "epoch-1" / name).read_bytes()[:2]
        assert head != b"PK" and head[:1] != b"\x80", name  # neither torch.save's zip nor a raw pickle


@pytest.mark.parametrize("form", ["torch.save", "pickle"])
@pytest.mark.parametrize("index", range(7))
def test_a_pickle_planted_in_any_checkpoint_file_is_refused_and_never_runs(
        index, form, finished_run, tiny_backbones, tiny_data_dir, tmp_path, capsys):
    names = _checkpoint_files(finished_run)
    assert len(names) == 7, names  # the parametrization covers every file
    name = names[index]
    checkpoint = tmp_path / "out" / "checkpoints" / "epoch-1"
    shutil.copytree(finished_run / "checkpoints" / "epoch-1", checkpoint)
    marker = tmp_path / "pwned"
    if form == "torch.save":
        torch.save({"state": Payload(marker)}, checkpoint / name)
    else:
        (checkpoint / name).write_bytes(pickle.dumps(Payload(marker)))
    code = cli.main(["train", *cli_arguments(tiny_backbones, tiny_data_dir, tmp_path / "out", epochs=2),
                     "--resume", str(checkpoint)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("par-prompt train: error: "), err
    assert name in err or str(checkpoint) in err, err
    assert not marker.exists(), f"the pickle in {name} ran"


def test_a_checkpoint_of_the_old_pickle_layout_is_refused(finished_run, tiny_backbones, tiny_data_dir, tmp_path,
                                                          capsys):
    checkpoint = tmp_path / "out" / "checkpoints" / "epoch-1"
    shutil.copytree(finished_run / "checkpoints" / "epoch-1", checkpoint)
    marker = tmp_path / "pwned"
    state = json.loads((checkpoint / TRAINER_STATE_FILE).read_text())
    del state["checkpoint_format"]  # as the Accelerate save_state layout wrote it
    (checkpoint / TRAINER_STATE_FILE).write_text(json.dumps(state))
    for name in LEGACY_FILES:
        torch.save(Payload(marker), checkpoint / name)
    code = cli.main(["train", *cli_arguments(tiny_backbones, tiny_data_dir, tmp_path / "out", epochs=2),
                     "--resume", "latest"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "pickle-based layout" in err and "optimizer.bin" in err
    assert not marker.exists()


def test_a_resumed_run_unpickles_nothing(finished_run, tiny_backbones, tiny_data_dir, tmp_path, monkeypatch,
                                         single_thread):
    """The whole resumed run (checkpoint, data, backbones, the final test of best/) with
    every unpickling entry point broken, and pickles of the old layout planted beside."""
    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    marker = tmp_path / "pwned"
    for name in LEGACY_FILES:
        torch.save(Payload(marker), out / "checkpoints" / "epoch-1" / name)
    shutil.rmtree(out / "checkpoints" / "epoch-2")
    calls = []
    original_load = torch.load

    def guarded_load(*args, **kwargs):
        calls.append(("torch.load", args[:1], kwargs.get("weights_only")))
        if kwargs.get("weights_only") is False:
            raise AssertionError("torch.load without weights_only")
        return original_load(*args, **kwargs)

    def refuse(name):
        def refused(*args, **kwargs):
            calls.append((name, args[:1]))
            raise AssertionError(f"{name} called during a resume")
        return refused

    monkeypatch.setattr(torch, "load", guarded_load)
    monkeypatch.setattr(pickle, "load", refuse("pickle.load"))
    monkeypatch.setattr(pickle, "loads", refuse("pickle.loads"))
    monkeypatch.setattr(pickle, "Unpickler", refuse("pickle.Unpickler"))
    result = train(*tiny_arguments(tiny_backbones, tiny_data_dir, out, epochs=2, resume="latest"))
    assert [row["epoch"] for row in result.validation_history] == [1, 2]
    assert calls == [] and not marker.exists(), calls
