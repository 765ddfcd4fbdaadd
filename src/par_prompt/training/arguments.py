"""Command-line arguments of PromptPAR training, as dataclasses for ``HfArgumentParser``.

Three groups: :class:`ModelArguments` (backbones and method settings),
:class:`DataArguments` (where the data comes from) and :class:`TrainingArguments` (the
recipe, Accelerate options, output). Every option is documented in ``--help``.

**Real runs versus the demo.** A run without ``--clip`` is the embedded demo: the demo
backbones of :mod:`par_prompt.demo`, the synthetic data set, and demo defaults chosen so
that it visibly learns in a few minutes on a laptop CPU. A run with ``--clip`` uses the
paper's recipe (METHOD.md §8). Options whose default differs between the two are
``None`` here and are filled in by :func:`resolve_arguments`; their help text gives both
values. Every default can be overridden in either mode.

``batch_size`` is the **global** batch of one forward/backward step, summed over all
processes (the paper's 16), so that the recipe is the same on one CPU or eight GPUs; it
must be divisible by the number of processes. The batch of one optimizer update is
``batch_size × gradient_accumulation_steps``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

__all__ = [
    "DEMO_DEFAULTS",
    "DataArguments",
    "ModelArguments",
    "PAPER_DEFAULTS",
    "TrainingArguments",
    "resolve_arguments",
]

#: METHOD.md §8 and the paper's model settings (ViT-L/14).
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

#: The demo: the tiny backbones of :mod:`par_prompt.demo`, synthetic data, a higher
#: learning rate and fewer, shorter epochs so that it learns in a few minutes. Its fusion
#: is the paper's Table VI variant (a trainable MLP over the sequence): a frozen fusion
#: layer must come from a ViT that has learned to attend (the paper takes ImageNet
#: ViT-B/16's last layer), and the demo's tiny ViT is random. Measured on the synthetic
#: data (par_prompt.demo, benchmarks/RESULTS.md): validation mA 0.877 with
#: --fusion-layers 0; 0.706 with 1 (0.788 on a pre-trained tiny CLIP).
DEMO_DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"prompts_per_group": 4, "fusion_layers": 0},
    "data": {"dataset": "synthetic", "num_workers": 0},
    "training": {
        "output_dir": "outputs/demo",
        "epochs": 14,
        "batch_size": 32,
        "lr_head": 0.1,
        "lr_prompt": 0.05,
        "warmup_epochs": 1,
    },
}


def _help(text: str, paper: Any = None, demo: Any = None) -> dict[str, str]:
    if paper is not None or demo is not None:
        text += f" Default: {paper} (paper recipe, with --clip); {demo} (demo, without --clip)."
    return {"help": text}


@dataclass
class ModelArguments:
    """Backbones and PromptPAR settings (METHOD.md §2-§5)."""

    _argument_group_name = "model"

    clip: Optional[str] = field(default=None, metadata=_help(
        "CLIP backbone: a Hub id (e.g. openai/clip-vit-large-patch14) or a local directory. Without it the "
        "embedded demo runs (tiny demo backbones, synthetic data)."))
    fusion: Optional[str] = field(default=None, metadata=_help(
        "ViT whose last layer(s) and final norm initialise the frozen fusion transformer.",
        "google/vit-base-patch16-224", "the demo ViT"))
    clip_revision: Optional[str] = field(default=None, metadata={"help": "Revision (branch, tag, commit) of --clip."})
    fusion_revision: Optional[str] = field(default=None, metadata={"help": "Revision of --fusion."})
    cache_dir: Optional[str] = field(default=None, metadata={"help": "Hugging Face cache directory for the backbones."})
    local_files_only: bool = field(default=False, metadata={"help": "Never download; use the local cache only."})
    attn_implementation: Optional[str] = field(default=None, metadata={
        "help": "Attention implementation of the backbones (eager, sdpa, ...). Default: transformers' choice."})
    num_regions: int = field(default=4, metadata={"help": "K, the number of horizontal body regions."})
    overlap_rows: int = field(default=2, metadata={"help": "o, patch rows by which neighbouring regions overlap."})
    prompts_per_group: Optional[int] = field(default=None, metadata=_help(
        "m, visual prompts per group (global and each region).", 10, 4))
    vision_depth: Optional[int] = field(default=None, metadata={
        "help": "Number of vision layers with their own prompts. Default: all."})
    text_prompts: int = field(default=3, metadata={"help": "Text prompts per layer."})
    text_depth: Optional[int] = field(default=None, metadata={
        "help": "Number of text layers with their own prompts. Default: all."})
    prompt_init: Literal["uniform", "zeros"] = field(
        default="uniform", metadata={"help": "Prompt initialisation: uniform (METHOD.md §2) or zeros (Table VIII)."}
    )
    fusion_layers: Optional[int] = field(default=None, metadata=_help(
        "Frozen fusion transformer layers taken from --fusion (0: a trainable MLP over the sequence instead, "
        "paper Table VI).", 1, 0))
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
        "the data in the model card. Without --data-dir it may also be a Hub dataset id or a directory. "
        "Default: synthetic in the demo.")})
    data_dir: Optional[str] = field(default=None, metadata={"help": (
        "The data: a directory written by `par-prompt convert` (or par_prompt.data.save), a folder of data "
        "files, or a Hub dataset id.")})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    validation_split: str = field(default="validation", metadata={
        "help": "Split that picks the best epoch (evaluated after every epoch)."})
    test_split: Optional[str] = field(default="test", metadata={
        "help": "Split evaluated once at the end with the best adapter ('none' to skip)."})
    synthetic_train: int = field(default=2000, metadata={"help": "Synthetic data: training examples."})
    synthetic_validation: int = field(default=400, metadata={"help": "Synthetic data: validation examples."})
    synthetic_test: int = field(default=400, metadata={"help": "Synthetic data: test examples."})
    synthetic_seed: int = field(default=0, metadata={"help": "Synthetic data: seed of the generator."})
    augment_pad: Optional[int] = field(default=None, metadata={"help": (
        "Training augmentation: pixels of black padding before the random crop back to size (then a random "
        "horizontal flip). Default: 10 px at 224 px input, scaled to the model's input size.")})
    num_workers: Optional[int] = field(default=None, metadata=_help(
        "DataLoader worker processes per training process.", 4, 0))

    def __post_init__(self) -> None:
        if isinstance(self.test_split, str) and self.test_split.lower() in ("", "none"):
            self.test_split = None


@dataclass
class TrainingArguments:
    """The training recipe (METHOD.md §8), Accelerate options and the output."""

    _argument_group_name = "training"

    output_dir: Optional[str] = field(default=None, metadata=_help(
        "Output directory: checkpoints/, best/ (the exported adapter), metrics.json, logs/.",
        "outputs/promptpar", "outputs/demo"))
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "Start afresh even if the output directory holds checkpoints of an earlier run (they are removed)."})
    resume: Optional[str] = field(default=None, metadata={"help": (
        "Continue an interrupted run: 'latest' (the newest complete checkpoint in OUTPUT/checkpoints) or the "
        "path of a checkpoint directory (OUTPUT/checkpoints/epoch-K).")})
    epochs: Optional[int] = field(default=None, metadata=_help("Training epochs.", 40, 14))
    batch_size: Optional[int] = field(default=None, metadata=_help(
        "Global batch of one forward/backward step, over all processes (must be divisible by their number).",
        16, 32))
    eval_batch_size: Optional[int] = field(default=None, metadata={
        "help": "Global evaluation batch. Default: 2 × --batch-size."})
    gradient_accumulation_steps: int = field(default=1, metadata={
        "help": "Steps whose gradients are summed before each update (update batch = batch × steps)."})
    lr_head: Optional[float] = field(default=None, metadata=_help(
        "Learning rate of the head side: projections, fusion norm, heads, BatchNorms, temperature.", 8e-3, 0.1))
    lr_prompt: Optional[float] = field(default=None, metadata=_help(
        "Learning rate of the visual and text prompts and region class tokens.", 4e-3, 0.05))
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum."})
    weight_decay: float = field(default=1e-4, metadata={"help": "SGD weight decay."})
    warmup_epochs: Optional[float] = field(default=None, metadata=_help(
        "Epochs of linear warm-up (from --warmup-start-factor × lr), then a cosine decay to 0; the schedule is "
        "stepped after every optimizer update.", 5, 1))
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
    report_to: Literal["auto", "tensorboard", "jsonl", "all", "none"] = field(default="auto", metadata={"help": (
        "Tracker: tensorboard, jsonl (OUTPUT/logs/metrics.jsonl), all, none, or auto (tensorboard when installed, "
        "else jsonl).")})
    demo_pretrain_steps: int = field(default=0, metadata={"help": (
        "Demo only: steps of contrastive (SigLIP-style) pre-training of the tiny CLIP on synthetic image-sentence "
        "pairs before prompt tuning, cached (0: none; the demo reaches its figure without, see par_prompt.demo).")})
    demo_cache_dir: Optional[str] = field(default=None, metadata={"help": (
        "Where the demo keeps its backbones and synthetic data. Default: $PAR_PROMPT_CACHE or "
        "~/.cache/par_prompt.")})
    push_to_hub: Optional[str] = field(default=None, metadata={"help": (
        "After training, upload the best adapter (with its model card) to this Hub model repo, e.g. "
        "your-name/promptpar-pa100k. The token comes from `hf auth login` or $HF_TOKEN.")})
    hub_private: bool = field(default=False, metadata={"help": "Create the Hub repo as private."})

    def __post_init__(self) -> None:
        self.mixed_precision = str(self.mixed_precision).lower()
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"--mixed-precision must be no, bf16 or fp16, got {self.mixed_precision!r}.")
        if self.metric_for_best not in ("mA", "accuracy", "precision", "recall", "f1"):
            raise ValueError(
                f"--metric-for-best must be one of mA, accuracy, precision, recall, f1; got {self.metric_for_best!r}."
            )
        if self.report_to not in ("auto", "tensorboard", "jsonl", "all", "none"):
            raise ValueError(f"--report-to must be auto, tensorboard, jsonl, all or none; got {self.report_to!r}.")
        if self.gradient_accumulation_steps < 1:
            raise ValueError("--gradient-accumulation-steps must be at least 1.")
        if self.save_total_limit < 1:
            raise ValueError("--save-total-limit must be at least 1 (the latest checkpoint is needed to resume).")
        if self.max_grad_norm < 0:
            raise ValueError("--max-grad-norm must be non-negative (0 disables clipping).")


def is_demo(model_args: ModelArguments) -> bool:
    """The demo runs when no CLIP backbone is named."""
    return model_args.clip is None


def resolve_arguments(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments):
    """Fill the ``None`` defaults with the paper's or the demo's values (see the module
    docstring) and check the combination. Returns new dataclass instances."""
    defaults = DEMO_DEFAULTS if is_demo(model_args) else PAPER_DEFAULTS
    resolved = []
    for args, key in ((model_args, "model"), (data_args, "data"), (training_args, "training")):
        values = {name: value for name, value in defaults[key].items() if getattr(args, name) is None}
        resolved.append(dataclasses.replace(args, **values))
    model_args, data_args, training_args = resolved
    for name in ("epochs", "batch_size"):
        if getattr(training_args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1.")
    if training_args.warmup_epochs < 0 or training_args.warmup_epochs > training_args.epochs:
        raise ValueError(f"--warmup-epochs must lie in [0, --epochs={training_args.epochs}].")
    if training_args.eval_batch_size is None:
        training_args = dataclasses.replace(training_args, eval_batch_size=2 * training_args.batch_size)
    if not is_demo(model_args) and data_args.dataset is None and data_args.data_dir is None:
        raise ValueError(
            "Name the data: --dataset NAME --data-dir DIR (a directory from `par-prompt convert`), or --dataset "
            "with a Hub dataset id. Without --clip the demo runs on synthetic data."
        )
    return model_args, data_args, training_args


def arguments_dict(*groups: Any) -> dict[str, Any]:
    """All arguments as one flat JSON-serialisable dict (for the model card and the logs)."""
    out: dict[str, Any] = {}
    for group in groups:
        for name, value in dataclasses.asdict(group).items():
            out[name] = value if isinstance(value, (str, int, float, bool, type(None))) else json.dumps(value)
    return out
