"""The PromptPAR training loop on Accelerate: one CPU to many GPUs, the paper's recipe.

:func:`train` runs a whole training run from the three argument groups of
:mod:`par_prompt.training.arguments`:

1. build the :class:`~accelerate.Accelerator` (mixed precision, gradient accumulation,
   trackers), seed every process;
2. load the data and the model (the demo's cached backbones and synthetic data when no
   ``--clip`` is given), check the splits **before the first step** (empty split,
   label width, missing validation split), set the positive ratios of the training split;
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

import contextlib
import logging
import math
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from .arguments import DataArguments, ModelArguments, TrainingArguments, arguments_dict, is_demo, resolve_arguments
from .checkpoint import CheckpointManager, write_json
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
from .trackers import select_trackers

logger = logging.getLogger(__name__)

__all__ = ["NonFiniteLossError", "PromptPARTrainer", "TrainingError", "TrainingResult", "train"]

METRICS_FILE = "metrics.json"
ARGS_FILE = "training_args.json"
BEST_DIR = "best"
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
#: Arguments that change the trajectory of a run: a resumed run must use the same.
RESUME_INVARIANTS = ("epochs", "batch_size", "gradient_accumulation_steps", "lr_head", "lr_prompt", "momentum",
                     "weight_decay", "warmup_epochs", "warmup_start_factor", "max_grad_norm", "seed")


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


def _trainer_state(epoch: int, update: int, best: dict[str, Any], history: list[dict[str, Any]],
                   args: TrainingArguments, num_train: int) -> dict[str, Any]:
    from .. import __version__

    return {
        "epoch": epoch, "global_step": update, "best": best, "history": history, "num_train_examples": num_train,
        "recipe": {name: getattr(args, name) for name in RESUME_INVARIANTS}, "version": __version__,
    }


class PromptPARTrainer:
    """One training run (see the module docstring). ``PromptPARTrainer(m, d, t).train()``.

    The pieces are methods so that a subclass can observe or alter one of them (tests
    do: e.g. ``save_checkpoint``); :func:`train` is the plain entry point.
    """

    def __init__(self, model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments,
                 data=None):
        self.demo = is_demo(model_args)
        self.given_data = data
        self.model_args, self.data_args, self.args = resolve_arguments(model_args, data_args, training_args)
        self.output_dir = Path(self.args.output_dir).expanduser().absolute()
        self.best_dir = self.output_dir / BEST_DIR
        self.last_checkpoint: Optional[Path] = None

    # ---------------------------------------------------------------- set-up
    def _make_accelerator(self):
        from accelerate import Accelerator, PartialState
        from accelerate.utils import GradientAccumulationPlugin, ProjectConfiguration

        mixed_precision = self.args.mixed_precision
        if mixed_precision == "fp16" and PartialState().device.type == "cpu":
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

    def _prepare_output_dir(self, is_main: bool) -> None:
        """Refuse to mix two runs in one output directory. Every process checks (so that all
        fail alike); the main process cleans up (``--overwrite-output-dir``) and creates it."""
        manager = CheckpointManager(None, self.output_dir / CHECKPOINT_DIR)
        if self.args.resume is None and manager.checkpoints():
            if not self.args.overwrite_output_dir:
                raise TrainingError(
                    f"{self.output_dir} holds checkpoints of an earlier run. Pass --resume latest to continue it, "
                    "--overwrite-output-dir to start afresh (its checkpoints are deleted), or another --output-dir."
                )
            if is_main:
                shutil.rmtree(self.output_dir / CHECKPOINT_DIR)
                shutil.rmtree(self.best_dir, ignore_errors=True)
        if is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)

    def _load_data(self):
        if self.given_data is not None:
            from ..data import load

            return load(self.given_data)
        try:
            return load_training_data(self.data_args, self.args.demo_cache_dir, demo=self.demo)
        except TrainingDataError:
            raise
        except (FileNotFoundError, KeyError, ValueError, IndexError) as error:
            where = self.data_args.data_dir or self.data_args.dataset
            raise TrainingDataError(f"The data {where!r} could not be loaded: {error}") from error

    def _build_model(self, data):
        from ..modeling import PromptPARModel
        from ..sentences import ATTRIBUTE_SENTENCES

        m = self.model_args
        config_kwargs = m.config_kwargs()
        dataset_name = self.data_args.dataset or data.name
        if dataset_name is not None and "/" in dataset_name:
            dataset_name = data.name  # a Hub id or a path: the sentence table comes from the data's own name
        if self.demo:
            from ..demo import DemoSettings, demo_backbones

            settings = DemoSettings(pretrain_steps=self.args.demo_pretrain_steps)
            backbones = demo_backbones(self.args.demo_cache_dir, settings,
                                       verbose=self.accelerator.is_local_main_process)
            clip, fusion = backbones.clip, m.fusion or backbones.vit
        else:
            clip, fusion = m.clip, m.fusion
        return PromptPARModel.from_backbones(
            clip, list(data.attributes), fusion, clip_revision=m.clip_revision, fusion_revision=m.fusion_revision,
            cache_dir=m.cache_dir, local_files_only=m.local_files_only, attn_implementation=m.attn_implementation,
            sentences=list(data.sentences), dataset=dataset_name if dataset_name in ATTRIBUTE_SENTENCES else None,
            **config_kwargs,
        )

    # ------------------------------------------------------------------ public
    def train(self) -> TrainingResult:
        """Run training end to end; returns the :class:`TrainingResult` (on every process)."""
        from accelerate.utils import set_seed

        started = time.perf_counter()
        args = self.args
        self.accelerator = accelerator = self._make_accelerator()
        try:
            self._prepare_output_dir(accelerator.is_main_process)
            accelerator.wait_for_everyone()
            set_seed(args.seed)
            with accelerator.main_process_first():  # the demo cache / downloads are written once
                data = self._load_data()
            # every check of the data runs before the (possibly large) backbones load
            labels = check_splits(data, self.data_args.train_split, self.data_args.validation_split,
                                  self.data_args.test_split, len(data.attributes))
            with accelerator.main_process_first(), _quiet_transformers():
                set_seed(args.seed)
                model = self._build_model(data)
            self.data, self.model = data, model
            self._check_attributes(data, model)
            return self._run(model, data, labels, started)
        finally:
            accelerator.end_training()

    # ------------------------------------------------------------------- steps
    def _check_attributes(self, data, model) -> None:
        if list(data.attributes) != list(model.config.attributes):
            raise TrainingDataError(
                f"The data's attributes {list(data.attributes)[:5]}... differ from the model's "
                f"{list(model.config.attributes)[:5]}...; they must be the same names in the same order."
            )

    def _loaders(self, model, data, labels):
        from ..data import ImageTransform

        a, d, accelerator = self.args, self.data_args, self.accelerator
        transform = ImageTransform.from_processor(model.image_processor)
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
        trainable = [p for p in model.parameters() if p.requires_grad]
        prepared, optimizer = accelerator.prepare(model, optimizer)
        accelerator.register_for_checkpointing(scheduler)
        checkpoints = CheckpointManager(accelerator, self.output_dir / CHECKPOINT_DIR, a.save_total_limit)
        checkpoints.register_hooks(prepared)

        config = arguments_dict(self.model_args, self.data_args, a)
        best = {"metric": a.metric_for_best, "value": None, "epoch": None}
        history: list[dict[str, Any]] = []
        start_epoch, update = 0, 0
        if a.resume is not None:
            path = checkpoints.resolve(a.resume)
            state = checkpoints.load(path)
            self._check_resume(state, path, len(train_labels))
            start_epoch, update, best, history = state["epoch"], state["global_step"], state["best"], state["history"]
            self.last_checkpoint = path
            accelerator.print(f"Resumed from {path} (epoch {start_epoch} of {a.epochs} done).")
        elif accelerator.is_main_process:
            write_json(self.output_dir / ARGS_FILE, config)
        accelerator.init_trackers("promptpar", config=config)
        self._describe(model, labels, updates_per_epoch, total_updates)

        for epoch in range(start_epoch, a.epochs):
            train_loss, update = self._train_epoch(prepared, optimizer, scheduler, sampler, train_loader, trainable,
                                                   epoch, update)
            metrics = self._evaluate(prepared, eval_loaders[d.validation_split])
            value = getattr(metrics, a.metric_for_best)
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
            accelerator.log({f"validation/{k}": v for k, v in record.items() if k not in ("epoch", "global_step")}
                            | {"epoch": epoch + 1}, step=update)
            accelerator.print(
                f"epoch {epoch + 1}/{a.epochs}: train loss {train_loss:.4f} | validation {metrics.paper_row()}"
                + (f"  <- best {a.metric_for_best}" if improved else ""))
            accelerator.wait_for_everyone()
            state = _trainer_state(epoch + 1, update, best, history, a, len(train_labels))
            self.last_checkpoint = self.save_checkpoint(checkpoints, epoch + 1, state)

        accelerator.wait_for_everyone()
        if best["epoch"] is None:
            raise TrainingError("No epoch was trained, so there is no adapter to evaluate (check --epochs and --resume).")
        del prepared, optimizer, model
        self.model = None
        accelerator.free_memory()  # the training model goes before the best one is loaded
        test_metrics = self._final_test(eval_loaders.get(d.test_split))
        result = TrainingResult(self.output_dir, self.best_dir, best["epoch"], a.metric_for_best, best["value"],
                                history, test_metrics, self.output_dir / METRICS_FILE)
        self._finish(result, data, time.perf_counter() - started)
        return result

    def save_checkpoint(self, checkpoints: CheckpointManager, epoch: int, state: dict[str, Any]) -> Path:
        """Write the checkpoint after ``epoch`` (every process); return its path."""
        return checkpoints.save(epoch, state)

    def _check_resume(self, state: dict[str, Any], path: Path, num_train: int) -> None:
        recipe = {name: getattr(self.args, name) for name in RESUME_INVARIANTS}
        changed = {k: (state["recipe"].get(k), v) for k, v in recipe.items() if state["recipe"].get(k) != v}
        if state.get("num_train_examples") != num_train:
            changed["training examples"] = (state.get("num_train_examples"), num_train)
        if changed:
            details = ", ".join(f"{k}: {old} in the checkpoint, {new} now" for k, (old, new) in changed.items())
            raise TrainingError(
                f"The checkpoint {path} was written by a run with another recipe ({details}). Resume with the "
                f"arguments of that run (they are in {self.output_dir / ARGS_FILE}), or start a new run."
            )

    def _describe(self, model, labels, updates_per_epoch: int, total_updates: int) -> None:
        a, accelerator = self.args, self.accelerator
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        sizes = ", ".join(f"{split} {labels[split].shape[0]}" for split in labels)
        accelerator.print(
            f"PromptPAR {'demo ' if self.demo else ''}training: {model.config.num_attributes} attributes; {sizes}; "
            f"{trainable:,} trainable of {total:,} parameters; {accelerator.num_processes} process(es) on "
            f"{accelerator.device.type}, mixed precision {self.mixed_precision}; {a.epochs} epochs × "
            f"{updates_per_epoch} updates of {a.batch_size * a.gradient_accumulation_steps} images; "
            f"output {self.output_dir}"
        )

    def _train_epoch(self, model, optimizer, scheduler, sampler, loader, trainable, epoch: int, update: int):
        from tqdm.auto import tqdm

        a, accelerator = self.args, self.accelerator
        model.train()
        sampler.set_epoch(epoch)
        device = accelerator.device
        steps = len(sampler)
        window, window_count = torch.zeros((), device=device), 0
        epoch_sum, epoch_count = torch.zeros((), device=device), 0
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{a.epochs}", leave=False,
                   disable=not accelerator.is_local_main_process)
        for step, batch in enumerate(loader):
            with accelerator.accumulate(model):
                pixel_values = batch["pixel_values"].to(device, non_blocking=True)
                labels = batch["labels"].to(device, non_blocking=True)
                loss = model(pixel_values=pixel_values, labels=labels).loss
                self._check_finite(loss, update, epoch, step, steps, "loss")
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    norm = accelerator.clip_grad_norm_(trainable, a.max_grad_norm if a.max_grad_norm > 0 else math.inf)
                    if accelerator.scaler is None:  # with fp16 the scaler skips such steps itself
                        self._check_finite(norm, update, epoch, step, steps, "gradient norm")
                optimizer.step()
                if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            detached = loss.detach().float()
            window, window_count = window + detached, window_count + 1
            epoch_sum, epoch_count = epoch_sum + detached, epoch_count + 1
            bar.update(1)
            if accelerator.sync_gradients:
                update += 1
                if a.logging_steps > 0 and update % a.logging_steps == 0:
                    mean = accelerator.reduce(window / window_count, "mean").item()
                    lrs = scheduler.get_last_lr()
                    accelerator.log({"train/loss": mean, "train/lr_prompt": lrs[0], "train/lr_head": lrs[1],
                                     "train/grad_norm": float(norm), "epoch": epoch + step / steps}, step=update)
                    bar.set_postfix(loss=f"{mean:.4f}")
                    window, window_count = torch.zeros((), device=device), 0
        bar.close()
        return accelerator.reduce(epoch_sum / max(1, epoch_count), "mean").item(), update

    def _check_finite(self, value: torch.Tensor, update: int, epoch: int, step: int, steps: int, what: str) -> None:
        accelerator = self.accelerator
        bad = (~torch.isfinite(value.detach().float())).float().reshape(1)
        if accelerator.num_processes > 1:  # every process must stop together
            bad = accelerator.reduce(bad, "sum")
        if float(bad) == 0:
            return
        where = (f"global step {update + 1} (epoch {epoch + 1}, batch {step + 1} of {steps} in the epoch)")
        if self.last_checkpoint is not None:
            saved = (f"The last good checkpoint is {self.last_checkpoint}; it is intact. Resume from it with "
                     f"--resume latest once the cause is fixed.")
        else:
            saved = "No checkpoint was written before this step (the first epoch had not finished)."
        raise NonFiniteLossError(
            f"The training {what} is {value.detach().float().item()} at {where}; training stopped before applying "
            f"this step. {saved} Usual causes: a learning rate too high (--lr-head, --lr-prompt), fp16 overflow "
            f"(use --mixed-precision bf16 or no), or broken input data.",
            step=update + 1, epoch=epoch + 1, checkpoint=self.last_checkpoint,
        )

    def _evaluate(self, model, loader):
        """Metrics of ``model`` (prepared or not) on a prepared loader, gathered from every process."""
        from ..evaluation import collect_predictions, resolve_threshold
        from ..metrics import compute_par_metrics

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
        with _quiet_transformers():
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
        }
        if test is not None:
            accelerator.log({f"test/{k}": getattr(test, k) for k in ("mA", "accuracy", "precision", "recall", "f1")},
                            step=result.validation_history[-1]["global_step"] if result.validation_history else 0)
        if accelerator.is_main_process:
            write_json(result.metrics_path, summary)
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
            accelerator.print("\n".join(lines))
            if a.push_to_hub:
                from ..hub import push_to_hub

                url = push_to_hub(self.best_dir, a.push_to_hub, private=a.hub_private or None,
                                  commit_message=f"PromptPAR adapter, best epoch {result.best_epoch}")
                accelerator.print(f"Pushed to {url}")
        accelerator.wait_for_everyone()

    def _model_card(self, result: TrainingResult, data) -> None:
        from ..hub import write_model_card

        test = result.test_metrics
        metrics = None if test is None else {**test.as_dict(), "split": self.data_args.test_split}
        dataset_name = self.data_args.dataset or data.name or self.data_args.data_dir
        write_model_card(self.best_dir, metrics=metrics,
                         training_args=arguments_dict(self.model_args, self.data_args, self.args),
                         dataset_name=dataset_name, repo_id=self.args.push_to_hub)


@contextlib.contextmanager
def _quiet_transformers():
    """Loading the backbones: no weight-loading bars or load reports (e.g. the ViT checkpoint's
    unused classifier) in the training output; errors still show."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def train(model_args: Optional[ModelArguments] = None, data_args: Optional[DataArguments] = None,
          training_args: Optional[TrainingArguments] = None, *, data=None) -> TrainingResult:
    """Train PromptPAR (see the module docstring). With no arguments: the demo.

    ``data`` (a :class:`~par_prompt.data.ParData` or a ``DatasetDict`` carrying the
    metadata) replaces loading the data named by ``data_args``; the split names of
    ``data_args`` still apply.
    """
    return PromptPARTrainer(model_args or ModelArguments(), data_args or DataArguments(),
                            training_args or TrainingArguments(), data=data).train()
