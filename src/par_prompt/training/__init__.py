"""Training PromptPAR with Accelerate. The command line is ``par-prompt train``
(:mod:`par_prompt.training.cli`); ``examples/train_par.py`` runs the same code under
``accelerate launch``.

Public names::

    ModelArguments, DataArguments, TrainingArguments      the dataclasses of the CLI
    build_arguments(overrides, recipe=, config=)          recipe < settings file < overrides
    recipe_names(), load_recipe(name)                     the packaged per-data-set recipes
    resolve_arguments(m, d, t, defaults=None)             fill the paper's defaults (or others), check everything
    train(m, d, t, defaults=, backbones=) -> TrainingResult   one run (the demo: par_prompt.demo.train_demo)
    PromptPARTrainer, TrainingResult, BackboneSource      the run, piece by piece; backbones of a run without --clip
    TrainingError, NonFiniteLossError, TrainingDataError, CheckpointError
    build_optimizer, WarmupCosineSchedule, warmup_cosine_factor
    SyncBatchNorm1d, convert_sync_batchnorm, revert_sync_batchnorm
    EpochBatchSampler, ImageSplit, CheckpointManager, JSONLinesTracker
"""

from .arguments import DataArguments, ModelArguments, TrainingArguments, resolve_arguments
from .checkpoint import CheckpointError, CheckpointManager, load_trainable_state, trainable_state_dict
from .data import EpochBatchSampler, ImageSplit, TrainingDataError
from .distributed import SyncBatchNorm1d, convert_sync_batchnorm, revert_sync_batchnorm
from .loop import BackboneSource, NonFiniteLossError, PromptPARTrainer, TrainingError, TrainingResult, train
from .optim import WarmupCosineSchedule, build_optimizer, warmup_cosine_factor
from .recipe import build_arguments, load_recipe, recipe_names
from .trackers import JSONLinesTracker

__all__ = [
    "BackboneSource",
    "CheckpointError",
    "CheckpointManager",
    "DataArguments",
    "EpochBatchSampler",
    "ImageSplit",
    "JSONLinesTracker",
    "ModelArguments",
    "NonFiniteLossError",
    "PromptPARTrainer",
    "SyncBatchNorm1d",
    "TrainingArguments",
    "TrainingDataError",
    "TrainingError",
    "TrainingResult",
    "WarmupCosineSchedule",
    "build_arguments",
    "build_optimizer",
    "convert_sync_batchnorm",
    "load_recipe",
    "load_trainable_state",
    "recipe_names",
    "resolve_arguments",
    "revert_sync_batchnorm",
    "train",
    "trainable_state_dict",
    "warmup_cosine_factor",
]
