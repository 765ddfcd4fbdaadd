"""Official checkpoints are read without unpickling anything but tensors and their plain containers."""

from __future__ import annotations

import datetime
import os

import pytest
import torch

from par_prompt.official import OfficialCheckpointError, read_checkpoint

from .builders import official_classifier_state, official_clip_state, save_official


class CodeRunner:
    """Unpickling this runs a shell command (what a malicious checkpoint would do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def states(sizes):
    return official_clip_state(sizes), official_classifier_state(sizes)


def test_reads_train_py_file(official):
    checkpoint = read_checkpoint(official.path)
    assert checkpoint.clip_key == "clip_model" and checkpoint.epoch == 21
    assert checkpoint.result == pytest.approx({"mA": 0.8123, "Acc": 0.7012, "Prec": 0.8234, "Rec": 0.8645,
                                               "F1": 0.8401})
    assert set(checkpoint.clip_state) == set(official.clip) and set(checkpoint.classifier_state) == set(
        official.classifier)
    conv = checkpoint.clip_state["visual.conv1.weight"]
    assert conv.device.type == "cpu" and conv.dtype == torch.float16  # stored on cuda:0 in fp16
    assert torch.equal(conv, official.clip["visual.conv1.weight"])


def test_storages_are_tagged_cuda(official):
    """The file really says cuda:0: loading it without a CPU map_location fails on this machine."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine can load cuda:0 storages")
    with pytest.raises(RuntimeError):
        torch.load(official.path, weights_only=True, map_location=None)


def test_reads_test_script_key(tmp_path, monkeypatch, states):
    path = save_official(tmp_path / "vit.pth", monkeypatch, *states, clip_key="ViT_model", result=None)
    checkpoint = read_checkpoint(path)
    assert checkpoint.clip_key == "ViT_model" and checkpoint.result == {}


def test_numpy1_names_and_legacy_format(tmp_path, monkeypatch, states):
    """Files written with numpy 1.x name numpy.core.multiarray; old torch wrote the pre-zip format."""
    path = save_official(tmp_path / "legacy.pth", monkeypatch, *states, legacy=True)
    data = path.read_bytes()
    assert b"numpy._core.multiarray\n" in data
    path.write_bytes(data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    checkpoint = read_checkpoint(path)
    assert checkpoint.result["mA"] == pytest.approx(0.8123)
    assert torch.equal(checkpoint.classifier_state["bn.running_var"], states[1]["bn.running_var"])


def test_code_running_pickle_is_refused_and_does_not_run(tmp_path, monkeypatch, states):
    marker = tmp_path / "code-ran"
    path = save_official(tmp_path / "evil.pth", monkeypatch, *states, result=CodeRunner(marker))
    with pytest.raises(OfficialCheckpointError, match=r"'posix\.system'|'os\.system'|'nt\.system'") as error:
        read_checkpoint(path)
    assert "refusing" in str(error.value)
    assert not marker.exists()


def test_other_globals_are_refused_by_name(tmp_path, monkeypatch, states):
    path = save_official(tmp_path / "date.pth", monkeypatch, *states, result={"when": datetime.date(2024, 5, 23)})
    with pytest.raises(OfficialCheckpointError, match=r"'datetime\.date'"):
        read_checkpoint(path)


@pytest.mark.parametrize("case", ["not-torch", "truncated", "missing", "list", "no-clip", "both-clip", "extra",
                                  "not-tensor"])
def test_files_that_are_not_official_checkpoints(case, tmp_path, monkeypatch, states, official):
    path = tmp_path / "bad.pth"
    clip, classifier = states
    expected = {
        "not-torch": "not a readable PyTorch checkpoint", "truncated": "not a readable PyTorch checkpoint",
        "missing": "is not a file", "list": "holds a list", "no-clip": "exactly one of",
        "both-clip": "both 'clip_model' and 'ViT_model'", "extra": "['scheduler']", "not-tensor": "not tensors",
    }[case]
    if case == "not-torch":
        path.write_bytes(b"this is not a checkpoint\n" * 10)
    elif case == "truncated":
        path.write_bytes(official.path.read_bytes()[:100_000])
    elif case == "list":
        torch.save([clip], path)
    elif case == "no-clip":
        torch.save({"model_state_dict": classifier}, path)
    elif case == "both-clip":
        save_official(path, monkeypatch, clip, classifier, extra={"ViT_model": clip})
    elif case == "extra":
        save_official(path, monkeypatch, clip, classifier, extra={"scheduler": {"last_epoch": 3}})
    elif case == "not-tensor":
        save_official(path, monkeypatch, {**clip, "note": "hello"}, classifier)
    with pytest.raises(OfficialCheckpointError, match=expected.replace("[", r"\[").replace("(", r"\(")):
        read_checkpoint(path)
