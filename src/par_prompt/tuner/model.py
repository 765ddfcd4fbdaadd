"""Where region prompt tuning is put: the PEFT tuner for CLIP models.

For every CLIP tower found in the model (a ``CLIPVisionModel`` or ``CLIPTextModel``,
standalone or inside ``CLIPModel`` and the ``...WithProjection`` classes) the tuner
wraps two children of the tower:

============  ===========================  ==================================
tower         ``embeddings``               ``encoder``
============  ===========================  ==================================
vision        :class:`RegionTokenLayer`    :class:`VisionPromptLayer`
text          :class:`TextPromptEmbeddingLayer`  :class:`TextPromptEncoderLayer`
============  ===========================  ==================================

The towers' own forward passes run unchanged around them, so pooling, layer norms,
projections, output recording and gradient checkpointing behave as in transformers.
"""

from __future__ import annotations

from typing import Optional

from peft.tuners.tuners_utils import BaseTuner
from torch import nn
from transformers import CLIPTextModel, CLIPVisionModel

from .config import TEXT_FIELDS, VISION_FIELDS, RegionPromptConfig
from .layer import MERGE_ERROR, RegionPromptLayer
from .layout import region_bands
from .text import TextPromptEmbeddingLayer, TextPromptEncoderLayer
from .vision import RegionTokenLayer, VisionPromptLayer

SUPPORTED_MODELS = "CLIPModel, CLIPVisionModel, CLIPTextModel, CLIPVisionModelWithProjection, CLIPTextModelWithProjection"


def find_towers(model: nn.Module) -> dict[str, str]:
    """Module names of the CLIP towers in ``model``: ``{name: "vision" | "text"}`` ('' = the root)."""
    towers = {}
    for name, module in model.named_modules():
        if isinstance(module, CLIPVisionModel):
            towers[name] = "vision"
        elif isinstance(module, CLIPTextModel):
            towers[name] = "text"
    return towers


def _join(prefix: str, child: str) -> str:
    return f"{prefix}.{child}" if prefix else child


class RegionPromptModel(BaseTuner):
    """Adds region-aware deep prompts (:class:`RegionPromptConfig`) to a CLIP model.

    Example::

        >>> import par_prompt  # registers the method with PEFT
        >>> from peft import get_peft_model
        >>> model = get_peft_model(clip_model, par_prompt.RegionPromptConfig())
        >>> model.print_trainable_parameters()
    """

    prefix: str = "region_prompt_"
    tuner_layer_cls = RegionPromptLayer
    target_module_mapping: dict = {}

    # -- choosing the targets ---------------------------------------------------------
    def _prepare_adapter_config(self, peft_config: RegionPromptConfig, model_config: dict) -> RegionPromptConfig:
        return peft_config  # targets come from the model's structure, not from names

    def _prepare_model(self, peft_config: RegionPromptConfig, model: nn.Module) -> None:
        """Check that the config fits the model and record which children to wrap."""
        towers = find_towers(model)
        if not towers:
            raise ValueError(
                f"Region prompt tuning applies to Hugging Face CLIP models ({SUPPORTED_MODELS}); got "
                f"{type(model).__name__}, which holds no CLIP vision or text tower."
            )
        if peft_config.target_modules is not None:
            unknown = sorted(set(peft_config.target_modules) - set(towers))
            if unknown:
                raise ValueError(
                    f"target_modules names {unknown}, which are not CLIP towers of {type(model).__name__}; its towers "
                    f"are {sorted(towers)}."
                )
            towers = {name: kind for name, kind in towers.items() if name in peft_config.target_modules}
        kinds = set(towers.values())
        for kind, names, uses in (
            ("text", TEXT_FIELDS, peft_config.uses_text),
            ("vision", VISION_FIELDS, peft_config.uses_vision),
        ):
            changed = peft_config.fields_changed(names)
            if kind not in kinds and uses and changed:
                settings = ", ".join(f"{n}={getattr(peft_config, n)!r}" for n in changed)
                raise ValueError(
                    f"The {kind} prompt settings ({settings}) have no effect on {type(model).__name__}: it has no "
                    f"{kind} tower. Leave them at their defaults, or wrap a model with a {kind} tower (e.g. CLIPModel)."
                )
        targets: dict[str, str] = {}
        for name, kind in towers.items():
            tower = model.get_submodule(name)
            if kind == "vision" and peft_config.uses_vision:
                self._check_vision_fits(peft_config, tower)
                if peft_config.num_regions > 0:
                    targets[_join(name, "embeddings")] = "vision_embeddings"
                targets[_join(name, "encoder")] = "vision_encoder"
            elif kind == "text" and peft_config.uses_text:
                self._check_text_fits(peft_config, tower)
                targets[_join(name, "embeddings")] = "text_embeddings"
                targets[_join(name, "encoder")] = "text_encoder"
        if not targets:
            raise ValueError(
                f"This RegionPromptConfig adds nothing to {type(model).__name__}: it has no visual prompts "
                "(num_regions=0, prompts_per_group=0) and no text prompts for the towers present."
            )
        self._region_prompt_targets = targets

    @staticmethod
    def _check_vision_fits(config: RegionPromptConfig, tower: nn.Module) -> None:
        vision = tower.config
        grid = vision.image_size // vision.patch_size
        region_bands(grid, config.num_regions, config.overlap_rows)  # raises if the regions do not fit
        if config.num_regions > 0 and vision._attn_implementation not in ("eager", "sdpa"):
            raise ValueError(
                f"Region prompts need an attention mask, which attn_implementation="
                f"{vision._attn_implementation!r} does not take. Load CLIP with attn_implementation='sdpa' or 'eager'."
            )

    @staticmethod
    def _check_text_fits(config: RegionPromptConfig, tower: nn.Module) -> None:
        text = tower.config
        if config.text_prompts > text.max_position_embeddings - 2:
            raise ValueError(
                f"text_prompts={config.text_prompts} leaves no room for a sentence in the text tower's "
                f"{text.max_position_embeddings} positions; use at most {text.max_position_embeddings - 3}."
            )
        if text._attn_implementation not in ("eager", "sdpa"):
            raise ValueError(
                f"Text prompts need an explicit causal mask, which attn_implementation={text._attn_implementation!r} "
                "does not take. Load CLIP with attn_implementation='sdpa' or 'eager'."
            )

    def _check_target_module_exists(self, peft_config: RegionPromptConfig, key: str) -> bool:
        return key in self._region_prompt_targets

    # -- creating and replacing ---------------------------------------------------------
    def _create_and_replace(
        self,
        peft_config: RegionPromptConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        parameter_name: Optional[str] = None,
    ) -> None:
        if isinstance(target, RegionPromptLayer):
            target.update_layer(adapter_name, peft_config)
            return
        kind = self._region_prompt_targets[current_key]
        tower_config = parent.config
        if kind == "vision_embeddings":
            new_module = RegionTokenLayer(target, adapter_name, peft_config)
        elif kind == "vision_encoder":
            new_module = VisionPromptLayer(target, adapter_name, peft_config, patch_size=tower_config.patch_size)
        elif kind == "text_embeddings":
            new_module = TextPromptEmbeddingLayer(target, adapter_name, peft_config, tower_config.eos_token_id)
        else:
            new_module = TextPromptEncoderLayer(target, adapter_name, peft_config)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)

    def _replace_module(self, parent: nn.Module, child_name: str, new_module: nn.Module, child: nn.Module) -> None:
        # The layers wrap whole submodules and create their prompts on the base module's
        # device and dtype, so there is no weight to copy or move (peft's default copies
        # ``.weight``, which these submodules do not have).
        setattr(parent, child_name, new_module)

    # -- what region prompts cannot do ---------------------------------------------------------
    def _check_merge_allowed(self) -> None:
        raise ValueError(MERGE_ERROR)

    def merge_adapter(self, adapter_names=None, safe_merge: bool = False) -> None:
        raise ValueError(MERGE_ERROR)

    def unmerge_adapter(self) -> None:
        raise ValueError(MERGE_ERROR)
