"""Named outputs of PromptPARModel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from transformers.utils import ModelOutput


@dataclass
class PromptPAROutput(ModelOutput):
    """
    Args:
        loss: weighted BCE of ``logits`` plus ``gl_alpha`` times that of ``gl_logits``
            (docs/method.md §6), when labels are given.
        logits: (B, N) attribute logits from the heads; ``sigmoid`` gives probabilities.
        gl_logits: (B, N) global-local similarity scores (docs/method.md §5), a second set of
            logits used in the loss.
        visual_tokens: (B, L, d) projected visual sequence, when asked for.
        text_features: (N, d) projected sentence features, when asked for.
    """

    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    gl_logits: Optional[torch.Tensor] = None
    visual_tokens: Optional[torch.Tensor] = None
    text_features: Optional[torch.Tensor] = None
