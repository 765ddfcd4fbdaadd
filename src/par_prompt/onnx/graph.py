"""The function that is exported: pixels to attribute logits and probabilities.

At inference time a trained PromptPAR model is a fixed function of the image: the text
features depend only on the trained text prompts and the sentences. The graph therefore
holds them as a constant tensor and runs the model's own ``forward`` on the pixels
(prompted vision tower, fusion layer, heads; the global-local branch is a training-only
loss term and is left out). The region attention mask is built from the model's
settings alone, so it becomes a constant of the graph too.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

INPUT_NAME = "pixel_values"
OUTPUT_NAMES = ("logits", "probabilities")


@contextmanager
def frozen_text_features(model: nn.Module, features: torch.Tensor) -> Iterator[list[bool]]:
    """Within the block ``model.text_features()`` returns ``features`` (N, d) instead of
    running the text tower. Yields a one-element list that becomes ``[True]`` once the
    model has asked for them, so that a caller can check they were used."""
    used = [False]

    def constant_text_features() -> torch.Tensor:
        used[0] = True
        return features

    model.text_features = constant_text_features  # an instance attribute shadows the method
    try:
        yield used
    finally:
        del model.text_features


class PromptPARInferenceGraph(nn.Module):
    """``pixel_values`` (B, 3, S, S) float32 -> ``logits``, ``probabilities`` (B, N) float32.

    ``model`` is a PromptPARModel in eval mode whose parameters have the precision of
    the graph (float32, or float16 for a half-precision export); ``text_features`` (N, d)
    are its sentence features, computed once. The input and outputs stay float32
    whatever the precision inside, so that callers need not know it.
    """

    def __init__(self, model: nn.Module, text_features: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("text_features", text_features.detach().clone(), persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with frozen_text_features(self.model, self.text_features) as used:
            output = self.model(pixel_values=pixel_values.to(self.text_features.dtype), compute_gl_logits=False,
                                training=False)
        if not used[0]:
            raise RuntimeError(
                "PromptPARModel.forward no longer reads model.text_features(), so the ONNX graph would run the text "
                "tower on every image; update par_prompt.onnx.graph to the new forward."
            )
        logits = output.logits.float()
        return logits, torch.sigmoid(logits)
