"""Data parallel on CPU: two gloo processes (torchrun) train the same adapter as one process
with the same global batch and seed."""

import json
import shutil
import sys
from pathlib import Path

import torch

from par_prompt.fileio import read_safetensors
from par_prompt.training.checkpoint import TRAINABLE_STATE_FILE

from .conftest import TRAIN_SCRIPT, cli_arguments, python, run_training


def _torchrun() -> list[str]:
    found = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    return [found] if found else [python(), "-m", "torch.distributed.run"]


def test_two_processes_equal_one_process(tiny_backbones, tiny_data_dir, tmp_path):
    def args(out):
        # global batch 8 (4 per process), augmentation on, 2 epochs of 3 updates. The learning rate
        # is moderate: float rounding (which differs with the batch split) grows with every update
        # through the BatchNorms, and at 1e-6 the comparison is meant to see mathematics, not chaos.
        return cli_arguments(tiny_backbones, tiny_data_dir, tmp_path / out, epochs=2, batch_size=8,
                             lr_head=0.005, lr_prompt=0.005)

    one = run_training([python(), str(TRAIN_SCRIPT), *args("one")], tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_training([*_torchrun(), "--standalone", "--nproc_per_node", "2", str(TRAIN_SCRIPT), *args("two")],
                       tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 process(es) on cpu" in two.stdout

    for name in ("epoch-1", "epoch-2"):
        a = read_safetensors(tmp_path / "one" / "checkpoints" / name / TRAINABLE_STATE_FILE, "one")
        b = read_safetensors(tmp_path / "two" / "checkpoints" / name / TRAINABLE_STATE_FILE, "two")
        assert a.keys() == b.keys()
        for key in a:
            if key.endswith(("running_mean", "running_var")):
                # Every parameter must agree to 1e-6. A BatchNorm's running mean is the batch mean of
                # logits that sum F = 32 weights times token means of order 1, so the weights' float32
                # rounding (which differs with the batch split: 8 rows versus 4 + 4 and an all-reduce)
                # shows up about F-fold there: ~1.5e-6 after 6 updates. Statistics: 1e-5.
                torch.testing.assert_close(b[key], a[key], atol=1e-5, rtol=0, msg=f"{name}: {key}")
            else:
                torch.testing.assert_close(b[key], a[key], atol=1e-6, rtol=0, msg=f"{name}: {key}")
    # the parameters really moved (the comparison is not between initial values)
    first = read_safetensors(tmp_path / "one" / "checkpoints" / "epoch-1" / TRAINABLE_STATE_FILE, "one")
    moved = max((first[k] - a[k]).abs().max().item() for k in a if first[k].is_floating_point())
    assert moved > 1e-3
    metrics_one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    metrics_two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics_one["best_epoch"] == metrics_two["best_epoch"]
    assert metrics_two["num_processes"] == 2
