"""What region prompt tuning trains: the shared plumbing of its tuner layers.

Each tuner layer wraps one submodule of a CLIP tower (its embeddings or its encoder)
and keeps the trainable tensors of every adapter in ``ParameterDict``s keyed by the
adapter name, like peft's own tuners. The tower-specific layers live in ``vision.py``
and ``text.py``; ``model.py`` decides where they are put.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

MERGE_ERROR = (
    "Region prompts cannot be merged into the base weights: they add tokens to the sequence rather than change a "
    "weight. Keep the PeftModel for inference, or call unload() to get the plain base model back."
)


def init_prompts(tensor: torch.Tensor, method: str, bound: float) -> torch.Tensor:
    """Fill ``tensor`` in place: ``uniform(-bound, bound)`` or zeros. Returns it."""
    with torch.no_grad():
        if method == "zeros":
            tensor.zero_()
        else:
            tensor.uniform_(-bound, bound)
    return tensor


def visual_prompt_bound(patch_size: int, width: int) -> float:
    """docs/method.md §2: v = sqrt(6 / (3 * p * p + width)) for patch size p."""
    return math.sqrt(6.0 / (3 * patch_size * patch_size + width))


def text_prompt_bound(width: int) -> float:
    """Text prompts have no patch size; we use the Xavier bound of a width x width map,
    v = sqrt(3 / width), which keeps them at the scale of CLIP's token embeddings."""
    return math.sqrt(3.0 / width)


def prompt_depth(encoder: nn.Module, depth: Optional[int], tower: str) -> int:
    """Layers of ``encoder`` that get their own prompts: ``depth``, or all of them for None."""
    num_layers = len(encoder.layers)
    if depth is None:
        return num_layers
    if depth > num_layers:
        raise ValueError(
            f"{tower}_depth={depth} exceeds the {num_layers} layers of the {tower} tower; use at most "
            f"{num_layers}, or None for every layer."
        )
    return depth


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bool "may attend" mask -> additive float mask (0 where allowed, ``finfo(dtype).min``
    elsewhere). ``finfo.min`` instead of ``-inf`` keeps fully masked rows finite."""
    zero = torch.zeros((), dtype=dtype, device=allowed.device)
    return torch.where(allowed, zero, torch.finfo(dtype).min)


def attention_mask_for(allowed: torch.Tensor, attn_implementation: str, dtype: torch.dtype) -> torch.Tensor:
    """An additive mask in the hidden states' dtype, for eager and sdpa alike (sdpa would
    convert a bool mask in every layer; measured 6 % slower on an H100)."""
    if attn_implementation in ("sdpa", "eager"):
        return additive_mask(allowed, dtype)
    raise ValueError(
        f"Region prompts need an explicit attention mask, which attn_implementation={attn_implementation!r} does not "
        "take. Load the CLIP model with attn_implementation='sdpa' (the default) or 'eager'."
    )


class RegionPromptLayer(nn.Module, BaseTunerLayer):
    """Base of the region-prompt tuner layers.

    Subclasses set ``adapter_layer_names`` (their ParameterDicts), implement
    ``update_layer(adapter_name, config)`` and a ``forward`` that calls the wrapped
    module unchanged when :meth:`active_prompt_adapter` is None.

    ``prompt_settings`` maps an adapter name to the plain settings (ints and bools) that
    shape its tensors; it also records adapters that add no tensor to this layer.
    """

    other_param_names = ("prompt_settings",)

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.prompt_settings: dict[str, Any] = {}
        self._active_adapter: list[str] = []
        self.merged_adapters: list[str] = []
        self._disable_adapters = False

    def _base_device_dtype(self) -> tuple[torch.device, torch.dtype]:
        """Device and floating dtype of the wrapped module, where new prompts are created."""
        for p in self.base_layer.parameters():
            if p.is_floating_point():
                return p.device, p.dtype
        return torch.device("cpu"), torch.get_default_dtype()

    def _new_parameter(self, shape: tuple[int, ...]) -> nn.Parameter:
        device, dtype = self._base_device_dtype()
        return nn.Parameter(torch.empty(shape, device=device, dtype=dtype))

    def _keep_active_adapter(self, adapter_name: str) -> None:
        """Activate ``adapter_name`` if no adapter is active yet, else keep the active ones
        (``set_adapter`` also decides which adapters' tensors train)."""
        self.set_adapter(adapter_name if not self.active_adapters else self.active_adapters)

    def active_prompt_adapter(self) -> Optional[str]:
        """The adapter whose prompts the forward uses, or None to run the wrapped module as is."""
        if self.disable_adapters:
            return None
        active = [name for name in self.active_adapters if name in self.prompt_settings]
        if len(active) > 1:
            raise ValueError(
                f"Region prompts run one adapter at a time, but {active} are active. Call set_adapter(name) with "
                "a single adapter name."
            )
        return active[0] if active else None

    def merge(self, safe_merge: bool = False, adapter_names: Optional[list[str]] = None) -> None:
        raise ValueError(MERGE_ERROR)

    def unmerge(self) -> None:
        raise ValueError(MERGE_ERROR)
