"""The PromptPAR training loop on Accelerate: one CPU to many GPUs, the paper's recipe.

:func:`train` runs a whole training run from the three argument groups of
:mod:`par_prompt.training.arguments`:

1. build the :class:`~accelerate.Accelerator` (mixed precision, gradient accumulation,
   trackers), seed every process;
2. load the data and the model (the backbones of ``--clip`` and ``--fusion``, or those of
   a :data:`BackboneSource` when no ``--clip`` is given), check the splits **before the
   first step** (empty split, label width, missing validation split), set the positive
   ratios of the training split;
3. train epoch by epoch: SGD with the warm-up cosine schedule stepped per update,
   gradient-norm clipping, a finite-loss check at every step; after every epoch
   validate, export the adapter with ``save_pretrained`` to ``OUTPUT/best`` when the
   chosen validation metric improves, and write an atomic checkpoint;
4. evaluate the exported best adapter once on the test split (the test split never
   picks the checkpoint), write ``OUTPUT/metrics.json`` and the model card, and push to
   the Hub when asked.

Data parallelism: ``batch_size`` is the global batch; each process takes its contiguous
slice of every global batch (:class:`~par_prompt.training.data.EpochBatchSampler`), the
BatchNorms of the heads are synchronised across processes
(:mod:`par_prompt.training.distributed`), and DDP averages the gradients, so ``P``
processes compute the same updates as one process with the same global batch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ..fileio import read_json_object, write_json_atomic
from ..quiet import quiet_libraries
from .arguments import (
    RESUME_MAY_CHANGE,
    DataArguments,
    ModelArguments,
    TrainingArguments,
    Defaults,
    arguments_dict,
    comparable_arguments,
    looks_like_test_split,
    resolve_arguments,
    resume_changes,
    resume_conflicts,
)
from .checkpoint import CheckpointManager, read_trainer_state
from .data import (
    EpochBatchSampler,
    ImageSplit,
    TrainingDataError,
    check_splits,
    load_training_data,
    make_eval_loader,
    make_train_loader,
    scaled_augment_pad,
    shard_batch_size,
)
from .distributed import convert_sync_batchnorm
from .optim import WarmupCosineSchedule, build_optimizer
from .logs import LOG_FILE, run_logging
from .trackers import select_trackers

logger = logging.getLogger(__name__)

__all__ = ["BackboneSource", "NonFiniteLossError", "PromptPARTrainer", "TrainingError", "TrainingResult", "train"]

METRICS_FILE = "metrics.json"
ARGS_FILE = "training_args.json"
BEST_DIR = "best"
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"

#: Where a run without ``--clip`` takes its backbones (the demo passes one that builds and
#: caches tiny ones): called on every process, the main process first, with the resolved
#: training arguments and whether this process may show progress; returns ``(clip, fusion)``,
#: each a Hub id or a local directory. ``--fusion``, when given, still wins.
BackboneSource = Callable[[TrainingArguments, bool], "tuple[str, str]"]


class TrainingError(RuntimeError):
    """Training cannot start or continue; the message names the problem and the fix."""


class NonFiniteLossError(TrainingError):
    """The loss (or the gradient norm) became NaN or infinite; no update was applied."""

    def __init__(self, message: str, step: int, epoch: int, checkpoint: Optional[Path]) -> None:
        super().__init__(message)
        self.step = step
        self.epoch = epoch
        self.checkpoint = checkpoint


@dataclass
class TrainingResult:
    """What a run produced."""

    output_dir: Path
    best_dir: Path
    best_epoch: int
    metric_for_best: str
    best_value: float
    validation_history: list[dict[str, Any]] = field(default_factory=list)
    test_metrics: Optional[Any] = None  # ParMetrics
    metrics_path: Optional[Path] = None


def data_fingerprint(data, labels: dict[str, Any], splits: list[str]) -> str:
    """A short hash of what a run trains and selects on: attributes, sentences and the
    labels of ``splits`` (checked on resume, so that other data at the same path is caught)."""
    import hashlib

    digest = hashlib.sha256(json.dumps([list(data.attributes), list(data.sentences or [])]).encode())
    for split in splits:
        matrix = labels[split]
        digest.update(f"{split}:{matrix.shape}".encode())
        digest.update(matrix.astype("int8").tobytes())
    return digest.hexdigest()[:16]


class PromptPARTrainer:
    """One training run (see the module docstring). ``PromptPARTrainer(m, d, t).train()``.

    The pieces are methods so that a subclass can observe or alter one of them (tests
    do: e.g. ``save_checkpoint``); :func:`train` is the plain entry point. ``sources``
    (from :func:`par_prompt.training.recipe.build_arguments`) records where the settings
    came from, for ``training_args.json``; ``defaults`` and ``backbones`` let an
    application run its own kind of run (see :func:`train`).
    """

    def __init__(self, model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments,
                 data=None, sources: Optional[dict[str, Any]] = None, *, defaults: Optional[Defaults] = None,
                 backbones: Optional[BackboneSource] = None):
        if model_args.clip is None and backbones is None:
            raise TrainingError(
                "No CLIP backbone: pass --clip, a Hub id (e.g. openai/clip-vit-large-patch14) or a local directory. "
                "(`par-prompt train` without --clip runs the demo.)"
            )
        self.given_data = data
        self.backbones = backbones
        self.sources = dict(sources or {})
        self.model_args, self.data_args, self.args = resolve_arguments(model_args, data_args, training_args,
                                                                       defaults)
        self.output_dir = Path(self.args.output_dir).expanduser().absolute()
        self.best_dir = self.output_dir / BEST_DIR
        self.last_checkpoint: Optional[Path] = None
        self.resume_from: Optional[Path] = None
        self.resumed_state: Optional[dict[str, Any]] = None
        self.hub_repo: Optional[str] = None
        self.processor = None  # the model's PromptPARProcessor, set when the model is built

    @property
    def arguments(self) -> dict[str, Any]:
        """The resolved arguments as one flat dict."""
        return arguments_dict(self.model_args, self.data_args, self.args)

    @property
    def selects_on_test(self) -> bool:
        d = self.data_args
        return d.validation_split == d.test_split or looks_like_test_split(d.validation_split)

    # ---------------------------------------------------------------- set-up
    def _make_accelerator(self):
        from accelerate import Accelerator
        from accelerate.utils import GradientAccumulationPlugin, ProjectConfiguration

        mixed_precision = self.args.mixed_precision
        if mixed_precision == "fp16" and _process_state().device.type == "cpu":
            warnings.warn("--mixed-precision fp16 is not supported on CPU (no fp16 autocast with a gradient scaler "
                          "there); training in full precision instead. Use --mixed-precision bf16 on CPU.",
                          stacklevel=2)
            mixed_precision = "no"
        logging_dir = self.output_dir / LOG_DIR
        accelerator = Accelerator(
            mixed_precision=mixed_precision,
            gradient_accumulation_plugin=GradientAccumulationPlugin(
                num_steps=self.args.gradient_accumulation_steps, sync_with_dataloader=False),
            log_with=select_trackers(self.args.report_to, logging_dir) or None,
            project_config=ProjectConfiguration(project_dir=str(self.output_dir), logging_dir=str(logging_dir)),
            step_scheduler_with_optimizer=False,
        )
        self.mixed_precision = mixed_precision
        return accelerator

    def _check_output_dir(self) -> None:
        """Refuse an output directory that is a file or cannot be written, before anything
        else happens (every process checks; nothing is created here)."""
        out = self.output_dir
        for path in (out, *out.parents):
            if path.exists():
                if not path.is_dir():
                    what = "--output-dir" if path == out else f"--output-dir {out}: {path}"
                    raise TrainingError(f"{what} is a file, not a directory; choose another --output-dir.")
                if not os.access(path, os.W_OK | os.X_OK):
                    raise TrainingError(f"--output-dir {out}: {path} is not writable; choose a writable "
                                        f"--output-dir.")
                break

    def _earlier_run(self) -> list[str]:
        """What the output directory holds of a run: complete checkpoints, a best/ adapter,
        metrics.json (any of them makes the folder taken)."""
        found = []
        if CheckpointManager(None, self.output_dir / CHECKPOINT_DIR).checkpoints():
            found.append(f"{CHECKPOINT_DIR}/")
        best = self.best_dir
        if best.exists() and (not best.is_dir() or any(best.iterdir())):
            found.append(f"{BEST_DIR}/")
        if (self.output_dir / METRICS_FILE).exists():
            found.append(METRICS_FILE)
        return found

    def _resumes_another_run(self) -> bool:
        """Whether ``--resume`` names a checkpoint outside OUTPUT/checkpoints (the run of
        another output directory; a path that is no checkpoint is reported when it is read)."""
        resume = self.args.resume
        if resume is None or resume == "latest":
            return False
        path = Path(resume).expanduser().absolute()
        return CheckpointManager.is_complete(path) and path.resolve().parent != (
            self.output_dir / CHECKPOINT_DIR).resolve()

    def _prepare_output_dir(self, is_main: bool) -> Optional[str]:
        """Refuse to mix two runs in one output directory, create it and prove it writable.
        Every process checks (so that all fail alike); the main process cleans up
        (``--overwrite-output-dir``) and creates it, and returns what went wrong instead of
        raising, so that the other processes are not left waiting for it.

        A folder holding checkpoints, a best/ adapter or metrics.json is taken: a new run
        needs ``--overwrite-output-dir`` (which removes exactly these), and a run resumed
        from a checkpoint of another folder (continuing that run here) needs a folder that
        holds none of them, since it would prune, overwrite or report another run's files."""
        taken = self._earlier_run()
        if taken and self.args.resume is None:
            if not self.args.overwrite_output_dir:
                if f"{CHECKPOINT_DIR}/" in taken:
                    raise TrainingError(
                        f"{self.output_dir} holds checkpoints of an earlier run. Pass --resume latest to continue "
                        "it, --overwrite-output-dir to start afresh (its checkpoints/, best/ and metrics.json are "
                        "deleted), or another --output-dir."
                    )
                raise TrainingError(
                    f"{self.output_dir} holds the results of an earlier run ({', '.join(taken)}). Pass "
                    "--overwrite-output-dir to start afresh (they are deleted), or another --output-dir."
                )
            if is_main:
                shutil.rmtree(self.output_dir / CHECKPOINT_DIR, ignore_errors=True)
                if self.best_dir.is_dir() and not self.best_dir.is_symlink():
                    shutil.rmtree(self.best_dir)
                else:
                    self.best_dir.unlink(missing_ok=True)
                (self.output_dir / METRICS_FILE).unlink(missing_ok=True)
        elif taken and self._resumes_another_run():
            own = (f" (--resume latest continues the run of {self.output_dir})" if f"{CHECKPOINT_DIR}/" in taken
                   else "")
            raise TrainingError(
                f"--resume {self.args.resume} continues the run of another output directory, but --output-dir "
                f"{self.output_dir} holds a run of its own ({', '.join(taken)}), whose files it would prune, overwrite "
                f"or report as its own. Pass a new or empty --output-dir, or resume in the checkpoint's own output "
                f"directory{own}."
            )
        if is_main:
            try:
                (self.output_dir / LOG_DIR).mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryFile(dir=self.output_dir):
                    pass
            except OSError as error:
                return (f"--output-dir {self.output_dir} cannot be written ({error.strerror or error}); choose a "
                        f"writable --output-dir.")
        return None

    def _read_resume_checkpoint(self) -> None:
        """``--resume``: find the checkpoint and check its recorded arguments against this
        run's, before any data or model loads (every process)."""
        if self.args.resume is None:
            return
        manager = CheckpointManager(None, self.output_dir / CHECKPOINT_DIR)
        path = manager.resolve(self.args.resume)
        state = read_trainer_state(path)
        conflicts = resume_conflicts(state["arguments"], comparable_arguments(self.arguments))
        if conflicts:
            details = "; ".join(f"{name}: {old!r} in the checkpoint, {new!r} now" for name, (old, new)
                                in conflicts.items())
            raise TrainingError(
                f"--resume {path}: this run's settings differ from the checkpoint's ({details}). A resumed run must "
                f"use the same settings (they are in {self.output_dir / ARGS_FILE}); only output, logging, worker, "
                f"evaluation-batch, test-split and Hub settings may change ({', '.join(sorted(RESUME_MAY_CHANGE))}). "
                f"Resume with the same settings or start a new run."
            )
        if state["epoch"] > self.args.epochs:
            raise TrainingError(f"--resume {path}: the checkpoint is after epoch {state['epoch']}, beyond --epochs "
                                f"{self.args.epochs}.")
        self.resume_from, self.resumed_state = path, state

    def _check_hub(self, accelerator) -> None:
        """``--push-to-hub``: check the login and the repository now, not after the last epoch."""
        if self.args.push_to_hub is None:
            return
        from accelerate.utils import broadcast_object_list

        from ..hub import HubAccessError, check_push_access

        outcome = [None, None]
        if accelerator.is_main_process:
            try:
                outcome[0] = check_push_access(self.args.push_to_hub, private=self.args.hub_private or None)
            except HubAccessError as error:
                outcome[1] = str(error)
        if accelerator.num_processes > 1:
            broadcast_object_list(outcome)
        if outcome[1] is not None:
            raise TrainingError(outcome[1])
        self.hub_repo = outcome[0]
        logger.info("Hub: %s is writable; the best adapter is pushed there at the end.", self.hub_repo)

    def _write_arguments(self) -> None:
        """``OUTPUT/training_args.json``: the resolved settings (a valid --config file), where
        they came from, and what may change on resume (and what did)."""
        from .. import __version__

        resumes = list((self.resumed_state or {}).get("resumes", []))
        if self.resumed_state is not None:
            changed = resume_changes(self.resumed_state["arguments"], comparable_arguments(self.arguments))
            processes = (self.resumed_state.get("num_processes"), self.accelerator.num_processes)
            if processes[0] != processes[1]:  # equal updates up to float rounding (global batches)
                changed["num_processes"] = list(processes)
            resumes.append({"checkpoint": str(self.resume_from), "changed": changed})
        self.resumes = resumes
        record = {"arguments": self.arguments, "sources": self.sources,
                  "resume": {"may_change": RESUME_MAY_CHANGE, "resumed": resumes}, "version": __version__}
        write_json_atomic(self.output_dir / ARGS_FILE, record)

    def _print_settings(self) -> None:
        sources = [f"recipe {self.sources['recipe']}" if self.sources.get("recipe") else None,
                   f"config {self.sources['config']}" if self.sources.get("config") else None]
        origin = ", ".join(s for s in sources if s) or "defaults"
        items = [f"{name}={value}" for name, value in self.arguments.items()]
        lines, line = [], "  "
        for item in items:
            if len(line) + len(item) > 100 and line.strip():
                lines.append(line.rstrip())
                line = "  "
            line += item + "  "
        lines.append(line.rstrip())
        logger.info("Settings (%s, then the command line; saved in %s):\n%s", origin, self.output_dir / ARGS_FILE,
                    "\n".join(lines))
        if self.selects_on_test:
            logger.warning("--allow-test-selection: the best epoch is chosen on the split %r, which holds test "
                           "data; its test figures are optimistic (recorded in metrics.json).",
                           self.data_args.validation_split)

    def _load_data(self):
        if self.given_data is not None:
            from ..data import load

            return load(self.given_data)
        try:
            return load_training_data(self.data_args, self.args.demo_cache_dir)
        except TrainingDataError:
            raise
        except (OSError, KeyError, ValueError, IndexError, TypeError) as error:
            where = self.data_args.data_dir or self.data_args.dataset
            raise TrainingDataError(f"The data {where!r} could not be loaded: {error}") from error

    def _build_model(self, data):
        """The model to train; its processor (the CLIP's tokenizer and image settings)
        becomes ``self.processor``."""
        from ..modeling import PromptPARModel, PromptPARProcessor
        from ..sentences import ATTRIBUTE_SENTENCES

        m = self.model_args
        config_kwargs = m.config_kwargs()
        dataset_name = self.data_args.dataset or data.name
        if dataset_name is not None and "/" in dataset_name:
            dataset_name = data.name  # a Hub id or a path: the sentence table comes from the data's own name
        if m.clip is None:
            clip, fusion = self.backbones(self.args, self.accelerator.is_local_main_process)
            fusion = m.fusion or fusion
        else:
            clip, fusion = m.clip, m.fusion
        try:
            self.processor = PromptPARProcessor.from_pretrained(clip, revision=m.clip_revision, cache_dir=m.cache_dir,
                                                                local_files_only=m.local_files_only)
            return PromptPARModel.from_backbones(
                clip, list(data.attributes), fusion, clip_revision=m.clip_revision, fusion_revision=m.fusion_revision,
                cache_dir=m.cache_dir, local_files_only=m.local_files_only, attn_implementation=m.attn_implementation,
                sentences=list(data.sentences), dataset=dataset_name if dataset_name in ATTRIBUTE_SENTENCES else None,
                processor=self.processor, **config_kwargs,
            )
        except (OSError, ValueError) as error:
            raise TrainingError(f"The model cannot be built from --clip {clip} and --fusion {fusion}: "
                                f"{' '.join(str(error).split())}") from error

    # ------------------------------------------------------------------ public
    def train(self) -> TrainingResult:
        """Run training end to end; returns the :class:`TrainingResult` (on every process)."""
        from accelerate.utils import set_seed

        started = time.perf_counter()
        args = self.args
        self._check_output_dir()
        state = _process_state()
        problem = [self._prepare_output_dir(state.is_main_process)]
        if state.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            broadcast_object_list(problem)  # the main process's outcome, so that all stop alike
        if problem[0] is not None:
            raise TrainingError(problem[0])
        self._read_resume_checkpoint()
        log_file = self.output_dir / LOG_DIR / LOG_FILE
        with run_logging(log_file if state.is_main_process else None):
            self.accelerator = accelerator = self._make_accelerator()
            try:
                self._check_hub(accelerator)
                if accelerator.is_main_process:
                    self._print_settings()
                set_seed(args.seed)
                with accelerator.main_process_first():  # caches and downloads are written once
                    data = self._load_data()
                # every check of the data runs before the (possibly large) backbones load
                self._check_dataset_name(data)
                labels = check_splits(data, self.data_args.train_split, self.data_args.validation_split,
                                      self.data_args.test_split, len(data.attributes))
                self._check_batches_and_validation(labels)
                self.fingerprint = data_fingerprint(data, labels, [self.data_args.train_split,
                                                                   self.data_args.validation_split])
                self._check_resumed_data()
                if accelerator.is_main_process:
                    self._write_arguments()
                with accelerator.main_process_first(), quiet_libraries("transformers", bars=True):
                    set_seed(args.seed)
                    model = self._build_model(data)
                self.data, self.model = data, model
                self._check_attributes(data, model)
                return self._run(model, data, labels, started)
            finally:
                accelerator.end_training()

    # ------------------------------------------------------------------- steps
    def _check_dataset_name(self, data) -> None:
        """With data from --data-dir (or passed in), --dataset names them in the model's
        config and card: it must agree with the name the data record, if they record one
        (compared ignoring case, spaces, '-' and '_'), else the card would name other data."""
        d = self.data_args
        named, recorded = d.dataset, getattr(data, "name", None)
        if named is None or not recorded or (d.data_dir is None and self.given_data is None):
            return  # without --data-dir, --dataset is where the data come from

        def key(name: str) -> str:
            return re.sub(r"[\s_\-]+", "", str(name)).lower()

        if key(named) != key(recorded):
            where = f"--data-dir {d.data_dir}" if self.given_data is None else "the data given"
            raise TrainingDataError(
                f"--dataset {named} names other data than {where}, which record the name {recorded!r}; the model "
                f"card and config would name the wrong data set. Leave --dataset out (or pass --dataset {recorded}) "
                f"to use the data's own name, or pass the --data-dir of {named}."
            )

    def _check_batches_and_validation(self, labels: dict[str, Any]) -> None:
        """The checks of the batch and the validation split that need no model, before the
        backbones load: the training batches (the heads end in a BatchNorm: at least 2
        examples per process; at least one full update per epoch), and a validation split
        that the chosen metric can score."""
        a, d = self.args, self.data_args
        EpochBatchSampler(labels[d.train_split].shape[0], a.batch_size, seed=a.seed,
                          num_processes=self.accelerator.num_processes, steps_multiple=a.gradient_accumulation_steps)
        if a.metric_for_best == "mA":  # the example-based metrics score any split
            validation = labels[d.validation_split]
            if not ((validation == 1).any(axis=0) & (validation == 0).any(axis=0)).any():
                raise TrainingDataError(self._unscored_message())

    def _unscored_message(self) -> str:
        return (f"The validation split {self.data_args.validation_split!r} scores no attribute "
                f"({self.args.metric_for_best} needs an attribute with both positive and negative labels); use a "
                f"larger validation split.")

    def _check_resumed_data(self) -> None:
        state = self.resumed_state
        if state is not None and state.get("data_fingerprint") != self.fingerprint:
            raise TrainingError(
                f"--resume {self.resume_from}: the data differ from the data the checkpoint was trained on (other "
                f"labels, attributes, sentences or split sizes at {self.data_args.data_dir or self.data_args.dataset!r}"
                f"). Resume with the run's data or start a new run."
            )

    def _check_attributes(self, data, model) -> None:
        if list(data.attributes) != list(model.config.attributes):
            raise TrainingDataError(
                f"The data's attributes {list(data.attributes)[:5]}... differ from the model's "
                f"{list(model.config.attributes)[:5]}...; they must be the same names in the same order."
            )

    def _loaders(self, model, data, labels):
        from ..data import ImageTransform

        a, d, accelerator = self.args, self.data_args, self.accelerator
        transform = ImageTransform.from_processor(self.processor.image_processor)
        pad = scaled_augment_pad(transform.size, d.augment_pad)
        train_split = ImageSplit(data.splits[d.train_split], transform, labels[d.train_split], train=True,
                                 seed=a.seed, augment_pad=pad)
        sampler = EpochBatchSampler(len(train_split), a.batch_size, seed=a.seed,
                                    num_processes=accelerator.num_processes, process_index=accelerator.process_index,
                                    steps_multiple=a.gradient_accumulation_steps)
        train_loader = make_train_loader(train_split, sampler, d.num_workers,
                                         pin_memory=accelerator.device.type == "cuda")
        eval_batch = shard_batch_size(a.eval_batch_size, accelerator.num_processes)
        eval_loaders = {}
        for split in (d.validation_split, d.test_split):
            if split is not None and split not in eval_loaders:
                dataset = ImageSplit(data.splits[split], transform, labels[split])
                eval_loaders[split] = accelerator.prepare(make_eval_loader(dataset, eval_batch, d.num_workers))
        return sampler, train_loader, eval_loaders

    def _run(self, model, data, labels, started: float) -> TrainingResult:
        from ..losses import compute_positive_ratios

        a, d, accelerator = self.args, self.data_args, self.accelerator
        train_labels = labels[d.train_split]
        model.set_positive_ratios(compute_positive_ratios(torch.from_numpy(train_labels)))
        sampler, train_loader, eval_loaders = self._loaders(model, data, labels)
        updates_per_epoch = len(sampler) // a.gradient_accumulation_steps
        total_updates = updates_per_epoch * a.epochs
        warmup_updates = int(round(a.warmup_epochs * updates_per_epoch))
        optimizer = build_optimizer(model, a.lr_head, a.lr_prompt, a.momentum, a.weight_decay)
        scheduler = WarmupCosineSchedule(optimizer, warmup_updates, total_updates, a.warmup_start_factor)
        # One BatchNorm implementation for any number of processes (global-batch statistics;
        # the same operations with one process as with many, so that both round alike).
        convert_sync_batchnorm(model)
        if a.gradient_checkpointing:
            self._enable_checkpointing(model)
        trainable = [p for p in model.parameters() if p.requires_grad]
        prepared, optimizer = accelerator.prepare(model, optimizer)
        checkpoints = CheckpointManager(accelerator, self.output_dir / CHECKPOINT_DIR, a.save_total_limit)
        self._training_objects = (prepared, optimizer, scheduler)

        best = {"metric": a.metric_for_best, "value": None, "epoch": None}
        history: list[dict[str, Any]] = []
        start_epoch, update = 0, 0
        if self.resume_from is not None:
            path = self.resume_from
            state = checkpoints.load(path, prepared, optimizer, scheduler)
            start_epoch, update, best, history = state["epoch"], state["global_step"], state["best"], state["history"]
            self.last_checkpoint = path
            best = self._restore_best_adapter(accelerator.unwrap_model(prepared), best, start_epoch, state)
            logger.info("Resumed from %s (epoch %d of %d done).", path, start_epoch, a.epochs)
        accelerator.init_trackers("promptpar", config=self.arguments)
        self._describe(model, labels, updates_per_epoch, total_updates)

        for epoch in range(start_epoch, a.epochs):
            train_loss, update = self._train_epoch(prepared, optimizer, scheduler, sampler, train_loader, trainable,
                                                   epoch, update)
            metrics = self._evaluate(prepared, eval_loaders[d.validation_split])
            value = getattr(metrics, a.metric_for_best)
            if value is None:  # mA / mAP are undefined when no attribute has both positives and negatives
                raise TrainingDataError(self._unscored_message())  # (checked before the model loads)
            lr_prompt, lr_head = scheduler.get_last_lr()
            record = {"epoch": epoch + 1, "global_step": update, "train_loss": train_loss,
                      "lr_head": lr_head, "lr_prompt": lr_prompt,
                      **{k: getattr(metrics, k) for k in ("mA", "accuracy", "precision", "recall", "f1")}}
            history.append(record)
            improved = best["value"] is None or value > best["value"]
            if improved:
                best = {"metric": a.metric_for_best, "value": value, "epoch": epoch + 1}
                if accelerator.is_main_process:
                    accelerator.unwrap_model(prepared).save_pretrained(self.best_dir)
                    self.processor.save_pretrained(self.best_dir)
                    # which adapter is the best, for a resume (the checkpoint's state is the main process's)
                    best["save_id"] = adapter_save_id(self.best_dir)
            accelerator.log({f"validation/{k}": v for k, v in record.items() if k not in ("epoch", "global_step")}
                            | {"epoch": epoch + 1}, step=update)
            logger.info(f"epoch {epoch + 1}/{a.epochs}: train loss {train_loss:.4f} | validation {metrics.paper_row()}"
                        + (f"  <- best {a.metric_for_best}" if improved else ""))
            accelerator.wait_for_everyone()
            state = self._trainer_state(epoch + 1, update, best, history, len(train_labels))
            self.last_checkpoint = self.save_checkpoint(checkpoints, epoch + 1, state)

        accelerator.wait_for_everyone()
        if best["epoch"] is None:
            raise TrainingError("No epoch was trained, so there is no adapter to evaluate (check --epochs and --resume).")
        del prepared, optimizer, model
        self.model = None
        self._training_objects = None
        accelerator.free_memory()  # the training model goes before the best one is loaded
        test_metrics = self._final_test(eval_loaders.get(d.test_split))
        result = TrainingResult(self.output_dir, self.best_dir, best["epoch"], a.metric_for_best, best["value"],
                                history, test_metrics, self.output_dir / METRICS_FILE)
        self._finish(result, data, time.perf_counter() - started)
        return result

    @staticmethod
    def _enable_checkpointing(model) -> None:
        """Recompute activations in the backward pass. transformers >= 5.24 names it
        ``activation_checkpointing_enable`` (which still calls an overridden
        ``gradient_checkpointing_enable``); earlier 5.x only has the older name."""
        kwargs = {"use_reentrant": False}
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

    def _restore_best_adapter(self, model, best: dict[str, Any], epoch: int, state: dict[str, Any]
                              ) -> dict[str, Any]:
        """After a resume, make sure ``best/`` holds the best epoch so far, the very adapter
        the checkpoint records (by its save id; it may lie in the output directory of the
        run that wrote the checkpoint, when the output directory changed): keep it when it
        is there, export it from the resumed weights when the best epoch is the checkpoint's
        own, copy it from the earlier run's ``best/``, or refuse before training, so that a
        run never ends with another adapter than its best, or without one. Returns ``best``
        with the save id of the adapter now in ``best/``. The main process decides and
        writes; the others follow."""
        if best.get("epoch") is None:
            return best
        from accelerate.utils import broadcast_object_list

        accelerator = self.accelerator
        outcome: list[Optional[str]] = [None, None]  # (save id now in best/, why not)
        if accelerator.is_main_process:
            try:
                outcome[0] = self._restore_best_files(model, best, epoch, state)
            except TrainingError as error:
                outcome[1] = str(error)
            except OSError as error:  # reported on every process, not left to hang the others
                outcome[1] = (f"The best adapter so far could not be restored to {self.best_dir} ({error}); free "
                              f"the space or fix the permissions and resume again.")
        if accelerator.num_processes > 1:
            broadcast_object_list(outcome)
        if outcome[1] is not None:
            raise TrainingError(outcome[1])
        accelerator.wait_for_everyone()
        return dict(best, save_id=outcome[0]) if outcome[0] is not None else best

    def _restore_best_files(self, model, best: dict[str, Any], epoch: int, state: dict[str, Any]) -> Optional[str]:
        """:meth:`_restore_best_adapter`'s work (main process); returns the save id in best/."""
        expected = best.get("save_id")  # None: a checkpoint written before save ids were recorded

        def holds_best(folder: Path) -> bool:
            return (folder / "config.json").is_file() and (expected is None or adapter_save_id(folder) == expected)

        if holds_best(self.best_dir):
            return adapter_save_id(self.best_dir)
        if best["epoch"] == epoch:  # the resumed weights are the best epoch's
            def export(staging: Path) -> None:
                model.save_pretrained(staging)
                self.processor.save_pretrained(staging)

            self._replace_best_dir(export)
            return adapter_save_id(self.best_dir)
        earlier = state.get("arguments", {}).get("output_dir")
        source = Path(earlier).expanduser().absolute() / BEST_DIR if earlier else None
        if source is not None and source.resolve() != self.best_dir.resolve() and holds_best(source):
            self._replace_best_dir(lambda staging: shutil.copytree(source, staging, dirs_exist_ok=True))
            return adapter_save_id(self.best_dir)
        searched = list(dict.fromkeys(folder for folder in (self.best_dir, source) if folder is not None))
        where = f"The best adapter so far (epoch {best['epoch']}) is not in {' nor in '.join(map(str, searched))}"
        others = [folder for folder in searched if (folder / "config.json").is_file()]
        if not others:
            raise TrainingError(f"{where}; resume in the run's original --output-dir, or copy its best/ folder to "
                                f"{self.best_dir}.")
        kept = self.resume_from.parent / f"epoch-{best['epoch']}" if self.resume_from is not None else None
        retry = (f"resume from that epoch's checkpoint (--resume {kept}) or start a new run"
                 if kept is not None and CheckpointManager.is_complete(kept) else "start a new run")
        raise TrainingError(
            f"{where}: {' and '.join(map(str, others))} {'holds' if len(others) == 1 else 'hold'} another adapter "
            f"(save {adapter_save_id(others[0])}, not {expected}: a later epoch's or another run's), which this run "
            f"would report as its best. To go on, {retry}."
        )

    def _replace_best_dir(self, fill: Callable[[Path], None]) -> None:
        """Write a new ``best/`` with ``fill(folder)`` beside it, then swap it in, so that
        best/ is never half-written (what it held is replaced: an adapter of this run that
        is not the best epoch's)."""
        staging, aside = self.output_dir / f".{BEST_DIR}.partial", self.output_dir / f".{BEST_DIR}.old"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        fill(staging)
        if self.best_dir.exists():
            shutil.rmtree(aside, ignore_errors=True)
            self.best_dir.rename(aside)
            staging.rename(self.best_dir)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            staging.rename(self.best_dir)

    def _trainer_state(self, epoch: int, update: int, best: dict[str, Any], history: list[dict[str, Any]],
                       num_train: int) -> dict[str, Any]:
        from .. import __version__

        return {
            "epoch": epoch, "global_step": update, "best": best, "history": history, "num_train_examples": num_train,
            "data_fingerprint": self.fingerprint, "arguments": comparable_arguments(self.arguments),
            "resumes": getattr(self, "resumes", []), "version": __version__,
        }

    def save_checkpoint(self, checkpoints: CheckpointManager, epoch: int, state: dict[str, Any]) -> Path:
        """Write the checkpoint after ``epoch`` (every process); return its path."""
        return checkpoints.save(epoch, state, *self._training_objects)

    def _describe(self, model, labels, updates_per_epoch: int, total_updates: int) -> None:
        a, accelerator = self.args, self.accelerator
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        sizes = ", ".join(f"{split} {labels[split].shape[0]}" for split in labels)
        logger.info(
            f"PromptPAR training: {model.config.num_attributes} attributes; {sizes}; "
            f"{trainable:,} trainable of {total:,} parameters; {accelerator.num_processes} process(es) on "
            f"{accelerator.device.type}, mixed precision {self.mixed_precision}; {a.epochs} epochs × "
            f"{updates_per_epoch} updates of {a.batch_size * a.gradient_accumulation_steps} images; "
            f"output {self.output_dir}"
        )

    def _train_epoch(self, model, optimizer, scheduler, sampler, loader, trainable, epoch: int, update: int):
        from ..progress import progress_bar

        a, accelerator = self.args, self.accelerator
        model.train()
        sampler.set_epoch(epoch)
        device = accelerator.device
        ratios = accelerator.unwrap_model(model).positive_ratios
        steps = len(sampler)
        window, window_count = torch.zeros((), device=device), 0
        window_outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        epoch_sum, epoch_count = torch.zeros((), device=device), 0
        bar = progress_bar(total=steps, desc=f"epoch {epoch + 1}/{a.epochs}", unit="step", leave=False,
                           enabled=accelerator.is_local_main_process)
        for step, batch in enumerate(loader):
            with accelerator.accumulate(model):
                pixel_values = batch["pixel_values"].to(device, non_blocking=True)
                labels = batch["labels"].to(device, non_blocking=True)
                output = model(pixel_values=pixel_values, labels=labels)
                loss = output.loss
                self._check_finite(loss, update, epoch, step, steps, "loss")
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    limit = a.max_grad_norm if a.max_grad_norm > 0 else math.inf
                    norm = accelerator.clip_grad_norm_(trainable, limit)
                    if accelerator.scaler is None:  # with fp16 the scaler skips such steps itself
                        self._check_finite(norm, update, epoch, step, steps, "gradient norm")
                optimizer.step()
                if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            detached = loss.detach().float()
            window, window_count = window + detached, window_count + 1
            epoch_sum, epoch_count = epoch_sum + detached, epoch_count + 1
            if a.logging_steps > 0:  # kept (B x N each) to log the two loss terms once per window
                window_outputs.append((output.logits.detach(), output.gl_logits.detach(), labels))
            bar.update(1)
            if accelerator.sync_gradients:
                update += 1
                if a.logging_steps > 0 and update % a.logging_steps == 0:
                    terms = self._loss_terms(window_outputs, ratios)
                    values = accelerator.reduce(torch.stack([window / window_count, *terms]), "mean").tolist()
                    lrs = scheduler.get_last_lr()
                    accelerator.log({"train/loss": values[0], "train/attribute_loss": values[1],
                                     "train/gl_loss": values[2], "train/lr_prompt": lrs[0], "train/lr_head": lrs[1],
                                     "train/grad_norm": float(norm), "epoch": epoch + step / steps}, step=update)
                    bar.set_postfix(loss=f"{values[0]:.4f}")
                    window, window_count, window_outputs = torch.zeros((), device=device), 0, []
        bar.close()
        return accelerator.reduce(epoch_sum / max(1, epoch_count), "mean").item(), update

    @staticmethod
    def _loss_terms(outputs, ratios) -> list[torch.Tensor]:
        """The attribute (heads) and GL terms of the loss over a logging window, unweighted by
        ``gl_alpha``: the loss of every batch is a mean over its images and the batches are
        equal in size, so the window's mean is the loss of the concatenated batches."""
        from ..losses import weighted_bce_with_logits

        logits, gl_logits, labels = (torch.cat(parts) for parts in zip(*outputs))
        with torch.no_grad():
            return [weighted_bce_with_logits(logits, labels, ratios).float(),
                    weighted_bce_with_logits(gl_logits, labels, ratios).float()]

    def _check_finite(self, value: torch.Tensor, update: int, epoch: int, step: int, steps: int, what: str) -> None:
        accelerator = self.accelerator
        bad = (~torch.isfinite(value.detach().float())).float().reshape(1)
        if accelerator.num_processes > 1:  # every process must stop together
            bad = accelerator.reduce(bad, "sum")
        if float(bad) == 0:
            return
        where = (f"global step {update + 1} (epoch {epoch + 1}, batch {step + 1} of {steps} in the epoch)")
        if self.last_checkpoint is not None:
            saved = f"The last good checkpoint is {self.last_checkpoint}; it is intact."
            fix = ("start a new run with the changed setting (in another --output-dir, to keep this one; a resumed "
                   "run must keep its settings), or, if images were broken, repair them and resume with --resume "
                   "latest")
        else:
            saved = "No checkpoint was written before this step (the first epoch had not finished)."
            fix = "start the run again with the changed setting or the repaired data"
        raise NonFiniteLossError(
            f"The training {what} is {value.detach().float().item()} at {where}; training stopped before applying "
            f"this step. {saved} Usual causes: a learning rate too high (lower --lr-head, --lr-prompt), fp16 "
            f"overflow (use --mixed-precision bf16 or no), or broken input data: {fix}.",
            step=update + 1, epoch=epoch + 1, checkpoint=self.last_checkpoint,
        )

    def _evaluate(self, model, loader):
        """Metrics of ``model`` (prepared or not) on a prepared loader, gathered from every process."""
        from ..evaluation import collect_predictions
        from ..metrics import compute_par_metrics
        from ..thresholds import resolve_threshold

        accelerator = self.accelerator
        unwrapped = accelerator.unwrap_model(model)
        with accelerator.autocast():
            probs, labels = collect_predictions(unwrapped, loader, accelerator)
        config = unwrapped.config
        return compute_par_metrics(probs, labels, threshold=resolve_threshold(config).value,
                                   attribute_names=config.attributes)

    def _final_test(self, loader):
        """Load the exported best adapter and evaluate it once on the test split."""
        from ..modeling import PromptPARModel

        if loader is None:
            return None
        accelerator, m = self.accelerator, self.model_args
        with quiet_libraries("transformers", bars=True):  # no loading bars or reports in the training output
            best = PromptPARModel.from_pretrained(self.best_dir, cache_dir=m.cache_dir,
                                                  local_files_only=m.local_files_only,
                                                  attn_implementation=m.attn_implementation)
        best.to(accelerator.device)
        metrics = self._evaluate(best, loader)
        del best
        return metrics

    def _finish(self, result: TrainingResult, data, seconds: float) -> None:
        a, accelerator = self.args, self.accelerator
        test = result.test_metrics
        summary = {
            "metric_for_best": a.metric_for_best, "best_epoch": result.best_epoch, "best_value": result.best_value,
            "best_dir": str(self.best_dir), "validation": result.validation_history,
            "test": None if test is None else {"split": self.data_args.test_split, **test.as_dict()},
            "seconds": round(seconds, 1), "num_processes": accelerator.num_processes,
            "validation_split": self.data_args.validation_split, "selected_on_test": self.selects_on_test,
        }
        if test is not None:
            accelerator.log({f"test/{k}": getattr(test, k) for k in ("mA", "accuracy", "precision", "recall", "f1")},
                            step=result.validation_history[-1]["global_step"] if result.validation_history else 0)
        if accelerator.is_main_process:
            write_json_atomic(result.metrics_path, summary)
            self._model_card(result, data)
            best_row = result.validation_history[result.best_epoch - 1] if result.validation_history else {}
            lines = [
                "",
                f"Best epoch {result.best_epoch} by validation {a.metric_for_best} "
                f"({100 * result.best_value:.2f}); validation mA {100 * best_row.get('mA', float('nan')):.2f}.",
            ]
            if test is not None:
                lines += [f"Test ({self.data_args.test_split}), evaluated once with the best adapter:",
                          "  " + test.paper_row(), "", test.per_attribute_table()]
            lines += ["", f"Adapter saved to {self.best_dir} (load it with PromptPARModel.from_pretrained).",
                      f"Metrics in {result.metrics_path}; {seconds:.0f} s in all."]
            logger.info("\n".join(lines))
            if a.push_to_hub:
                from ..hub import push_to_hub

                url = push_to_hub(self.best_dir, self.hub_repo or a.push_to_hub, private=a.hub_private or None,
                                  commit_message=f"PromptPAR adapter, best epoch {result.best_epoch}")
                logger.info("Pushed to %s", url)
        accelerator.wait_for_everyone()

    def _model_card(self, result: TrainingResult, data) -> None:
        from ..hub import write_model_card

        test = result.test_metrics
        metrics = None if test is None else {**test.as_dict(), "split": self.data_args.test_split}
        dataset_name = self.data_args.dataset or data.name or self.data_args.data_dir
        write_model_card(self.best_dir, metrics=metrics,
                         training_args=arguments_dict(self.model_args, self.data_args, self.args),
                         dataset_name=dataset_name, repo_id=self.hub_repo or self.args.push_to_hub)


def adapter_save_id(folder: Path) -> Optional[str]:
    """The save id in ``folder/config.json`` (a new one at every ``save_pretrained``), or None."""
    return (read_json_object(Path(folder) / "config.json") or {}).get("save_id")


def _process_state():
    """Accelerate's process state, created as ``Accelerator`` would create it (a plain
    ``PartialState()`` ignores ACCELERATE_USE_CPU and would leave torchrun's CPU processes
    unaware of each other)."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def train(model_args: Optional[ModelArguments] = None, data_args: Optional[DataArguments] = None,
          training_args: Optional[TrainingArguments] = None, *, data=None,
          sources: Optional[dict[str, Any]] = None, defaults: Optional[Defaults] = None,
          backbones: Optional[BackboneSource] = None) -> TrainingResult:
    """Train PromptPAR (see the module docstring). ``model_args.clip`` names the CLIP; the
    demo (:func:`par_prompt.demo.train_demo`) is the run without one.

    ``data`` (a :class:`~par_prompt.data.ParData` or a ``DatasetDict`` carrying the
    metadata) replaces loading the data named by ``data_args``; the split names of
    ``data_args`` still apply. ``defaults`` replaces :data:`~par_prompt.training.arguments.
    PAPER_DEFAULTS` as the table that fills the options left at ``None``; ``backbones``
    (a :data:`BackboneSource`) gives the backbones when ``model_args.clip`` is ``None``.
    """
    return PromptPARTrainer(model_args or ModelArguments(), data_args or DataArguments(),
                            training_args or TrainingArguments(), data=data, sources=sources, defaults=defaults,
                            backbones=backbones).train()
