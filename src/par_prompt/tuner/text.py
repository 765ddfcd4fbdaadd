"""Deep text prompts on a CLIP text tower (docs/method.md §3).

Logically the prompted sentence is ``[SOT, T_1..T_n, tokens..., EOT, pad...]``: the n
prompts sit right after the start token, the sentence follows, and the sequence keeps
its length (CLIP's 77 positions), so the last n padding positions fall off. Under the
causal mask every sentence token, the end token included, sees the prompts.

Physically we keep the sentence where the tower expects it and put the n prompt slots
in the last n positions, each token carrying the position embedding of its logical
place, and run attention under the causal mask of the *logical* order. Attention is
indifferent to the physical order of tokens once positions and mask agree, so this is
exactly the computation above. Its advantage: the tower's own pooling (the end token
found from ``input_ids``) still points at the end token, and ``last_hidden_state[:, i]``
is still the state of input token ``i``; the prompts' states are the last n rows.

* :class:`TextPromptEmbeddingLayer` wraps ``CLIPTextEmbeddings``: sentence tokens get
  logical positions (0 for SOT, i + n for token i >= 1); the last n slots get the
  layer-0 prompts plus the position embeddings 1..n.
* :class:`TextPromptEncoderLayer` wraps the text ``CLIPEncoder``: it builds the logical
  causal mask (with the caller's padding, if any), and overwrites the prompt slots with
  layer l's prompts before every later layer l < depth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from transformers.modeling_outputs import BaseModelOutput

from .layer import RegionPromptLayer, attention_mask_for, init_prompts, prompt_depth, text_prompt_bound


@dataclass(frozen=True)
class TextPromptSettings:
    """Shape of one adapter's text prompts."""

    num_prompts: int
    depth: int
    num_sets: int  # 1 (shared by all sentences) or the number of sentences


def prompt_sets(config) -> int:
    """Sets of text prompts: one per sentence, or one shared by all sentences."""
    return config.num_sentences if config.text_prompt_per_sentence else 1


def logical_positions(length: int, num_prompts: int, device=None) -> torch.Tensor:
    """Logical position of each physical slot: SOT at 0, token i >= 1 at i + n, and the
    n prompt slots (the last n physical positions) at 1..n."""
    head = torch.arange(length - num_prompts, device=device)
    head = torch.where(head == 0, head, head + num_prompts)
    tail = torch.arange(1, num_prompts + 1, device=device)
    return torch.cat([head, tail])


def end_token_positions(input_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """Index of the end token in each row, by the same rule as ``CLIPTextModel``."""
    if eos_token_id == 2:  # legacy configs: the end token has the largest id
        return input_ids.argmax(dim=-1)
    return (input_ids == eos_token_id).int().argmax(dim=-1)


def trimmed_length(input_ids: torch.Tensor, num_prompts: int, eos_token_id: int) -> int:
    """The length ``input_ids`` (B, L) can be cut to without changing any pooled output:
    one past the last end token, plus ``num_prompts`` slots for the text prompts (at most
    L). Under CLIP's causal mask nothing after a row's end token reaches its pooled
    output, so the cut rows give the same features as the full ones."""
    length = input_ids.shape[-1]
    if length == 0:
        return 0
    return min(length, int(end_token_positions(input_ids, eos_token_id).max()) + 1 + num_prompts)


def check_room_for_prompts(input_ids: torch.Tensor, num_prompts: int, eos_token_id: int) -> None:
    """Raise if a row's end token would be pushed out of the sequence by the prompts."""
    length = input_ids.shape[-1]
    ends = end_token_positions(input_ids, eos_token_id)
    too_long = (ends > length - 1 - num_prompts).nonzero().flatten().tolist()
    if too_long:
        row = too_long[0]
        raise ValueError(
            f"Text input row {row} is too long for {num_prompts} text prompts: its end token is at position "
            f"{int(ends[row])} of {length}, and the prompts take {num_prompts} positions. A sentence may hold at most "
            f"{length - num_prompts - 2} tokens between its start and end tokens; tokenize with "
            f"padding='max_length', max_length=77, and shorten the sentence if needed "
            f"({len(too_long)} row(s) affected: {too_long[:10]})."
        )


class TextPromptEmbeddingLayer(RegionPromptLayer):
    """Wraps ``CLIPTextEmbeddings``; holds the layer-0 text prompts (S, n, width)."""

    adapter_layer_names = ("region_prompt_text",)

    def __init__(self, base_layer, adapter_name: str, config, eos_token_id: int) -> None:
        super().__init__(base_layer)
        self.eos_token_id = eos_token_id
        self.region_prompt_text = torch.nn.ParameterDict({})
        self.update_layer(adapter_name, config)

    def update_layer(self, adapter_name: str, config) -> None:
        self.prompt_settings[adapter_name] = config.text_prompts
        width = self.base_layer.token_embedding.embedding_dim
        prompts = self._new_parameter((prompt_sets(config), config.text_prompts, width))
        self.region_prompt_text[adapter_name] = init_prompts(prompts, config.prompt_init, text_prompt_bound(width))
        self._keep_active_adapter(adapter_name)

    def active_num_prompts(self) -> int:
        """Text prompts the forward adds: the active adapter's count, 0 without one."""
        adapter = self.active_prompt_adapter()
        return 0 if adapter is None else self.prompt_settings[adapter]

    def forward(
        self,
        input_ids: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        adapter = self.active_prompt_adapter()
        if adapter is None:
            return self.base_layer(input_ids=input_ids, position_ids=position_ids, inputs_embeds=inputs_embeds)
        if input_ids is None or inputs_embeds is not None or position_ids is not None:
            raise ValueError(
                "Text prompts need plain input_ids: they set the position ids themselves and check that each "
                "sentence leaves room for the prompts. Pass input_ids only."
            )
        prompts = self.region_prompt_text[adapter]  # (S, n, width)
        num_sets, num_prompts = prompts.shape[0], prompts.shape[1]
        batch, length = input_ids.shape
        if num_sets > 1 and batch != num_sets:
            raise ValueError(
                f"This adapter has one set of text prompts per sentence ({num_sets} sentences), but the text batch "
                f"holds {batch} rows. Pass all {num_sets} sentences, in their training order, in one batch."
            )
        check_room_for_prompts(input_ids, num_prompts, self.eos_token_id)

        positions = logical_positions(length, num_prompts, device=input_ids.device)
        head = self.base_layer(
            input_ids=input_ids[:, : length - num_prompts], position_ids=positions[None, : length - num_prompts]
        )
        slot_positions = self.base_layer.position_embedding(positions[length - num_prompts :])  # (n, width)
        tail = (prompts.to(head.dtype) + slot_positions.to(head.dtype)).expand(batch, -1, -1)
        return torch.cat([head, tail], dim=1)


class TextPromptEncoderLayer(RegionPromptLayer):
    """Wraps the text ``CLIPEncoder``; holds the prompts of layers 1..depth-1, (depth-1, S, n, width).

    The layer-0 prompts live in :class:`TextPromptEmbeddingLayer`. This layer is in place
    for every text adapter, even with depth 1, because the logical causal mask is needed
    in every layer.
    """

    adapter_layer_names = ("region_prompt_text_deep",)

    def __init__(self, base_layer, adapter_name: str, config) -> None:
        super().__init__(base_layer)
        self.region_prompt_text_deep = torch.nn.ParameterDict({})
        self._causal_cache: dict[tuple, torch.Tensor] = {}
        self.update_layer(adapter_name, config)

    def update_layer(self, adapter_name: str, config) -> None:
        depth = prompt_depth(self.base_layer, config.text_depth, "text")
        settings = TextPromptSettings(config.text_prompts, depth, prompt_sets(config))
        self.prompt_settings[adapter_name] = settings
        if depth > 1:
            width = self.base_layer.config.hidden_size
            prompts = self._new_parameter((depth - 1, settings.num_sets, config.text_prompts, width))
            self.region_prompt_text_deep[adapter_name] = init_prompts(
                prompts, config.prompt_init, text_prompt_bound(width)
            )
        self._keep_active_adapter(adapter_name)

    def _logical_causal(self, length: int, num_prompts: int, device) -> torch.Tensor:
        """Bool (L, L): key k is visible to query q when its logical position is not later.

        Built once per shape, outside inference mode, so that a mask first built under
        ``torch.inference_mode`` still serves a later forward with autograd."""
        key = (length, num_prompts, device)
        allowed = self._causal_cache.get(key)
        if allowed is None:
            with torch.inference_mode(False):
                positions = logical_positions(length, num_prompts, device=device)
                allowed = positions[None, :] <= positions[:, None]
            self._causal_cache[key] = allowed
        return allowed

    @staticmethod
    def _valid_keys(attention_mask: torch.Tensor, num_prompts: int) -> torch.Tensor:
        """Key validity (B, L) from the tower's 4-D causal+padding mask.

        The last physical row of a causal mask sees every non-padded key, so it is the
        padding mask. The prompt slots replaced padding, so they are made valid.
        """
        last_row = attention_mask[:, 0, -1, :]
        valid = last_row.clone() if last_row.dtype == torch.bool else last_row == 0
        valid[:, valid.shape[1] - num_prompts :] = True
        return valid

    def forward(self, inputs_embeds: torch.Tensor, attention_mask=None, **kwargs) -> BaseModelOutput:
        adapter = self.active_prompt_adapter()
        if adapter is None:
            return self.base_layer(inputs_embeds, attention_mask, **kwargs)
        settings: TextPromptSettings = self.prompt_settings[adapter]
        kwargs.pop("is_causal", None)  # the mask below is explicit
        batch, length, _ = inputs_embeds.shape
        n = settings.num_prompts

        allowed = self._logical_causal(length, n, inputs_embeds.device)[None, None]  # (1, 1, L, L)
        if attention_mask is not None:
            allowed = allowed & self._valid_keys(attention_mask, n)[:, None, None, :]
        attn_implementation = self.base_layer.config._attn_implementation  # read per call: it can be switched
        mask = attention_mask_for(allowed, attn_implementation, inputs_embeds.dtype)

        deep = self.region_prompt_text_deep.get(adapter)  # (depth - 1, S, n, w) or None
        hidden = inputs_embeds
        for index, encoder_layer in enumerate(self.base_layer.layers):
            if deep is not None and 0 < index < settings.depth:
                slots = deep[index - 1].to(hidden.dtype).expand(batch, -1, -1)
                hidden = torch.cat([hidden[:, : length - n], slots], dim=1)
            hidden = encoder_layer(hidden, mask, **kwargs)
        return BaseModelOutput(last_hidden_state=hidden)
