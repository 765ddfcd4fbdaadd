"""Saving and loading PromptPAR: the tiny-adapter contract.

A saved model is a directory (or a Hub repository) holding only what was trained::

    config.json                      PromptPARConfig: attributes, sentences, settings,
                                     backbone references and architectures
    clip_adapter/adapter_config.json the CLIP prompts as a PEFT adapter, loadable on its
    clip_adapter/adapter_model.safetensors   own with PeftModel.from_pretrained(CLIPModel)
    promptpar_head.safetensors       projections, fusion norm, heads, BatchNorms (with
                                     running statistics), temperature, positive ratios
    tokenizer files, preprocessor_config.json

The frozen bases are rebuilt from their references. A base without a reference (random
init), or every base when ``bundle_base_weights=True``, is written too:
``clip_base.safetensors`` for the CLIP and ``fusion.layers.*`` in the head file.
Nothing is ever unpickled: every tensor file is safetensors.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Optional, Union

import torch
from peft import set_peft_model_state_dict
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file
from transformers import CLIPModel

from ..fileio import atomic_directory, read_safetensors
from ..tuner.layer import RegionPromptLayer
from . import loading

ADAPTER_DIR = "clip_adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
HEAD_FILE = "promptpar_head.safetensors"
CLIP_BASE_FILE = "clip_base.safetensors"
FUSION_LAYERS_PREFIX = "fusion.layers."
# Passed along by AutoModel / pipeline(); they have no meaning for PromptPAR loading.
AUTO_CLASS_ARGUMENTS = {"trust_remote_code", "use_safetensors", "low_cpu_mem_usage", "adapter_kwargs", "subfolder",
                        "code_revision", "force_download", "proxies", "output_loading_info", "state_dict"}
CLIP_AUTO_MAPPING = {"base_model_class": "CLIPModel", "parent_library": "transformers.models.clip.modeling_clip"}


def plain_clip_state_dict(clip: CLIPModel) -> dict[str, torch.Tensor]:
    """The CLIP weights under the names of a plain ``CLIPModel`` (prompt layers unwrapped,
    prompts left out)."""
    drop, rename = set(), {}
    for name, module in clip.named_modules():
        if isinstance(module, RegionPromptLayer):
            drop.update(f"{name}.{attr}." for attr in module.adapter_layer_names)
            rename[f"{name}.base_layer."] = f"{name}."
    state = {}
    for key, tensor in clip.state_dict().items():
        if any(key.startswith(prefix) for prefix in drop):
            continue
        for old, new in rename.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        state[key] = tensor
    return state


def _check_tensors(what: str, path: Path, found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Raise when a loaded file does not hold exactly the expected names and shapes."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [
        f"{name}: {tuple(found[name].shape)} in the file, {tuple(expected[name].shape)} in the model"
        for name in sorted(set(found) & set(expected)) if found[name].shape != expected[name].shape
    ]
    if missing or unexpected or wrong:
        problems = []
        if wrong:
            problems.append("shape mismatch: " + "; ".join(wrong[:5]))
        if missing:
            problems.append(f"missing: {missing[:5]}")
        if unexpected:
            problems.append(f"unexpected: {unexpected[:5]}")
        raise ValueError(
            f"The {what} in {path} does not fit this model ({' | '.join(problems)}). It was saved for another "
            "configuration (e.g. another backbone or attribute count); load it with its own config.json."
        )


class PromptPARSerializationMixin:
    """save_pretrained / from_pretrained / from_backbones for PromptPARModel."""

    # ------------------------------------------------------------------ saving
    def _bundles_clip(self, bundle_base_weights: bool) -> bool:
        return bundle_base_weights or self.config.clip_name_or_path is None

    def _bundles_fusion(self, bundle_base_weights: bool) -> bool:
        return self.config.fusion_layers > 0 and (bundle_base_weights or self.config.fusion_name_or_path is None)

    def weight_files(self, bundle_base_weights: bool = False) -> dict[str, dict[str, torch.Tensor]]:
        """Every tensor ``save_pretrained`` writes, by file. Sizes are counted from this
        same plan (see :meth:`saved_weight_bytes`)."""
        adapter = self._adapter_state()
        head = {
            name: tensor for name, tensor in self.state_dict().items()
            if not name.startswith("clip.")
            and (self._bundles_fusion(bundle_base_weights) or not name.startswith(FUSION_LAYERS_PREFIX))
        }
        files = {f"{ADAPTER_DIR}/{ADAPTER_WEIGHTS}": adapter, HEAD_FILE: head}
        if self._bundles_clip(bundle_base_weights):
            files[CLIP_BASE_FILE] = plain_clip_state_dict(self.clip_model)
        return files

    def _adapter_state(self) -> dict[str, torch.Tensor]:
        """The active adapter's tensors as PEFT saves them (prompts never touch the
        embedding layers, so peft need not look the base up on the Hub to decide)."""
        return get_peft_model_state_dict(self.clip, adapter_name=self.clip.active_adapter, save_embedding_layers=False)

    def saved_weight_bytes(self, bundle_base_weights: bool = False) -> int:
        """Bytes of tensor data ``save_pretrained`` writes (works on the meta device)."""
        return sum(t.numel() * t.element_size() for f in self.weight_files(bundle_base_weights).values()
                   for t in f.values())

    def save_pretrained(
        self,
        save_directory: Union[str, os.PathLike],
        bundle_base_weights: bool = False,
        push_to_hub: bool = False,
        **kwargs: Any,
    ) -> None:
        """Write the model to ``save_directory`` atomically (see the module docstring).

        The directory is assembled next to its destination and renamed into place, so a
        crash never leaves a half-written model, and an existing model there stays intact
        until the new one is complete. ``bundle_base_weights=True`` also writes the frozen
        CLIP and fusion weights, for fully offline use.
        """
        if kwargs.get("safe_serialization") is False:
            raise ValueError("PromptPAR saves safetensors only; safe_serialization=False is not supported.")
        if push_to_hub:  # fail on bad upload arguments before anything is written
            from ..hub import check_upload_arguments

            check_upload_arguments(**kwargs)
        plan = self.weight_files(bundle_base_weights)
        with atomic_directory(save_directory, overwrite=True) as tmp:
            tmp.mkdir(parents=True)
            self.config.save_pretrained(tmp)
            adapter_config = copy.deepcopy(self.clip.peft_config[self.clip.active_adapter])
            adapter_config.inference_mode = True
            adapter_config.base_model_name_or_path = self.config.clip_name_or_path
            adapter_config.revision = self.config.clip_revision
            adapter_config.auto_mapping = dict(CLIP_AUTO_MAPPING)
            adapter_config.save_pretrained(tmp / ADAPTER_DIR)
            for relative, tensors in plan.items():
                tensors = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
                save_file(tensors, str(tmp / relative), metadata={"format": "pt"})
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(tmp)
            if self.image_processor is not None:
                self.image_processor.save_pretrained(tmp)
        if push_to_hub:
            from ..hub import upload_model_folder

            upload_model_folder(save_directory, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload exactly the files of ``save_pretrained`` plus the PromptPAR model card;
        see :func:`par_prompt.hub.push_model_to_hub` for the options."""
        from ..hub import push_model_to_hub

        return push_model_to_hub(self, repo_id, **kwargs)

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: Union[str, os.PathLike],
        *model_args: Any,
        revision: Optional[str] = None,
        cache_dir: Optional[str] = None,
        token: Union[None, bool, str] = None,
        local_files_only: bool = False,
        clip_name_or_path: Optional[str] = None,
        fusion_name_or_path: Optional[str] = None,
        config=None,
        dtype: Optional[torch.dtype] = None,
        device: Union[None, str, torch.device] = None,
        attn_implementation: Optional[str] = None,
        **kwargs: Any,
    ):
        """Load a saved PromptPAR model from a directory, the Hub, or the local Hub cache.

        The model's folder is resolved first (``revision`` applies to it), then the bases
        it names (at the revisions its config records). ``clip_name_or_path`` /
        ``fusion_name_or_path`` point at another copy of a base, e.g. a local directory;
        it must have the same architecture as the one the model was trained on.
        """
        dtype = dtype if dtype is not None else kwargs.pop("torch_dtype", None)
        if isinstance(dtype, str):  # pipeline() passes "auto": keep the saved precision (fp32)
            dtype = None if dtype == "auto" else getattr(torch, dtype)
        device_map = kwargs.pop("device_map", None)
        if device is None and isinstance(device_map, (str, torch.device)):
            device = device_map
        for key in list(kwargs):  # arguments of Auto classes and pipelines that do not apply here
            if key.startswith("_") or key in AUTO_CLASS_ARGUMENTS:
                kwargs.pop(key)
        if kwargs:
            raise TypeError(f"PromptPARModel.from_pretrained got unexpected arguments: {sorted(kwargs)}")
        hub = dict(cache_dir=cache_dir, token=token, local_files_only=local_files_only)
        model_dir = loading.resolve_model_dir(pretrained_model_name_or_path, revision=revision, **hub)
        if config is None:
            config = cls._read_config(model_dir)
        base_kwargs = dict(hub)
        if attn_implementation is not None:
            base_kwargs["attn_implementation"] = attn_implementation

        head_state = read_safetensors(model_dir / HEAD_FILE, "PromptPAR head")
        clip = cls._load_clip(config, model_dir, clip_name_or_path, base_kwargs)
        fusion_vit = None
        if config.fusion_layers > 0 and not any(k.startswith(FUSION_LAYERS_PREFIX) for k in head_state):
            fusion_vit = cls._load_fusion(config, model_dir, fusion_name_or_path, base_kwargs)

        model = cls(config, clip_model=clip, fusion_vit=fusion_vit)
        del fusion_vit
        model._load_adapter(model_dir / ADAPTER_DIR / ADAPTER_WEIGHTS)
        expected_head = {k: v for k, v in model.state_dict().items() if not k.startswith("clip.")
                         and (k in head_state or not k.startswith(FUSION_LAYERS_PREFIX))}
        _check_tensors("PromptPAR head", model_dir / HEAD_FILE, head_state, expected_head)
        model.load_state_dict(head_state, strict=False)
        model.attach_tokenizer(cls._load_tokenizer(config, model_dir, clip_name_or_path, hub))
        model.attach_image_processor(cls._load_image_processor(config, model_dir, clip_name_or_path, hub))
        model.freeze_backbones()
        if dtype is not None:
            model.to(dtype)
        if device is not None:
            model.to(device)
        return model.eval()

    @classmethod
    def _read_config(cls, model_dir: Path):
        path = model_dir / "config.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{model_dir} has no config.json, so it is not a PromptPAR model folder (one holds config.json with "
                f"model_type 'prompt_par', {ADAPTER_DIR}/ and {HEAD_FILE})."
            )
        try:
            model_type = json.loads(path.read_text()).get("model_type")
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} is not valid JSON ({error}).") from error
        if model_type != cls.config_class.model_type:
            raise ValueError(
                f"{model_dir} holds a {model_type!r} model, not a PromptPAR model (model_type 'prompt_par')."
            )
        return cls.config_class.from_pretrained(model_dir)

    @staticmethod
    def _load_clip(config, model_dir: Path, override: Optional[str], base_kwargs: dict) -> CLIPModel:
        bundled = model_dir / CLIP_BASE_FILE
        if bundled.is_file() and override is None:
            clip = CLIPModel(config.get_clip_config())
            state = read_safetensors(bundled, "bundled CLIP")
            _check_tensors("bundled CLIP", bundled, state, clip.state_dict())
            clip.load_state_dict(state)
            return clip.requires_grad_(False)
        reference = override or config.clip_name_or_path
        if reference is None:
            raise ValueError(
                f"{model_dir} names no CLIP base and bundles none ({CLIP_BASE_FILE}); pass clip_name_or_path."
            )
        revision = None if override else config.clip_revision
        clip = loading.load_clip(reference, revision, model_dir, **base_kwargs)
        loading.check_same_backbone("CLIP", loading.clip_signature(config.clip_config),
                                    loading.clip_signature(clip.config), reference, config.clip_name_or_path)
        return clip

    @staticmethod
    def _load_fusion(config, model_dir: Path, override: Optional[str], base_kwargs: dict):
        reference = override or config.fusion_name_or_path
        if reference is None:
            raise ValueError(f"{model_dir} names no fusion ViT and bundles no fusion layers; pass fusion_name_or_path.")
        revision = None if override else config.fusion_revision
        vit = loading.load_fusion_vit(reference, revision, model_dir, **base_kwargs)
        loading.check_same_backbone("fusion ViT", loading.fusion_signature(config.fusion_config),
                                    loading.fusion_signature(vit.config), reference, config.fusion_name_or_path)
        return vit

    def _load_adapter(self, path: Path) -> None:
        state = read_safetensors(path, "CLIP prompt adapter")
        expected = self._adapter_state()
        _check_tensors("CLIP prompt adapter", path, state, expected)
        set_peft_model_state_dict(self.clip, state, adapter_name=self.clip.active_adapter)

    @staticmethod
    def _load_tokenizer(config, model_dir: Path, override: Optional[str], hub: dict):
        from transformers import AutoTokenizer

        if (model_dir / "tokenizer_config.json").is_file():
            return AutoTokenizer.from_pretrained(model_dir)
        reference = override or config.clip_name_or_path
        if reference is None:
            raise ValueError(f"{model_dir} holds no tokenizer and names no CLIP base to take it from.")
        try:
            return AutoTokenizer.from_pretrained(reference, **hub)
        except (OSError, ValueError) as error:
            raise loading.MissingBaseModelError(
                f"The tokenizer of the CLIP base {reference!r} could not be loaded: {error}"
            ) from error

    @staticmethod
    def _load_image_processor(config, model_dir: Path, override: Optional[str], hub: dict):
        from ..image_processing import PromptPARImageProcessor

        if (model_dir / "preprocessor_config.json").is_file():
            return PromptPARImageProcessor.from_pretrained(model_dir)
        reference = override or config.clip_name_or_path
        if reference is None:
            return None
        from transformers import AutoImageProcessor

        return PromptPARImageProcessor.from_clip_processor(AutoImageProcessor.from_pretrained(reference, **hub))

    @classmethod
    def from_backbones(
        cls,
        clip_name_or_path: str,
        attributes,
        fusion_name_or_path: Optional[str] = None,
        *,
        clip_revision: Optional[str] = None,
        fusion_revision: Optional[str] = None,
        cache_dir: Optional[str] = None,
        token: Union[None, bool, str] = None,
        local_files_only: bool = False,
        attn_implementation: Optional[str] = None,
        **config_kwargs: Any,
    ):
        """A new, untrained PromptPAR model on pretrained backbones, ready to train.

        ``fusion_name_or_path`` defaults to the paper's ``google/vit-base-patch16-224``;
        pass ``fusion_name_or_path=None`` together with ``fusion_config`` for a random
        fusion layer. ``config_kwargs`` go to :class:`PromptPARConfig` (sentences,
        dataset, region-prompt settings, ...).
        """
        from .configuration import PAPER_FUSION_CHECKPOINT, PromptPARConfig

        if fusion_name_or_path is None and "fusion_config" not in config_kwargs:
            fusion_name_or_path = PAPER_FUSION_CHECKPOINT
        hub = dict(cache_dir=cache_dir, token=token, local_files_only=local_files_only)
        base_kwargs = dict(hub, **({"attn_implementation": attn_implementation} if attn_implementation else {}))
        clip = loading.load_clip(clip_name_or_path, clip_revision, **base_kwargs)
        vit = None
        if fusion_name_or_path is not None:
            vit = loading.load_fusion_vit(fusion_name_or_path, fusion_revision, **base_kwargs)
            config_kwargs["fusion_config"] = vit.config
        config = PromptPARConfig(
            attributes=attributes, clip_name_or_path=clip_name_or_path, clip_revision=clip_revision,
            clip_config=clip.config, fusion_name_or_path=fusion_name_or_path, fusion_revision=fusion_revision,
            **config_kwargs,
        )
        model = cls(config, clip_model=clip, fusion_vit=vit if config.fusion_layers > 0 else None)
        model.attach_tokenizer(cls._load_tokenizer(config, Path(os.devnull), None, hub))
        model.attach_image_processor(cls._load_image_processor(config, Path(os.devnull), None, hub))
        return model
