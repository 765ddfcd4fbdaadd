"""Region-aware deep prompts on a CLIP vision tower (docs/method.md §2).

Two tuner layers share the work:

* :class:`RegionTokenLayer` wraps the tower's ``embeddings``. It appends the K region
  class tokens right after CLIP's class token, so that they pass through CLIP's
  pre-layernorm like the class token does (they get no position embedding).
* :class:`VisionPromptLayer` wraps the tower's ``encoder``. It interleaves the prompt
  groups with the class tokens, overwrites the prompt slots before each of the first
  ``depth`` layers, and runs every layer under the region mask. In the prompted layers
  whose prompt outputs the next layer overwrites, the prompts only give keys and values
  (:mod:`.keys_values`).

The tower's own forward stays in charge: it calls the embeddings, its pre-layernorm,
the encoder and its post-layernorm, and pools token 0 (CLS) as usual. The encoder
output has the full prompted length (311 tokens for ViT-L/14 at the defaults).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from transformers.modeling_outputs import BaseModelOutput

from .keys_values import can_skip_prompt_outputs, keys_values_layer, recording_outputs
from .layer import RegionPromptLayer, attention_mask_for, init_prompts, prompt_depth, visual_prompt_bound
from .layout import region_layout


@dataclass(frozen=True)
class VisionPromptSettings:
    """Shape of one adapter's visual prompts."""

    num_regions: int
    overlap_rows: int
    prompts_per_group: int
    depth: int

    @property
    def num_groups(self) -> int:
        return self.num_regions + 1


class RegionTokenLayer(RegionPromptLayer):
    """Wraps ``CLIPVisionEmbeddings``: [CLS, patches] -> [CLS, CLS_1..CLS_K, patches]."""

    adapter_layer_names = ("region_prompt_class_tokens",)

    def __init__(self, base_layer, adapter_name: str, config) -> None:
        super().__init__(base_layer)
        self.region_prompt_class_tokens = torch.nn.ParameterDict({})
        self.update_layer(adapter_name, config)

    def update_layer(self, adapter_name: str, config) -> None:
        width = self.base_layer.embed_dim
        self.prompt_settings[adapter_name] = config.num_regions
        if config.num_regions > 0:
            tokens = self._new_parameter((config.num_regions, width))
            # Like CLIP's class embedding: N(0, width^-0.5).
            torch.nn.init.normal_(tokens, std=width**-0.5)
            self.region_prompt_class_tokens[adapter_name] = tokens
        self._keep_active_adapter(adapter_name)

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        embeddings = self.base_layer(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
        adapter = self.active_prompt_adapter()
        if adapter is None or adapter not in self.region_prompt_class_tokens:
            return embeddings
        # embeddings: (B, 1 + G*G, width); tokens: (K, width)
        tokens = self.region_prompt_class_tokens[adapter].to(embeddings.dtype)
        tokens = tokens.unsqueeze(0).expand(embeddings.shape[0], -1, -1)
        return torch.cat([embeddings[:, :1], tokens, embeddings[:, 1:]], dim=1)


class VisionPromptLayer(RegionPromptLayer):
    """Wraps the vision ``CLIPEncoder`` and runs its layers with deep region prompts.

    Prompts of one adapter: a tensor (depth, K + 1, m, width); group 0 holds the global
    prompts, group j the prompts of region j.

    In every prompted layer but the last, the prompt slots' outputs are overwritten by
    the next layer's prompts, so there the prompts only serve as keys and values
    (:mod:`.keys_values`): the layer runs on the K + 1 class tokens and the patches only.
    The full sequence is assembled for the last prompted layer, whose prompt outputs flow
    on. A layer takes the full path as well when the caller records per-layer outputs
    (``output_hidden_states``, ``output_attentions``) or watches the layer with a hook
    (:func:`.keys_values.can_skip_prompt_outputs`); both paths give the same result.
    """

    adapter_layer_names = ("region_prompt_vision",)

    def __init__(self, base_layer, adapter_name: str, config, patch_size: int) -> None:
        super().__init__(base_layer)
        self.patch_size = patch_size
        self.region_prompt_vision = torch.nn.ParameterDict({})
        # (grid, num_regions, overlap, m, attn_implementation, dtype, device) -> masks; built once per shape.
        self._mask_cache: dict[tuple, torch.Tensor] = {}
        self.update_layer(adapter_name, config)

    def update_layer(self, adapter_name: str, config) -> None:
        depth = prompt_depth(self.base_layer, config.vision_depth, "vision")
        settings = VisionPromptSettings(config.num_regions, config.overlap_rows, config.prompts_per_group, depth)
        self.prompt_settings[adapter_name] = settings
        if settings.prompts_per_group > 0:
            width = self.base_layer.config.hidden_size
            prompts = self._new_parameter((depth, settings.num_groups, settings.prompts_per_group, width))
            init_prompts(prompts, config.prompt_init, visual_prompt_bound(self.patch_size, width))
            self.region_prompt_vision[adapter_name] = prompts
        self._keep_active_adapter(adapter_name)

    def class_token_slice(self) -> slice:
        """Where CLS, CLS_1..CLS_K sit in this encoder's output for the active adapter, as a
        strided slice (each leads its group of m + 1 tokens); just CLS without an adapter."""
        adapter = self.active_prompt_adapter()
        if adapter is None:
            return slice(0, 1, 1)
        settings: VisionPromptSettings = self.prompt_settings[adapter]
        group = settings.prompts_per_group + 1
        return slice(0, settings.num_groups * group, group)

    def _region_masks(self, settings: VisionPromptSettings, grid_size: int, dtype, device):
        """The layer-shared additive attention masks ``(full, keys_values)``, or ``(None, None)``
        without regions.

        ``full``: (1, 1, L, L) over the whole sequence. ``keys_values``: (1, 1, T, T + P) for
        the T = K + 1 + G*G ordinary tokens as queries, over their own keys followed by the
        P = (K + 1) * m prompts' keys (the layout of :mod:`.keys_values`).
        Built once per shape, outside inference mode, so that masks first built under
        ``torch.inference_mode`` still serve a later forward with autograd.
        """
        if settings.num_regions == 0:
            return None, None
        attn_implementation = self.base_layer.config._attn_implementation  # read per call: it can be switched
        key = (grid_size, settings.num_regions, settings.overlap_rows, settings.prompts_per_group,
               attn_implementation, dtype, device)
        masks = self._mask_cache.get(key)
        if masks is None:
            with torch.inference_mode(False):
                layout = region_layout(grid_size, settings.num_regions, settings.overlap_rows,
                                       settings.prompts_per_group)
                ordinary = layout.class_token_indices() + list(range(layout.patch_offset, layout.length))
                prompts = [i for group in range(layout.num_groups) for i in layout.prompt_indices(group)]
                allowed = layout.mask.to(device)
                masks = tuple(attention_mask_for(a, attn_implementation, dtype)[None, None]
                              for a in (allowed, allowed[ordinary][:, ordinary + prompts]))
            self._mask_cache[key] = masks
        return masks

    @staticmethod
    def _assemble(class_tokens: torch.Tensor, prompts: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """[CLS_0, P_0, CLS_1, P_1, ..., CLS_K, P_K, patches], a new tensor.

        class_tokens (B, K+1, w), prompts (K+1, m, w), patches (B, G*G, w) -> (B, L, w).
        """
        batch = class_tokens.shape[0]
        prompts = prompts.to(class_tokens.dtype).unsqueeze(0).expand(batch, -1, -1, -1)
        groups = torch.cat([class_tokens.unsqueeze(2), prompts], dim=2).flatten(1, 2)
        return torch.cat([groups, patches], dim=1)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask=None, **kwargs) -> BaseModelOutput:
        adapter = self.active_prompt_adapter()
        if adapter is None:
            return self.base_layer(inputs_embeds, attention_mask, **kwargs)
        settings: VisionPromptSettings = self.prompt_settings[adapter]
        if attention_mask is not None:
            raise ValueError("The vision tower takes no attention mask; region prompts bring their own.")

        # inputs_embeds: (B, 1 + K + G*G, w), CLS and region class tokens first (see RegionTokenLayer).
        num_class = settings.num_groups
        num_patches = inputs_embeds.shape[1] - num_class
        grid = math.isqrt(num_patches)
        if grid * grid != num_patches:
            raise ValueError(
                f"Region prompts need a square patch grid, but the vision tower produced {num_patches} patches. "
                "Use square images (the PromptPAR image processor pads to a square)."
            )
        prompts = self.region_prompt_vision[adapter]  # (depth, K + 1, m, w)
        group = settings.prompts_per_group + 1
        offset = num_class * group  # the first patch of the full sequence
        dtype, device = inputs_embeds.dtype, inputs_embeds.device
        skip_allowed = not recording_outputs(kwargs)
        full_mask, keys_values_mask = self._region_masks(settings, grid, dtype, device)

        # ``ordinary``: (B, K + 1 + G*G, w), the class tokens and patches, while the layers run
        # without the prompt slots; ``hidden``: (B, L, w), the full sequence, once a layer ran on it.
        ordinary, hidden = inputs_embeds, None
        for index, encoder_layer in enumerate(self.base_layer.layers):
            if index < settings.depth:
                if hidden is not None:  # back from a full layer: its prompt outputs are overwritten
                    ordinary, hidden = torch.cat([hidden[:, :offset:group], hidden[:, offset:]], dim=1), None
                if index < settings.depth - 1 and skip_allowed and can_skip_prompt_outputs(encoder_layer):
                    ordinary = keys_values_layer(encoder_layer, ordinary, prompts[index].flatten(0, 1),
                                                 keys_values_mask)
                    continue
                hidden = self._assemble(ordinary[:, :num_class], prompts[index], ordinary[:, num_class:])
            hidden = encoder_layer(hidden, full_mask, **kwargs)
        return BaseModelOutput(last_hidden_state=hidden)
