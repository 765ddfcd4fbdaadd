"""Resume after SIGKILL: a run killed right after epoch 1's checkpoint and resumed ends with
the same adapter, bit for bit, as an uninterrupted run (CPU, subprocesses)."""

import json
import signal
import textwrap

import torch

from par_prompt.fileio import read_safetensors
from par_prompt.training.checkpoint import TRAINABLE_STATE_FILE

from .conftest import TRAIN_SCRIPT, cli_arguments, python, run_training

KILLER = textwrap.dedent('''
    """Train, and SIGKILL this process as soon as epoch $KILL_AFTER_EPOCH's checkpoint is complete."""
    import os, signal, sys
    from transformers import HfArgumentParser
    from par_prompt.training import DataArguments, ModelArguments, PromptPARTrainer, TrainingArguments

    class KilledAfterCheckpoint(PromptPARTrainer):
        def save_checkpoint(self, checkpoints, epoch, state):
            path = super().save_checkpoint(checkpoints, epoch, state)
            if epoch == int(os.environ["KILL_AFTER_EPOCH"]):
                os.kill(os.getpid(), signal.SIGKILL)
            return path

    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    KilledAfterCheckpoint(*parser.parse_args_into_dataclasses(sys.argv[1:])).train()
''')


def _tensors(folder):
    files = [folder / "clip_adapter" / "adapter_model.safetensors", folder / "promptpar_head.safetensors"]
    return {f"{f.name}:{k}": v for f in files for k, v in read_safetensors(f, "adapter").items()}


def test_resume_after_sigkill_is_bit_for_bit(tiny_backbones, tiny_data_dir, tmp_path):
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)

    def args(out, **extra):
        return cli_arguments(tiny_backbones, tiny_data_dir, tmp_path / out, epochs=3, **extra)

    straight = run_training([python(), str(TRAIN_SCRIPT), *args("straight")], tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]

    killed = run_training(["env", "KILL_AFTER_EPOCH=1", python(), str(killer), *args("interrupted")], tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    checkpoints = tmp_path / "interrupted" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch-1"]  # killed before epoch 2 began

    resumed = run_training([python(), str(TRAIN_SCRIPT), *args("interrupted", resume="latest")], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stdout and "epoch-1" in resumed.stdout

    a, b = _tensors(tmp_path / "straight" / "best"), _tensors(tmp_path / "interrupted" / "best")
    assert a.keys() == b.keys() and a
    assert all(torch.equal(a[name], b[name]) for name in a), [n for n in a if not torch.equal(a[n], b[n])]
    last_a = read_safetensors(tmp_path / "straight" / "checkpoints" / "epoch-3" / TRAINABLE_STATE_FILE, "a")
    last_b = read_safetensors(checkpoints / "epoch-3" / TRAINABLE_STATE_FILE, "b")
    assert all(torch.equal(last_a[name], last_b[name]) for name in last_a)
    # the default keeps the newest two checkpoints
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch-2", "epoch-3"]
    history_a = json.loads((tmp_path / "straight" / "metrics.json").read_text())["validation"]
    history_b = json.loads((tmp_path / "interrupted" / "metrics.json").read_text())["validation"]
    assert history_a == history_b
