"""Epoch checkpoints: atomic, small, resumable bit for bit, and free of pickles.

Layout under ``OUTPUT/checkpoints/``::

    epoch-3/                          a complete checkpoint (after epoch 3)
        trainable_state.safetensors   every trainable parameter and the head buffers
                                      (BatchNorm statistics, positive ratios)
        optimizer.safetensors         the optimizer's tensors (SGD momentum buffers)
        optimizer.json                the rest of the optimizer state (parameter groups)
        scheduler.json                the learning-rate schedule's state
        scaler.json                   the fp16 gradient scaler's state (fp16 runs only)
        rng_state_<rank>.safetensors  RNG states of process <rank> (torch, accelerator, numpy)
        rng_state_<rank>.json         ... and the rest of them (Python's ``random``, numpy's position)
        trainer_state.json            epoch, update count, best-so-far, validation history,
                                      the run's resolved arguments (checked on resume)
    .epoch-4.partial/                 a checkpoint being written (ignored, removed on the next save)

**Nothing is unpickled.** Every file is safetensors (tensors only, no code) or JSON;
resuming reads exactly the files above by name and never calls ``torch.load`` or
``pickle``. (Accelerate's ``save_state`` stores the optimizer, the schedule and the RNG
states as pickles, which run code when loaded; a checkpoint in that older layout is
refused with a clear message.) A file that is not what its name says (a pickle planted
as ``optimizer.json``, a truncated safetensors file) is a :class:`CheckpointError`.

Every file is written into the ``.partial`` folder; ``trainer_state.json`` is written
last and the folder is then renamed to ``epoch-K``: a folder named ``epoch-K`` is always
complete, and a run killed at any moment leaves the previous checkpoints intact. The
newest ``keep`` checkpoints are kept. The frozen weights are not stored: they are
rebuilt from the backbones, exactly as at the start.

Data order and augmentation do not need saving: they are drawn from ``(seed, epoch,
index)`` (see :mod:`par_prompt.training.data`).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..fileio import fsync_directory, fsync_file, read_safetensors, write_json_atomic
from ..saved_files import CLIP_STATE_PREFIX, LEGACY_CLIP_PREFIX

__all__ = [
    "CHECKPOINT_PATTERN",
    "TRAINABLE_STATE_FILE",
    "TRAINER_STATE_FILE",
    "CheckpointError",
    "CheckpointManager",
    "load_trainable_state",
    "read_trainer_state",
    "trainable_state_dict",
]

TRAINABLE_STATE_FILE = "trainable_state.safetensors"
TRAINER_STATE_FILE = "trainer_state.json"
OPTIMIZER_TENSORS_FILE = "optimizer.safetensors"
OPTIMIZER_FILE = "optimizer.json"
SCHEDULER_FILE = "scheduler.json"
SCALER_FILE = "scaler.json"
RNG_TENSORS_FILE = "rng_state_{rank}.safetensors"
RNG_FILE = "rng_state_{rank}.json"
#: Files of the pickle-based layout written by earlier versions (Accelerate's save_state).
LEGACY_FILES = ("optimizer.bin", "custom_checkpoint_0.pkl", "random_states_0.pkl", "scheduler.bin", "scaler.pt")
CHECKPOINT_PATTERN = re.compile(r"^epoch-(\d+)$")
#: Version of the layout above, stored in trainer_state.json.
CHECKPOINT_FORMAT = 2


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete, unsafe or does not fit the run."""


# ----------------------------------------------------------------------------- weights


def trainable_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint must hold to restore ``model`` (a PromptPARModel): every
    trainable parameter, and every buffer outside the frozen CLIP (BatchNorm running
    statistics, positive ratios). Frozen weights are rebuilt from the backbones."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    state = model.state_dict()
    buffers = {name for name, _ in model.named_buffers() if name in state and not name.startswith(CLIP_STATE_PREFIX)}
    return {name: state[name].detach().cpu().contiguous() for name in sorted(trainable | buffers)}


def _read_tensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    try:
        return read_safetensors(path, what)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{error} The checkpoint {path.parent} cannot be used; resume from another "
                              f"one or start a new run.") from error


def _read_json(path: Path, kind: type = dict) -> Any:
    """A JSON file of a checkpoint, as ``kind``; anything else is a CheckpointError."""
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError as error:
        raise CheckpointError(f"The checkpoint {path.parent} lacks {path.name}; it is incomplete. Resume from "
                              "another checkpoint or start a new run.") from error
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f"{path} is not a JSON file ({type(error).__name__}); it is corrupt or was "
                              "replaced. Resume from another checkpoint or start a new run.") from error
    if not isinstance(value, kind):
        raise CheckpointError(f"{path} holds a JSON {type(value).__name__}, not a {kind.__name__}; it is corrupt.")
    return value


def load_trainable_state(model: torch.nn.Module, path: os.PathLike) -> None:
    """Load a ``trainable_state.safetensors`` into ``model``; the names must match exactly."""
    path = Path(path)
    found = {CLIP_STATE_PREFIX + name[len(LEGACY_CLIP_PREFIX):] if name.startswith(LEGACY_CLIP_PREFIX) else name: tensor
             for name, tensor in _read_tensors(path, "training checkpoint").items()}  # written before the rename
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


# ---------------------------------------------------------------- optimizer and schedule


def _plain(value: Any, where: str) -> Any:
    """``value`` if JSON can hold it exactly (scalars, lists, dicts of them), else an error."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value  # (json writes and reads back non-finite floats as Infinity / NaN)
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v, f"{where}.{k}") for k, v in value.items()}
    raise CheckpointError(f"{where} holds a {type(value).__name__}, which a checkpoint cannot store as JSON.")


def optimizer_state_to_files(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer ``state_dict`` into tensors (for safetensors) and plain values (JSON).

    A tensor in the per-parameter state is replaced by ``{"tensor": KEY}``, its key in
    the tensors; every other value must be a JSON scalar.
    """
    tensors: dict[str, torch.Tensor] = {}
    state: dict[str, dict[str, Any]] = {}
    for index, entry in state_dict["state"].items():
        plain = {}
        for name, value in entry.items():
            if torch.is_tensor(value):
                key = f"{index}.{name}"
                tensors[key] = value.detach().cpu().contiguous()
                plain[name] = {"tensor": key}
            else:
                plain[name] = _plain(value, f"optimizer state {index}.{name}")
        state[str(index)] = plain
    return tensors, {"state": state, "param_groups": _plain(state_dict["param_groups"], "param_groups")}


def optimizer_state_from_files(tensors: dict[str, torch.Tensor], plain: dict[str, Any], where: Path
                               ) -> dict[str, Any]:
    """The inverse of :func:`optimizer_state_to_files` (with checks: a CheckpointError if the
    files do not describe an optimizer state)."""
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{where / OPTIMIZER_FILE} is not an optimizer state written by par-prompt ({what}).")

    groups, state = plain.get("param_groups"), plain.get("state")
    if not isinstance(groups, list) or not all(isinstance(g, dict) and isinstance(g.get("params"), list)
                                               for g in groups):
        raise bad("no parameter groups")
    if not isinstance(state, dict):
        raise bad("no per-parameter state")
    out: dict[int, dict[str, Any]] = {}
    for index, entry in state.items():
        if not index.isdigit() or not isinstance(entry, dict):
            raise bad(f"entry {index!r}")
        values = {}
        for name, value in entry.items():
            if isinstance(value, dict):
                key = value.get("tensor")
                if key not in tensors:
                    raise bad(f"tensor {key!r} missing from {OPTIMIZER_TENSORS_FILE}")
                value = tensors[key]
            values[name] = value
        out[int(index)] = values
    return {"state": out, "param_groups": groups}


# -------------------------------------------------------------------------- RNG states


def rng_state_to_files(device: Optional[torch.device] = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's RNG states: torch (CPU and ``device``'s accelerator), numpy, Python."""
    tensors = {"torch": torch.get_rng_state()}
    module = _accelerator_module(device)
    if module is not None:
        for index, state in enumerate(module.get_rng_state_all()):
            tensors[f"{device.type}.{index}"] = state
    name, keys, position, has_gauss, cached = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss_next = random.getstate()
    plain = {"numpy": [name, int(position), int(has_gauss), float(cached)],
             "python": [version, list(internal), gauss_next]}
    return tensors, plain


def restore_rng_state(tensors: dict[str, torch.Tensor], plain: dict[str, Any], device: Optional[torch.device],
                      where: Path) -> None:
    try:
        torch.set_rng_state(tensors["torch"])
        module = _accelerator_module(device)
        if module is not None:
            states = [tensors[f"{device.type}.{i}"] for i in range(module.device_count())
                      if f"{device.type}.{i}" in tensors]
            if states:
                module.set_rng_state_all(states)
        name, position, has_gauss, cached = plain["numpy"]
        np.random.set_state((str(name), tensors["numpy"].numpy().astype(np.uint32), int(position), int(has_gauss),
                             float(cached)))
        version, internal, gauss_next = plain["python"]
        random.setstate((int(version), tuple(int(v) for v in internal), gauss_next))
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"The RNG state in {where} is malformed ({error}); the checkpoint is corrupt.") from error


def _accelerator_module(device: Optional[torch.device]):
    if device is None or device.type in ("cpu", "meta"):
        return None
    try:
        module = torch.get_device_module(device.type)
    except (RuntimeError, AttributeError, ValueError):
        return None
    return module if hasattr(module, "get_rng_state_all") and hasattr(module, "set_rng_state_all") else None


def read_trainer_state(path: os.PathLike) -> dict[str, Any]:
    """``trainer_state.json`` of the checkpoint ``path``, checked to be of the current layout."""
    path = Path(path)
    state = _read_json(path / TRAINER_STATE_FILE)
    if state.get("checkpoint_format") != CHECKPOINT_FORMAT:
        legacy = [name for name in LEGACY_FILES if (path / name).exists()]
        raise CheckpointError(
            f"The checkpoint {path} was written by an earlier par-prompt in Accelerate's pickle-based layout"
            + (f" ({', '.join(legacy)})" if legacy else "")
            + "; pickles can run code, so it is not loaded. Start a new run (--overwrite-output-dir) or resume "
            "with the par-prompt version that wrote it."
        )
    for key, kind in (("epoch", int), ("global_step", int), ("best", dict), ("history", list),
                      ("arguments", dict)):
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise CheckpointError(f"{path / TRAINER_STATE_FILE} lacks a valid {key!r}; the checkpoint is corrupt.")
    return state


# ---------------------------------------------------------------------------- manager


class CheckpointManager:
    """Save, find, load and prune the epoch checkpoints of one run (see the module docstring).

    Every process must call :meth:`save` and :meth:`load` (each writes and reads its own
    RNG state); only the main process writes the shared files and renames folders.
    """

    def __init__(self, accelerator, directory: os.PathLike, keep: int = 2) -> None:
        self.accelerator = accelerator
        self.directory = Path(directory)
        self.keep = max(1, int(keep))

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
        return path.absolute()

    # ------------------------------------------------------------------ save/load
    def save(self, epoch: int, trainer_state: dict[str, Any], model, optimizer, scheduler) -> Path:
        """Write the checkpoint of ``epoch`` atomically; return its path (on every process).

        ``model`` is the prepared (or plain) PromptPARModel, ``optimizer`` its optimizer
        (Accelerate's wrapper or a torch optimizer), ``scheduler`` the LR schedule.
        """
        from safetensors.torch import save_file

        accelerator = self.accelerator
        final = self.directory / f"epoch-{epoch}"
        partial = self.directory / f".epoch-{epoch}.partial"
        if accelerator.is_main_process:
            self.directory.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
        accelerator.wait_for_everyone()
        rank = accelerator.process_index
        tensors, plain = rng_state_to_files(accelerator.device)
        save_file(tensors, str(partial / RNG_TENSORS_FILE.format(rank=rank)), metadata={"format": "pt"})
        write_json_atomic(partial / RNG_FILE.format(rank=rank), plain)
        if accelerator.is_main_process:
            save_file(trainable_state_dict(accelerator.unwrap_model(model)), str(partial / TRAINABLE_STATE_FILE),
                      metadata={"format": "pt"})
            tensors, plain = optimizer_state_to_files(optimizer.state_dict())
            save_file(tensors, str(partial / OPTIMIZER_TENSORS_FILE), metadata={"format": "pt"})
            write_json_atomic(partial / OPTIMIZER_FILE, plain)
            write_json_atomic(partial / SCHEDULER_FILE, _plain(scheduler.state_dict(), "scheduler"))
            if accelerator.scaler is not None:
                write_json_atomic(partial / SCALER_FILE, _plain(accelerator.scaler.state_dict(), "scaler"))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            state = dict(trainer_state, checkpoint_format=CHECKPOINT_FORMAT, num_processes=accelerator.num_processes)
            write_json_atomic(partial / TRAINER_STATE_FILE, state)
            _fsync_tree(partial)
            if final.exists():  # the same epoch again after a resume: replace it only now
                aside = self.directory / f".epoch-{epoch}.old"
                shutil.rmtree(aside, ignore_errors=True)
                final.rename(aside)
                partial.rename(final)
                shutil.rmtree(aside, ignore_errors=True)
            else:
                partial.rename(final)
            fsync_directory(self.directory)
            self._prune()
        accelerator.wait_for_everyone()
        return final

    def load(self, path: os.PathLike, model, optimizer, scheduler) -> dict[str, Any]:
        """Restore the run's state from ``path`` (every process); return its trainer state.

        Reads only the files of the module docstring, by name, as JSON or safetensors.
        """
        path = Path(path)
        accelerator = self.accelerator
        state = read_trainer_state(path)
        load_trainable_state(accelerator.unwrap_model(model), path / TRAINABLE_STATE_FILE)
        tensors = _read_tensors(path / OPTIMIZER_TENSORS_FILE, "optimizer state")
        optimizer_state = optimizer_state_from_files(tensors, _read_json(path / OPTIMIZER_FILE), path)
        try:
            optimizer.load_state_dict(optimizer_state)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:
            raise CheckpointError(f"The optimizer state in {path} does not fit this run ({error}).") from error
        try:
            scheduler.load_state_dict(_read_json(path / SCHEDULER_FILE))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise CheckpointError(f"The schedule state in {path / SCHEDULER_FILE} is malformed ({error}).") from error
        if accelerator.scaler is not None:
            if not (path / SCALER_FILE).is_file():
                raise CheckpointError(f"The checkpoint {path} has no {SCALER_FILE}: it was not written by an fp16 "
                                      "run; resume with the --mixed-precision of that run.")
            accelerator.scaler.load_state_dict(_read_json(path / SCALER_FILE))
        rank = accelerator.process_index
        rng_tensors_path = path / RNG_TENSORS_FILE.format(rank=rank)
        if rng_tensors_path.exists() or (path / RNG_FILE.format(rank=rank)).exists():
            restore_rng_state(_read_tensors(rng_tensors_path, "RNG state"),
                              _read_json(path / RNG_FILE.format(rank=rank)), accelerator.device, path)
        # else: a process the interrupted run did not have; its RNG streams start from the seed.
        return state

    def _prune(self) -> None:
        for old in self.checkpoints()[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        for leftover in self.directory.glob(".epoch-*.partial"):
            shutil.rmtree(leftover, ignore_errors=True)


def _fsync_tree(path: Path) -> None:
    """Flush every file under ``path`` and the folder itself to disk (before the rename)."""
    for file in path.rglob("*"):
        if file.is_file():
            fsync_file(file)
    fsync_directory(path)
