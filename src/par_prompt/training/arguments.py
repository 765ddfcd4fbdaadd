"""Command-line arguments of PromptPAR training, as dataclasses for ``HfArgumentParser``.

Three groups: :class:`ModelArguments` (backbones and method settings),
:class:`DataArguments` (where the data comes from) and :class:`TrainingArguments` (the
recipe, Accelerate options, output). Every option is documented in ``--help``.

**Defaults that depend on the run.** Options whose default differs between runs are
``None`` here and are filled in by :func:`resolve_arguments` from a table of defaults:
:data:`PAPER_DEFAULTS`, the paper's recipe (docs/method.md §8), unless the caller passes
another (the demo, an application of this package, passes its own: ``par-prompt train``
without ``--clip`` runs it). Every default can be overridden.

``batch_size`` is the **global** batch of one forward/backward step, summed over all
processes (the paper's 16), so that the recipe is the same on one CPU or eight GPUs; it
must be divisible by the number of processes. The batch of one optimizer update is
``batch_size × gradient_accumulation_steps``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

__all__ = [
    "RESUME_MAY_CHANGE",
    "DataArguments",
    "ModelArguments",
    "PAPER_DEFAULTS",
    "TrainingArguments",
    "resolve_arguments",
]

#: docs/method.md §8 and the paper's model settings (ViT-L/14).
PAPER_DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"prompts_per_group": 10, "fusion_layers": 1},
    "data": {"num_workers": 4},
    "training": {
        "output_dir": "outputs/promptpar",
        "epochs": 40,
        "batch_size": 16,
        "lr_head": 8e-3,
        "lr_prompt": 4e-3,
        "warmup_epochs": 5,
    },
}

#: A table of defaults: ``{"model" | "data" | "training": {option: value}}``.
Defaults = dict[str, dict[str, Any]]


@dataclass
class ModelArguments:
    """Backbones and PromptPAR settings (docs/method.md §2-§5)."""

    _argument_group_name = "model"

    clip: Optional[str] = field(default=None, metadata={"help": (
        "CLIP backbone: a Hub id (e.g. openai/clip-vit-large-patch14) or a local directory. Without it the "
        "embedded demo runs (tiny demo backbones, synthetic data).")})
    fusion: Optional[str] = field(default=None, metadata={"help": (
        "ViT whose last layer(s) and final norm initialise the frozen fusion transformer. Default: "
        "google/vit-base-patch16-224 (paper recipe, with --clip); the demo ViT (demo, without --clip).")})
    clip_revision: Optional[str] = field(default=None, metadata={"help": "Revision (branch, tag, commit) of --clip."})
    fusion_revision: Optional[str] = field(default=None, metadata={"help": "Revision of --fusion."})
    cache_dir: Optional[str] = field(default=None, metadata={"help": "Hugging Face cache directory for the backbones."})
    local_files_only: bool = field(default=False, metadata={"help": "Never download; use the local cache only."})
    attn_implementation: Optional[str] = field(default=None, metadata={
        "help": "Attention implementation of the backbones (eager, sdpa, ...). Default: transformers' choice."})
    num_regions: int = field(default=4, metadata={"help": "K, the number of horizontal body regions."})
    overlap_rows: int = field(default=2, metadata={"help": "o, patch rows by which neighbouring regions overlap."})
    prompts_per_group: Optional[int] = field(default=None, metadata={"help": (
        "m, visual prompts per group (global and each region).")})
    vision_depth: Optional[int] = field(default=None, metadata={
        "help": "Number of vision layers with their own prompts. Default: all."})
    text_prompts: int = field(default=3, metadata={"help": "Text prompts per layer."})
    text_depth: Optional[int] = field(default=None, metadata={
        "help": "Number of text layers with their own prompts. Default: all."})
    prompt_init: Literal["uniform", "zeros"] = field(
        default="uniform", metadata={"help": "Prompt initialisation: uniform (docs/method.md §2) or zeros (Table VIII)."}
    )
    fusion_layers: Optional[int] = field(default=None, metadata={"help": (
        "Frozen fusion transformer layers taken from --fusion (0: a trainable MLP over the sequence instead, "
        "paper Table VI).")})
    gl_alpha: float = field(default=0.5, metadata={"help": "Weight α of the global-local loss."})
    gl_threshold: float = field(default=0.5, metadata={"help": "Threshold τ of the global-local aggregator."})
    threshold: float = field(default=0.5, metadata={
        "help": "Probability threshold for predictions and metrics (saved in the model config)."})

    def config_kwargs(self) -> dict[str, Any]:
        """The settings passed on to :class:`~par_prompt.PromptPARConfig`."""
        names = ("num_regions", "overlap_rows", "prompts_per_group", "vision_depth", "text_prompts", "text_depth",
                 "prompt_init", "fusion_layers", "gl_alpha", "gl_threshold", "threshold")
        return {name: getattr(self, name) for name in names}


@dataclass
class DataArguments:
    """Where the data comes from (see :func:`par_prompt.training.data.load_training_data`)."""

    _argument_group_name = "data"

    dataset: Optional[str] = field(default=None, metadata={"help": (
        "Data set name (pa100k, peta, rapv1, rapv2, wider, synthetic): selects the attribute sentences and names "
        "the data in the model card. Without --data-dir it may also be a Hub dataset id or a directory. With "
        "--data-dir it must agree with the name the data records (leave it out to use that name). "
        "Default: synthetic in the demo without --data-dir; the data's own name with --data-dir.")})
    data_dir: Optional[str] = field(default=None, metadata={"help": (
        "The data: a directory written by `par-prompt convert` (or par_prompt.data.save), a folder of data "
        "files, or a Hub dataset id.")})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    validation_split: str = field(default="validation", metadata={
        "help": "Split that picks the best epoch (evaluated after every epoch)."})
    test_split: Optional[str] = field(default="test", metadata={
        "help": "Split evaluated once at the end with the best adapter ('none' to skip)."})
    allow_test_selection: bool = field(default=False, metadata={"help": (
        "Allow --validation-split to be the test split (or a split named like one), so that the best epoch is "
        "chosen on test data, as the official PromptPAR code does. Its test figures are then optimistic; the run "
        "records that it did this (metrics.json: selected_on_test).")})
    synthetic_train: int = field(default=2000, metadata={
        "help": "Synthetic data (--dataset synthetic without --data-dir only): training examples."})
    synthetic_validation: int = field(default=400, metadata={
        "help": "Synthetic data (--dataset synthetic without --data-dir only): validation examples."})
    synthetic_test: int = field(default=400, metadata={
        "help": "Synthetic data (--dataset synthetic without --data-dir only): test examples."})
    synthetic_seed: int = field(default=0, metadata={
        "help": "Synthetic data (--dataset synthetic without --data-dir only): seed of the generator."})
    augment_pad: Optional[int] = field(default=None, metadata={"help": (
        "Training augmentation: pixels of black padding before the random crop back to size (then a random "
        "horizontal flip). Default: 10 px at 224 px input, scaled to the model's input size.")})
    num_workers: Optional[int] = field(default=None, metadata={"help": (
        "DataLoader worker processes per training process.")})

    def __post_init__(self) -> None:
        if isinstance(self.test_split, str) and self.test_split.lower() in ("", "none"):
            self.test_split = None


@dataclass
class TrainingArguments:
    """The training recipe (docs/method.md §8), Accelerate options and the output."""

    _argument_group_name = "training"

    output_dir: Optional[str] = field(default=None, metadata={"help": (
        "Output directory: checkpoints/, best/ (the exported adapter), metrics.json, logs/.")})
    overwrite_output_dir: bool = field(default=False, metadata={"help": (
        "Start afresh even if the output directory holds an earlier run (its checkpoints/, best/ and metrics.json "
        "are removed; other files are kept).")})
    resume: Optional[str] = field(default=None, metadata={"help": (
        "Continue an interrupted run: 'latest' (the newest complete checkpoint in OUTPUT/checkpoints) or the "
        "path of a checkpoint directory (OUTPUT/checkpoints/epoch-K). A checkpoint of another output directory "
        "continues that run in --output-dir, which must then hold no run of its own (no checkpoints/, best/ or "
        "metrics.json).")})
    epochs: Optional[int] = field(default=None, metadata={"help": "Training epochs."})
    batch_size: Optional[int] = field(default=None, metadata={"help": (
        "Global batch of one forward/backward step, over all processes (must be divisible by their number).")})
    eval_batch_size: Optional[int] = field(default=None, metadata={
        "help": "Global evaluation batch. Default: 2 × --batch-size."})
    gradient_accumulation_steps: int = field(default=1, metadata={
        "help": "Steps whose gradients are summed before each update (update batch = batch × steps)."})
    lr_head: Optional[float] = field(default=None, metadata={"help": (
        "Learning rate of the head side: projections, fusion norm, heads, BatchNorms, temperature.")})
    lr_prompt: Optional[float] = field(default=None, metadata={"help": (
        "Learning rate of the visual and text prompts and region class tokens.")})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum."})
    weight_decay: float = field(default=1e-4, metadata={"help": "SGD weight decay."})
    warmup_epochs: Optional[float] = field(default=None, metadata={"help": (
        "Epochs of linear warm-up (from --warmup-start-factor × lr), then a cosine decay to 0; the schedule is "
        "stepped after every optimizer update.")})
    warmup_start_factor: float = field(default=0.01, metadata={"help": "Warm-up starts at this fraction of the lr."})
    max_grad_norm: float = field(default=10.0, metadata={
        "help": "Clip the gradient norm of the trainable parameters to this value (0: no clipping)."})
    mixed_precision: Literal["no", "bf16", "fp16"] = field(default="no", metadata={"help": (
        "no, bf16 or fp16 (Accelerate autocast). On CPU use bf16; fp16 falls back to no with a warning.")})
    seed: int = field(default=42, metadata={
        "help": "Seed of initialisation, data order and augmentation (set on every process)."})
    metric_for_best: Literal["mA", "accuracy", "precision", "recall", "f1"] = field(default="mA", metadata={
        "help": "Validation metric that picks the best epoch: mA, accuracy, precision, recall or f1."})
    save_total_limit: int = field(default=2, metadata={
        "help": "Epoch checkpoints to keep (the newest ones); at least 1."})
    logging_steps: int = field(default=10, metadata={"help": "Log the training loss every this many updates."})
    report_to: str = field(default="auto", metadata={"help": (
        "Where metrics go: auto (tensorboard when installed, else jsonl), jsonl (OUTPUT/logs/metrics.jsonl), none, "
        "all (jsonl and every installed tracker), or a comma-separated list of jsonl and Accelerate's trackers: "
        "tensorboard, wandb, mlflow, comet_ml, aim, clearml, dvclive, swanlab, trackio.")})
    gradient_checkpointing: bool = field(default=False, metadata={"help": (
        "Recompute activations in the backward pass instead of storing them (model.gradient_checkpointing_enable): "
        "less memory, more compute; the same updates.")})
    demo_pretrain_steps: int = field(default=0, metadata={"help": (
        "Demo only (without --clip): steps of contrastive (SigLIP-style) pre-training of the tiny CLIP on "
        "synthetic image-sentence pairs before prompt tuning, cached (0: none; the demo reaches its figure without, "
        "see par_prompt.demo).")})
    demo_cache_dir: Optional[str] = field(default=None, metadata={"help": (
        "Where the demo keeps its backbones and synthetic data (with --clip: the synthetic data only, so it "
        "applies with --dataset synthetic without --data-dir). Default: $PAR_PROMPT_CACHE or "
        "~/.cache/par_prompt.")})
    push_to_hub: Optional[str] = field(default=None, metadata={"help": (
        "After training, upload the best adapter (with its model card) to this Hub model repo, e.g. "
        "your-name/promptpar-pa100k. The login and the repository are checked (and the repository created) "
        "before training starts. The token comes from `hf auth login` or $HF_TOKEN.")})
    hub_private: bool = field(default=False, metadata={
        "help": "With --push-to-hub: create the Hub repo as private."})

    def __post_init__(self) -> None:
        self.mixed_precision = str(self.mixed_precision).lower()
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"--mixed-precision must be no, bf16 or fp16, got {self.mixed_precision!r}.")
        if self.metric_for_best not in ("mA", "accuracy", "precision", "recall", "f1"):
            raise ValueError(
                f"--metric-for-best must be one of mA, accuracy, precision, recall, f1; got {self.metric_for_best!r}."
            )
        from .trackers import parse_report_to

        parse_report_to(self.report_to)  # names only; availability is checked by resolve_arguments


#: Arguments that may differ between an interrupted run and its resumption, and why.
#: Every other argument must be the same (checked against the checkpoint before anything
#: loads); the list is also written to OUTPUT/training_args.json.
RESUME_MAY_CHANGE: dict[str, str] = {
    "output_dir": "where the resumed run writes; the checkpoint is named by --resume",
    "overwrite_output_dir": "only used when starting afresh",
    "resume": "names the checkpoint",
    "cache_dir": "where the same backbones are found",
    "local_files_only": "where the same backbones are found",
    "demo_cache_dir": "where the same demo backbones and data are found",
    "attn_implementation": "the same attention computed another way (results equal up to float rounding)",
    "gradient_checkpointing": "trades memory for compute; the same updates",
    "num_workers": "data order and augmentation do not depend on the workers",
    "eval_batch_size": "evaluation only (results equal up to float rounding)",
    "test_split": "evaluated once at the end; takes no part in training or in choosing the best epoch",
    "allow_test_selection": "a permission; the validation split itself must stay the same",
    "logging_steps": "logging only",
    "report_to": "logging only",
    "save_total_limit": "how many checkpoints are kept",
    "push_to_hub": "what happens to the result",
    "hub_private": "what happens to the result",
}

#: Arguments naming a local path or a Hub id: equal on resume when they resolve to the same folder.
PATH_ARGUMENTS = ("clip", "fusion", "data_dir")


def resolve_arguments(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments,
                      defaults: Optional[Defaults] = None):
    """Fill the ``None`` defaults from ``defaults`` (:data:`PAPER_DEFAULTS` unless given; see
    the module docstring) and check every value and their combination (a ``ValueError``
    naming the option, before anything is loaded). Returns new dataclass instances."""
    defaults = PAPER_DEFAULTS if defaults is None else defaults
    resolved = []
    for args, key in ((model_args, "model"), (data_args, "data"), (training_args, "training")):
        values = {name: value for name, value in defaults.get(key, {}).items() if getattr(args, name) is None}
        if key == "data" and args.data_dir is not None:
            values.pop("dataset", None)  # the data name themselves (a default would mislabel them)
        resolved.append(dataclasses.replace(args, **values))
    model_args, data_args, training_args = resolved
    if training_args.eval_batch_size is None and isinstance(training_args.batch_size, int):
        training_args = dataclasses.replace(training_args, eval_batch_size=2 * training_args.batch_size)
    check_arguments(model_args, data_args, training_args)
    return model_args, data_args, training_args


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_arguments(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> None:
    """Check resolved arguments: types, ranges, the roles of the splits, the model settings."""
    _check_types(model_args, data_args, training_args)
    t, d, m = training_args, data_args, model_args
    at_least = {"epochs": 1, "batch_size": 1, "eval_batch_size": 1, "gradient_accumulation_steps": 1,
                "save_total_limit": 1, "logging_steps": 0, "demo_pretrain_steps": 0}
    for name, low in at_least.items():
        if getattr(t, name) < low:
            extra = " (the latest checkpoint is needed to resume)" if name == "save_total_limit" else ""
            raise ValueError(f"{_flag(name)} must be at least {low}{extra}; got {getattr(t, name)}.")
    for name in ("num_workers", "augment_pad"):
        value = getattr(d, name)
        if value is not None and value < 0:
            raise ValueError(f"{_flag(name)} must be non-negative; got {value}.")
    for name in ("synthetic_train", "synthetic_validation", "synthetic_test"):
        if getattr(d, name) < 1:
            raise ValueError(f"{_flag(name)} must be at least 1; got {getattr(d, name)}.")
    for name in ("lr_head", "lr_prompt"):
        value = getattr(t, name)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{_flag(name)} must be a positive number; got {value}.")
    if not 0 <= t.momentum < 1:
        raise ValueError(f"--momentum must lie in [0, 1); got {t.momentum}.")
    if not (math.isfinite(t.weight_decay) and t.weight_decay >= 0):
        raise ValueError(f"--weight-decay must be non-negative; got {t.weight_decay}.")
    if not 0 < t.warmup_start_factor <= 1:
        raise ValueError(f"--warmup-start-factor must lie in (0, 1]; got {t.warmup_start_factor}.")
    if not (math.isfinite(t.max_grad_norm) and t.max_grad_norm >= 0):
        raise ValueError(f"--max-grad-norm must be non-negative (0 disables clipping); got {t.max_grad_norm}.")
    if not (math.isfinite(t.warmup_epochs) and 0 <= t.warmup_epochs <= t.epochs):
        raise ValueError(
            f"--warmup-epochs {t.warmup_epochs:g} does not fit in --epochs {t.epochs}: the warm-up must lie in "
            f"[0, epochs]. Lower --warmup-epochs or raise --epochs."
        )
    if t.resume is not None and t.overwrite_output_dir:
        raise ValueError("--resume continues the run in the output directory and --overwrite-output-dir deletes it; "
                         "pass one of them.")
    if t.push_to_hub is not None:
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(t.push_to_hub)
        except HFValidationError as error:
            raise ValueError(f"--push-to-hub {t.push_to_hub!r} is not a Hub repository id such as "
                             f"your-name/promptpar-pa100k ({error}).") from None
    from .trackers import check_trackers_available

    check_trackers_available(t.report_to)
    for name, value in (("clip", m.clip), ("fusion", m.fusion), ("data_dir", d.data_dir)):
        if isinstance(value, str) and _is_local_path(value) and not Path(value).expanduser().exists():
            raise ValueError(f"{_flag(name)} {value}: no such file or directory (a local path, not a Hub id).")
    _check_splits(d)
    from .data import check_named_data

    check_named_data(d)
    if d.dataset is None and d.data_dir is None:
        raise ValueError(
            "Name the data: --dataset NAME --data-dir DIR (a directory from `par-prompt convert`), or --dataset "
            "with a Hub dataset id. Without --clip the demo runs on synthetic data."
        )
    from ..modeling import PromptPARConfig

    _check_ignored_options(m, d, t)
    PromptPARConfig(attributes=["attribute"], **m.config_kwargs())  # the model settings, by the model's own rules


def _changed(group: Any, name: str) -> bool:
    """Whether the option ``name`` of ``group`` differs from its dataclass default (was set)."""
    return getattr(group, name) != type(group).__dataclass_fields__[name].default


def uses_synthetic_data(d: DataArguments) -> bool:
    """Whether the run trains on the generated synthetic data (the --synthetic-* options apply)."""
    return d.data_dir is None and isinstance(d.dataset, str) and d.dataset.lower() == "synthetic"


def _check_ignored_options(m: ModelArguments, d: DataArguments, t: TrainingArguments) -> None:
    """Refuse options that were set but would have no effect in this run (a silent no-op
    otherwise): --synthetic-* without the synthetic data, --demo-* with --clip, --hub-*
    without --push-to-hub."""
    synthetic = uses_synthetic_data(d)
    if not synthetic:
        for name in ("synthetic_train", "synthetic_validation", "synthetic_test", "synthetic_seed"):
            if _changed(d, name):
                data = f"--data-dir {d.data_dir}" if d.data_dir is not None else f"--dataset {d.dataset}"
                raise ValueError(f"{_flag(name)} applies to the generated synthetic data only (--dataset synthetic "
                                 f"without --data-dir), not to {data}; drop {_flag(name)}.")
    if m.clip is not None:
        names = ["demo_pretrain_steps"] + ([] if synthetic else ["demo_cache_dir"])
        for name in names:
            if _changed(t, name):
                raise ValueError(f"{_flag(name)} applies to the demo only (without --clip), which brings its own "
                                 f"backbones; drop {_flag(name)} or --clip.")
    if t.push_to_hub is None:
        for name in ("hub_private",):
            if _changed(t, name):
                raise ValueError(f"{_flag(name)} applies to the upload only; add --push-to-hub REPO or drop "
                                 f"{_flag(name)}.")


def _is_local_path(value: str) -> bool:
    """Whether a --clip / --fusion / --data-dir value can only be a local path (a Hub id is
    ``name`` or ``namespace/name``)."""
    return value.startswith(("/", ".", "~")) or value.count("/") > 1 or "\\" in value


def looks_like_test_split(name: str) -> bool:
    """Whether a split name says it holds test data ("test", "Test", "test_a", "testing", ...)."""
    return "test" in name.lower()


def _check_splits(d: DataArguments) -> None:
    for name in ("train_split", "validation_split"):
        if not getattr(d, name):
            raise ValueError(f"{_flag(name)} must name a split.")
    if d.train_split in (d.validation_split, d.test_split):
        other = "validation" if d.train_split == d.validation_split else "test"
        raise ValueError(
            f"--train-split {d.train_split!r} is also the {other} split: a model is never evaluated on the data it "
            f"trains on. Name different splits (see the data's splits)."
        )
    if d.allow_test_selection:
        return
    if d.validation_split == d.test_split or looks_like_test_split(d.validation_split):
        raise ValueError(
            f"--validation-split {d.validation_split!r} is the test split: the best epoch would be chosen on test data "
            f"and the test figures would be optimistic. Use a validation split (`par-prompt convert` writes one), or "
            f"pass --allow-test-selection to do this knowingly (as the official PromptPAR code does)."
        )


def _check_types(*groups: Any) -> None:
    """Every value has its field's type (values from config files are not parsed by argparse)."""
    for group in groups:
        hints = typing.get_type_hints(type(group))
        for item in dataclasses.fields(group):
            value = getattr(group, item.name)
            if not _has_type(value, hints[item.name]):
                raise ValueError(f"{_flag(item.name)} must be {_type_name(hints[item.name])}; got {value!r}.")


def _has_type(value: Any, kind: Any) -> bool:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Union:
        return any(_has_type(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if kind is type(None):
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def _type_name(kind: Any) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Union:
        return " or ".join(_type_name(arg) for arg in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            type(None): "null"}.get(kind, getattr(kind, "__name__", str(kind)))


def arguments_dict(*groups: Any) -> dict[str, Any]:
    """All arguments as one flat JSON-serialisable dict (for the model card and the logs)."""
    out: dict[str, Any] = {}
    for group in groups:
        for name, value in dataclasses.asdict(group).items():
            out[name] = value if isinstance(value, (str, int, float, bool, type(None))) else json.dumps(value)
    return out


def comparable_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """``arguments`` (of :func:`arguments_dict`) as a checkpoint records them for the resume
    check: a path argument that names an existing local folder or file is replaced by its
    absolute, resolved path, so that ``data/pa100k`` given from two directories is not
    mistaken for the same data (nor ``./data/pa100k`` and ``data/pa100k`` for different)."""
    out = dict(arguments)
    for name in PATH_ARGUMENTS:
        value = out.get(name)
        if isinstance(value, str) and value and Path(value).expanduser().exists():
            out[name] = str(Path(value).expanduser().resolve())
    return out


def resume_conflicts(recorded: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The arguments that differ between a checkpoint's run (``recorded``) and this one and
    may not (:data:`RESUME_MAY_CHANGE`): ``{name: (recorded value, current value)}``. Both
    are dicts of :func:`comparable_arguments`."""
    conflicts = {}
    for name in sorted(set(recorded) | set(current)):
        if name in RESUME_MAY_CHANGE:
            continue
        old, new = recorded.get(name, "<not recorded>"), current.get(name, "<not an argument>")
        if old != new:
            conflicts[name] = (old, new)
    return conflicts


def resume_changes(recorded: dict[str, Any], current: dict[str, Any]) -> dict[str, list[Any]]:
    """The allowed arguments (:data:`RESUME_MAY_CHANGE`) that differ, for the record."""
    return {name: [recorded.get(name), current.get(name)] for name in sorted(RESUME_MAY_CHANGE)
            if name in current and name != "resume" and recorded.get(name) != current.get(name)}
