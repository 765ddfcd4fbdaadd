"""Shared set-up of the training tests: tiny backbones and data on disk, tiny arguments,
a runner for training subprocesses, and a clean Accelerate state around each test."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from par_prompt.training import DataArguments, ModelArguments, TrainingArguments

ROOT = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = ROOT / "examples" / "train_par.py"

#: Small enough for a CPU test: 32 px images, 4×4 patches grid, one layer per tower.
TINY_BACKBONE_SIZES = dict(image_size=32, patch_size=8, vision_width=32, vision_layers=1, vision_heads=2,
                           text_width=32, text_layers=1, text_heads=2, projection_dim=32, fusion_width=32,
                           fusion_heads=2)


@pytest.fixture(scope="session")
def tiny_backbones(tmp_path_factory):
    from par_prompt.demo import demo_words
    from par_prompt.tiny_backbones import write_tiny_backbones

    return write_tiny_backbones(tmp_path_factory.mktemp("backbones"), extra_words=demo_words(), **TINY_BACKBONE_SIZES)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """Synthetic data on disk: 24 train, 8 validation, 8 test images."""
    from par_prompt.data import load, make_synthetic, save

    path = tmp_path_factory.mktemp("data") / "synthetic"
    save(load(make_synthetic(24, 8, 8, seed=3, image_size=(64, 32))), path)
    return path


def tiny_arguments(backbones, data_dir, output_dir, **overrides):
    """(ModelArguments, DataArguments, TrainingArguments) of a run of a few seconds."""
    model = dict(clip=backbones.clip, fusion=backbones.vit, prompts_per_group=1, text_prompts=1)
    data = dict(dataset="synthetic", data_dir=str(data_dir), num_workers=0)
    training = dict(output_dir=str(output_dir), epochs=2, batch_size=4, eval_batch_size=8, lr_head=0.05,
                    lr_prompt=0.05, warmup_epochs=1, report_to="jsonl", logging_steps=2, seed=7)
    for key, value in overrides.items():
        target = model if key in ModelArguments.__dataclass_fields__ else (
            data if key in DataArguments.__dataclass_fields__ else training)
        target[key] = value
    return ModelArguments(**model), DataArguments(**data), TrainingArguments(**training)


def cli_arguments(backbones, data_dir, output_dir, **overrides) -> list[str]:
    """The same run as :func:`tiny_arguments`, as command-line arguments."""
    argv = []
    for group in tiny_arguments(backbones, data_dir, output_dir, **overrides):
        for name, field in type(group).__dataclass_fields__.items():
            value = getattr(group, name)
            if value is None or value == field.default:
                continue
            argv += [f"--{name}", str(value)]
    return argv


def subprocess_env(tmp_path: Path) -> dict[str, str]:
    """A deterministic, offline, single-threaded environment for training subprocesses."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ACCELERATE_", "RANK", "LOCAL_RANK",
                                                                                    "WORLD_SIZE", "MASTER_"))}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", ACCELERATE_USE_CPU="true",
               PAR_PROMPT_CACHE=str(tmp_path / "cache"), TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def run_training(command: list[str], tmp_path: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=tmp_path, env=subprocess_env(tmp_path), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Each in-process run builds its own Accelerator (mixed precision differs between tests)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@contextmanager
def one_thread():
    """Torch on one thread within the block, as the training subprocesses run."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def single_thread():
    """Run in-process training with one thread, as the subprocesses do."""
    with one_thread():
        yield


def train_tiny(backbones, data_dir, output_dir, **overrides):
    """:func:`par_prompt.training.train` of :func:`tiny_arguments`' run, on one thread."""
    from par_prompt.training import train

    with one_thread():
        return train(*tiny_arguments(backbones, data_dir, output_dir, **overrides))


def python() -> str:
    return sys.executable
