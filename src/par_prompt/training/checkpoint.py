"""Epoch checkpoints: atomic, small, resumable bit for bit.

Layout under ``OUTPUT/checkpoints/``::

    epoch-3/                       a complete checkpoint (after epoch 3)
        trainable_state.safetensors   every trainable parameter and the head buffers
                                      (BatchNorm statistics, positive ratios)
        optimizer.bin                 SGD momentum buffers (Accelerate, torch.save)
        custom_checkpoint_0.pkl       the learning-rate schedule
        random_states_<rank>.pkl      RNG states of every process (Accelerate)
        trainer_state.json            epoch, update count, best-so-far, validation history
    .epoch-4.partial/              a checkpoint being written (ignored, removed on the next save)

``Accelerator.save_state`` writes everything but the model into a ``.partial`` folder;
a save hook replaces the model's full state dict (which would include the frozen CLIP,
1.7 GB for ViT-L/14) by ``trainable_state.safetensors``. ``trainer_state.json`` is
written last and the folder is then renamed to ``epoch-K``: a folder named ``epoch-K``
is always complete, and a run killed at any moment leaves the previous checkpoints
intact. The newest ``keep`` checkpoints are kept.

Resuming loads the same files back (``Accelerator.load_state`` with a load hook for the
weights); the frozen weights are rebuilt from the backbones, exactly as at the start.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import torch

from ..fileio import read_safetensors, write_json_atomic

__all__ = [
    "CHECKPOINT_PATTERN",
    "TRAINABLE_STATE_FILE",
    "TRAINER_STATE_FILE",
    "CheckpointError",
    "CheckpointManager",
    "load_trainable_state",
    "trainable_state_dict",
]

TRAINABLE_STATE_FILE = "trainable_state.safetensors"
TRAINER_STATE_FILE = "trainer_state.json"
CHECKPOINT_PATTERN = re.compile(r"^epoch-(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete or does not fit the run."""


def trainable_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint must hold to restore ``model`` (a PromptPARModel): every
    trainable parameter, and every buffer outside the frozen CLIP (BatchNorm running
    statistics, positive ratios). Frozen weights are rebuilt from the backbones."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    state = model.state_dict()
    buffers = {name for name, _ in model.named_buffers() if name in state and not name.startswith("clip.")}
    return {name: state[name].detach().cpu().contiguous() for name in sorted(trainable | buffers)}


def load_trainable_state(model: torch.nn.Module, path: os.PathLike) -> None:
    """Load a ``trainable_state.safetensors`` into ``model``; the names must match exactly."""
    path = Path(path)
    found = read_safetensors(path, "training checkpoint")
    expected = trainable_state_dict(model)
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    wrong = [n for n in set(expected) & set(found) if expected[n].shape != found[n].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"The checkpoint {path.parent} does not fit this model (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}, wrong shapes {sorted(wrong)[:3]}). It was written by a run with other model "
            "settings; resume with the same arguments (see OUTPUT/training_args.json)."
        )
    with torch.no_grad():
        params = dict(model.named_parameters())
        buffers = dict(model.named_buffers())
        for name, tensor in found.items():
            target = params.get(name)
            if target is None:
                target = buffers[name]
            target.copy_(tensor.to(device=target.device, dtype=target.dtype))


class CheckpointManager:
    """Save, find, load and prune the epoch checkpoints of one run (see the module docstring).

    Every process must call :meth:`save` and :meth:`load` (Accelerate writes per-process
    RNG states); only the main process writes shared files and renames folders.
    """

    def __init__(self, accelerator, directory: os.PathLike, keep: int = 2) -> None:
        self.accelerator = accelerator
        self.directory = Path(directory)
        self.keep = max(1, int(keep))
        self._hooks = []

    # ----------------------------------------------------------------- discovery
    @staticmethod
    def is_complete(path: os.PathLike) -> bool:
        path = Path(path)
        return CHECKPOINT_PATTERN.match(path.name) is not None and (path / TRAINER_STATE_FILE).is_file() \
            and (path / TRAINABLE_STATE_FILE).is_file()

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if p.is_dir() and self.is_complete(p)]
        return sorted(found, key=lambda p: int(CHECKPOINT_PATTERN.match(p.name).group(1)))

    def latest(self) -> Optional[Path]:
        found = self.checkpoints()
        return found[-1] if found else None

    def resolve(self, resume: str) -> Path:
        """The checkpoint named by ``--resume`` ('latest' or a path)."""
        if resume == "latest":
            latest = self.latest()
            if latest is None:
                raise CheckpointError(
                    f"--resume latest: there is no complete checkpoint in {self.directory}. Start without --resume."
                )
            return latest
        path = Path(resume).expanduser()
        if not self.is_complete(path):
            raise CheckpointError(
                f"--resume {resume}: not a complete checkpoint (a folder epoch-K holding {TRAINER_STATE_FILE} and "
                f"{TRAINABLE_STATE_FILE}). Pass --resume latest to use the newest one in {self.directory}."
            )
        return path

    # ---------------------------------------------------------------------- hooks
    def register_hooks(self, model: torch.nn.Module) -> None:
        """Make ``save_state`` / ``load_state`` store the trainable state instead of the full model."""
        accelerator = self.accelerator

        def save_hook(models, weights, output_dir):
            if accelerator.is_main_process:
                from safetensors.torch import save_file

                save_file(trainable_state_dict(accelerator.unwrap_model(model)),
                          str(Path(output_dir) / TRAINABLE_STATE_FILE), metadata={"format": "pt"})
            weights.clear()

        def load_hook(models, input_dir):
            load_trainable_state(accelerator.unwrap_model(model), Path(input_dir) / TRAINABLE_STATE_FILE)
            models.clear()

        self._hooks = [accelerator.register_save_state_pre_hook(save_hook),
                       accelerator.register_load_state_pre_hook(load_hook)]

    # ------------------------------------------------------------------ save/load
    def save(self, epoch: int, trainer_state: dict[str, Any]) -> Path:
        """Write the checkpoint of ``epoch`` atomically; return its path (on every process)."""
        accelerator = self.accelerator
        final = self.directory / f"epoch-{epoch}"
        partial = self.directory / f".epoch-{epoch}.partial"
        if accelerator.is_main_process:
            self.directory.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
        accelerator.wait_for_everyone()
        accelerator.save_state(str(partial))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            write_json(partial / TRAINER_STATE_FILE, trainer_state)
            _fsync_tree(partial)
            if final.exists():  # the same epoch again after a resume: replace it only now
                aside = self.directory / f".epoch-{epoch}.old"
                shutil.rmtree(aside, ignore_errors=True)
                final.rename(aside)
                partial.rename(final)
                shutil.rmtree(aside, ignore_errors=True)
            else:
                partial.rename(final)
            _fsync_directory(self.directory)
            self._prune()
        accelerator.wait_for_everyone()
        return final

    def load(self, path: os.PathLike) -> dict[str, Any]:
        """Restore the run's state from ``path``; return its trainer state."""
        path = Path(path)
        try:
            state = json.loads((path / TRAINER_STATE_FILE).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise CheckpointError(f"{path / TRAINER_STATE_FILE} cannot be read ({error}).") from error
        self.accelerator.load_state(str(path))
        return state

    def _prune(self) -> None:
        for old in self.checkpoints()[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        for leftover in self.directory.glob(".epoch-*.partial"):
            shutil.rmtree(leftover, ignore_errors=True)


def write_json(path: os.PathLike, value: Any) -> None:
    """Write JSON atomically (temporary file, fsync, rename)."""
    write_json_atomic(path, value)


def _fsync_tree(path: Path) -> None:
    """Flush every file under ``path`` and the folder itself to disk (before the rename)."""
    for file in path.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_directory(path)


def _fsync_directory(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

