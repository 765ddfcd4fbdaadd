"""The paper's optimiser and learning-rate schedule (docs/method.md §8).

- :func:`build_optimizer`: SGD (momentum 0.9, weight decay 1e-4) with two parameter
  groups, the prompts (``model.prompt_parameters()``, lr 4e-3) and the head side
  (``model.head_parameters()``, lr 8e-3).
- :class:`WarmupCosineSchedule`: a linear warm-up from ``start_factor × lr`` (0.01) over
  the warm-up steps, then a half cosine from ``lr`` down to 0 at the last step.

The schedule is stepped once per **optimizer step** (after every update, not per
epoch); the warm-up length is given in epochs and converted with the number of updates
per epoch. With ``W`` warm-up steps and ``T`` steps in all, the factor applied to a
group's base lr for update ``s`` (0-based) is::

    s <  W:  start + (1 - start) * s / W
    s >= W:  (1 + cos(pi * (s - W) / (T - W))) / 2

so the first update uses ``start × lr``, update ``W`` uses ``lr``, and the factor reaches
0 after the last update.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["WarmupCosineSchedule", "build_optimizer", "warmup_cosine_factor"]


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, start_factor: float = 0.01) -> float:
    """The multiplier of the base learning rate for optimizer step ``step`` (0-based)."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must lie in [0, total_steps={total_steps}], got {warmup_steps}")
    step = max(0, int(step))
    if step < warmup_steps:
        return start_factor + (1.0 - start_factor) * step / warmup_steps
    decay_steps = total_steps - warmup_steps
    if decay_steps == 0:
        return 1.0 if step < total_steps else 0.0
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class _Factor:
    """Picklable callable for ``LambdaLR`` (its state is saved with the scheduler)."""

    def __init__(self, warmup_steps: int, total_steps: int, start_factor: float) -> None:
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.start_factor = start_factor

    def __call__(self, step: int) -> float:
        return warmup_cosine_factor(step, self.warmup_steps, self.total_steps, self.start_factor)


class WarmupCosineSchedule(LambdaLR):
    """Linear warm-up from ``start_factor × lr`` then cosine to 0; step it after every
    optimizer step. ``state_dict`` / ``load_state_dict`` round-trip (for checkpoints)."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                 start_factor: float = 0.01) -> None:
        if not 0.0 < start_factor <= 1.0:
            raise ValueError(f"start_factor must lie in (0, 1], got {start_factor}")
        warmup_cosine_factor(0, warmup_steps, total_steps, start_factor)  # validates the lengths
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        super().__init__(optimizer, _Factor(warmup_steps, total_steps, start_factor))


def build_optimizer(
    model,
    lr_head: float = 8e-3,
    lr_prompt: float = 4e-3,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
) -> torch.optim.SGD:
    """SGD over the two groups of docs/method.md §8: ``"prompts"`` and ``"head"``.

    ``model`` is a :class:`~par_prompt.PromptPARModel` (not a DDP wrapper); every
    trainable parameter must fall in exactly one group, which is checked.
    """
    prompts = list(model.prompt_parameters())
    head = list(model.head_parameters())
    _check_groups(model, prompts, head)
    for name, value in (("lr_head", lr_head), ("lr_prompt", lr_prompt)):
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")
    groups = [
        {"params": prompts, "lr": lr_prompt, "name": "prompts"},
        {"params": head, "lr": lr_head, "name": "head"},
    ]
    return torch.optim.SGD(groups, lr=lr_head, momentum=momentum, weight_decay=weight_decay)


def _check_groups(model, prompts: Sequence[torch.nn.Parameter], head: Sequence[torch.nn.Parameter]) -> None:
    prompt_ids, head_ids = {id(p) for p in prompts}, {id(p) for p in head}
    if prompt_ids & head_ids:
        raise ValueError("A parameter is both a prompt and a head parameter; the two groups must be disjoint.")
    trainable = {id(p): name for name, p in model.named_parameters() if p.requires_grad}
    missing = [name for pid, name in trainable.items() if pid not in prompt_ids | head_ids]
    if missing:
        raise ValueError(
            f"Trainable parameters outside the prompt and head groups: {missing[:5]}. Freeze them "
            "(model.freeze_backbones()) or add them to a group."
        )
    frozen = [p for p in (*prompts, *head) if not p.requires_grad]
    if frozen:
        raise ValueError(f"{len(frozen)} parameters of the optimizer groups are frozen; call model.freeze_backbones().")
