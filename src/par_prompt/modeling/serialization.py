"""Saving and loading PromptPAR: the tiny-adapter contract.

A saved model is a directory (or a Hub repository) holding only what was trained::

    config.json                      PromptPARConfig: attributes, sentences, settings,
                                     backbone references and architectures
    clip_adapter/adapter_config.json the CLIP prompts as a PEFT adapter, loadable on its
    clip_adapter/adapter_model.safetensors   own with PeftModel.from_pretrained(CLIPModel)
    promptpar_head.safetensors       projections, fusion norm, heads, BatchNorms (with
                                     running statistics), temperature, positive ratios

(:mod:`par_prompt.saved_files` names every file.) The tokenizer and the image processor are not
the model's: ``PromptPARProcessor.save_pretrained`` writes them into the same folder.
Of the tokenizer the model needs only the token ids of its sentences, which
``config.json`` records.

The frozen bases are rebuilt from their references. A base without a reference (random
init), or every base when ``bundle_base_weights=True``, is written too:
``clip_base.safetensors`` for the CLIP and ``fusion.layers.*`` in the head file.
Nothing is ever unpickled: every tensor file is safetensors.

Like transformers, ``save_pretrained`` writes these files into the directory and leaves
every other file alone. Each file is written to a hidden staging folder inside the
directory, flushed to disk and renamed into place; ``config.json`` comes last. Files of
an earlier PromptPAR model there that the new save does not write (a bundled
``clip_base.safetensors``) are removed; files of anything else are
never overwritten (the save is refused). All tensor files of one save carry the save's
id, which ``config.json`` records: a folder whose files come from different saves (an
interrupted save, or one still running) is refused at load instead of loading a mix.

``from_pretrained`` validates before it allocates: config.json's types, values and
sizes, the tensor files' names and shapes, NaN or inf in the weights, and the
fingerprints of the frozen bases. (``PromptPARProcessor.from_pretrained`` checks the
processor files against ``config.json``: the tokenizer must reproduce the sentences'
token ids, the image processor must resize to the CLIP's image size.)
"""

from __future__ import annotations

import copy
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any, Optional, Union

import torch
from peft import set_peft_model_state_dict
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file
from transformers import CLIPModel

from ..fileio import (
    MAX_JSON_BYTES,
    publish_files,
    read_json_object,
    read_safetensors,
    read_safetensors_header,
    staging_directory,
)
from ..sentences import resolve_sentences
from ..tuner.layer import RegionPromptLayer
from . import loading
from ..saved_files import (
    ADAPTER_DIR,
    ADAPTER_FILE,
    CLIP_BASE_FILE,
    CLIP_STATE_PREFIX,
    CONFIG_FILE,
    FUSION_LAYERS_PREFIX,
    HEAD_FILE,
    MODEL_FILES,
    PREPROCESSOR_FILE,
    PROCESSOR_FILE,
    PROCESSOR_FILES,
)

SAVE_ID_KEY = "promptpar_save_id"  # in the metadata of every tensor file
STAGING_NAME = "promptpar-save"
MAX_CONFIG_BYTES = MAX_JSON_BYTES
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


def _shape(value) -> tuple[int, ...]:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else tuple(value)


def _check_tensors(what: str, path: Path, found: dict, expected: dict) -> None:
    """Raise when a file does not hold exactly the expected names and shapes (tensors,
    or shapes read from a file header)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [
        f"{name}: {_shape(found[name])} in the file, {_shape(expected[name])} in the model"
        for name in sorted(set(found) & set(expected)) if _shape(found[name]) != _shape(expected[name])
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


def _check_values(what: str, path: Path, state: dict[str, torch.Tensor]) -> None:
    """Raise on weights no trained model has: NaN or inf, a negative BatchNorm variance, a
    zero temperature, positive ratios outside [0, 1] (all NaN means "never set")."""
    def damaged(name: str, problem: str) -> ValueError:
        return ValueError(
            f"The {what} file {path} holds {problem} in {name}: the file is damaged or comes from a training run "
            "that diverged. Use another checkpoint of the model, or save it again."
        )

    for name, tensor in state.items():
        if not tensor.is_floating_point():
            continue
        if name == "positive_ratios":
            if not torch.isnan(tensor).all() and not ((tensor >= 0) & (tensor <= 1)).all():
                raise damaged(name, "values outside [0, 1] (positive ratios)")
            continue
        # The sum is finite when every value is (cheap on a 430M-parameter bundled CLIP);
        # only then is the exact count needed (a huge finite sum can overflow).
        bad = 0 if torch.isfinite(tensor.sum()) else int((~torch.isfinite(tensor)).sum())
        if bad:
            raise damaged(name, f"{bad} non-finite value{'s' if bad > 1 else ''} (NaN or inf)")
        if name.endswith("running_var") and bool((tensor < 0).any()):
            raise damaged(name, "a negative variance")
        if name == "aggregator.temperature" and bool((tensor == 0).any()):
            raise damaged(name, "a zero temperature")


def _layer_count(names, prefix: str) -> int:
    """How many numbered layers ``prefix{i}.`` the names hold."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({match.group(1) for match in map(pattern.match, names) if match})


def _folder_save_id(model_dir: Path) -> tuple[bool, Optional[str]]:
    """Whether the folder has a config.json, and the save id it records (read leniently)."""
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        return False, None
    return True, (read_json_object(path, MAX_CONFIG_BYTES) or {}).get("save_id")


def _holds_promptpar_model(directory: Path) -> bool:
    """Whether ``directory`` holds a PromptPAR model (config.json of model_type
    'prompt_par'), or the files of an interrupted save of one (config.json is written last)."""
    path = directory / CONFIG_FILE
    if not path.exists():
        return (directory / HEAD_FILE).is_file()
    return (read_json_object(path) or {}).get("model_type") == "prompt_par"


def _holds_promptpar_processor(directory: Path) -> bool:
    """Whether ``directory`` holds a PromptPAR processor: its processor_config.json, the
    image processor file of an older PromptPAR save, or, in a PromptPAR model folder with
    neither file, the tokenizer files of an interrupted processor save (processor_config.json
    is written last). Files of other processors and tokenizers are never taken for ours."""
    processor, image_processor = directory / PROCESSOR_FILE, directory / PREPROCESSOR_FILE
    if processor.exists():
        return (read_json_object(processor) or {}).get("processor_class") == "PromptPARProcessor"
    if image_processor.exists():
        return (read_json_object(image_processor) or {}).get("image_processor_type") == "PromptPARImageProcessor"
    return (directory / CONFIG_FILE).is_file() and _holds_promptpar_model(directory)


def _check_overwrites(directory: Path, relative_paths: list[str], ours: bool, kind: str = "model") -> None:
    """Refuse to overwrite a file that does not belong to a PromptPAR model (save_pretrained
    must lose nothing), or a directory standing where a file must go."""
    taken = [name for name in relative_paths if os.path.lexists(directory / name)]
    for name in taken:
        if (directory / name).is_dir() and not (directory / name).is_symlink():
            raise IsADirectoryError(f"{directory / name} is a directory, where save_pretrained must write a file; "
                                    "save into another folder, or move it away.")
    parent = directory / ADAPTER_DIR
    if os.path.lexists(parent) and not parent.is_dir():
        raise NotADirectoryError(f"{parent} is a file, where save_pretrained must write a folder; "
                                 "save into another folder, or move it away.")
    if taken and not ours:
        raise FileExistsError(
            f"{directory} holds files that save_pretrained would overwrite but that do not belong to a PromptPAR "
            f"{kind} ({', '.join(taken[:4])}{', ...' if len(taken) > 4 else ''}). Save into a new or empty folder, "
            "or move those files away."
        )


def publish_saved_files(staging: Path, directory: Path, written: list[str], owned: tuple[str, ...],
                        last: Optional[str] = None) -> None:
    """Move the files of one save from ``staging`` into ``directory``, each atomically,
    ``last`` last. ``owned`` says what is saved: MODEL_FILES or PROCESSOR_FILES. Files in a
    directory that does not already hold one of that kind (a PromptPAR model, a PromptPAR
    processor) are never overwritten (FileExistsError); in one that does, the files of
    ``owned`` that this save did not write are removed (left there, they would load with
    the new files)."""
    kind = "processor" if owned == PROCESSOR_FILES else "model"
    ours = _holds_promptpar_processor(directory) if kind == "processor" else _holds_promptpar_model(directory)
    _check_overwrites(directory, written, ours, kind)
    publish_files(staging, directory, [name for name in written if name != last])
    if ours:
        for name in owned:
            stale = directory / name
            if name not in written and (stale.is_file() or stale.is_symlink()):
                stale.unlink()
    if last in written:
        publish_files(staging, directory, [last])


def read_config(model_dir: Path):
    """The folder's config.json as a validated PromptPARConfig; every problem is one
    ValueError that names the file and the field."""
    from .configuration import PromptPARConfig

    path = model_dir / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{model_dir} has no config.json, so it is not a PromptPAR model folder (one holds config.json with "
            f"model_type 'prompt_par', {ADAPTER_DIR}/ and {HEAD_FILE})."
        )
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ValueError(f"{path} is {path.stat().st_size} bytes, far larger than any PromptPAR config.json "
                         f"(at most {MAX_CONFIG_BYTES} bytes are read); it is not a PromptPAR config.")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}).") from error
    if not isinstance(raw, dict):
        raise ValueError(f"{path} holds a JSON {type(raw).__name__}, not an object; it is not a PromptPAR config.")
    model_type = raw.get("model_type")
    if model_type != PromptPARConfig.model_type:
        raise ValueError(
            f"{model_dir} holds a {model_type!r} model, not a PromptPAR model (model_type 'prompt_par')."
        )
    try:
        return PromptPARConfig.from_pretrained(model_dir)
    except Exception as error:  # transformers and its strict dataclasses raise several types
        if isinstance(error, OSError) and not isinstance(error, ValueError):
            raise
        message = " ".join(str(error).split())
        raise ValueError(f"{path}: {message} Fix the file, or download or save the model again.") from None


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
            if not name.startswith(CLIP_STATE_PREFIX)
            and (self._bundles_fusion(bundle_base_weights) or not name.startswith(FUSION_LAYERS_PREFIX))
        }
        files = {ADAPTER_FILE: adapter, HEAD_FILE: head}
        if self._bundles_clip(bundle_base_weights):
            files[CLIP_BASE_FILE] = plain_clip_state_dict(self.clip_model)
        return files

    def _adapter_state(self) -> dict[str, torch.Tensor]:
        """The active adapter's tensors as PEFT saves them (prompts never touch the
        embedding layers, so peft need not look the base up on the Hub to decide)."""
        peft_clip = self.peft_clip
        return get_peft_model_state_dict(peft_clip, adapter_name=peft_clip.active_adapter, save_embedding_layers=False)

    def saved_weight_bytes(self, bundle_base_weights: bool = False) -> int:
        """Bytes of tensor data ``save_pretrained`` writes (works on the meta device)."""
        return sum(t.numel() * t.element_size() for f in self.weight_files(bundle_base_weights).values()
                   for t in f.values())

    def base_fingerprints(self) -> dict[str, str]:
        """Fingerprints of the frozen bases (see :func:`loading.weights_fingerprint`): the
        CLIP, and the fusion layers taken from the ViT."""
        prints = {"clip": loading.weights_fingerprint(plain_clip_state_dict(self.clip_model).values())}
        if self.config.fusion_layers > 0:
            prints["fusion"] = loading.weights_fingerprint(self.fusion.layers.state_dict().values())
        return prints

    def _config_to_save(self, directory: Path):
        """A copy of the config as ``directory/config.json`` records it: base references
        relative to the folder, a new save id, the base fingerprints and the architecture."""
        config = copy.deepcopy(self.config)
        config.clip_name_or_path = loading.reference_for_folder(config.clip_name_or_path, directory)
        config.fusion_name_or_path = loading.reference_for_folder(config.fusion_name_or_path, directory)
        config.save_id = uuid.uuid4().hex
        config.base_fingerprints = self.base_fingerprints()
        config.architectures = [type(self).__name__]
        config.check()
        return config

    def save_pretrained(
        self,
        save_directory: Union[str, os.PathLike],
        bundle_base_weights: bool = False,
        push_to_hub: bool = False,
        **kwargs: Any,
    ) -> None:
        """Write the model's files into ``save_directory`` (see the module docstring).

        Other files in the directory are left alone; files of an earlier PromptPAR model
        there are replaced, each atomically, ``config.json`` last; a crash never leaves a
        half-written file, and a folder left half-updated is refused at load.
        ``bundle_base_weights=True`` also writes the frozen CLIP and fusion weights, for
        fully offline use.
        """
        if kwargs.get("safe_serialization") is False:
            raise ValueError("PromptPAR saves safetensors only; safe_serialization=False is not supported.")
        if push_to_hub:  # fail on bad upload arguments before anything is written
            from ..hub import check_upload_arguments

            check_upload_arguments(**kwargs)
        directory = Path(save_directory).absolute()
        config = self._config_to_save(directory)
        plan = self.weight_files(bundle_base_weights)
        with staging_directory(directory, STAGING_NAME) as staging:
            written = self._write_files(staging, config, plan)
            publish_saved_files(staging, directory, written, MODEL_FILES, last=CONFIG_FILE)
        if push_to_hub:
            from ..hub import upload_model_folder

            upload_model_folder(save_directory, **kwargs)

    def _write_files(self, staging: Path, config, plan: dict[str, dict[str, torch.Tensor]]) -> list[str]:
        """Write every file of the model under ``staging``; return their relative paths,
        tensor files first."""
        for relative, tensors in plan.items():
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            tensors = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
            save_file(tensors, str(staging / relative), metadata={"format": "pt", SAVE_ID_KEY: config.save_id})
        adapter_config = copy.deepcopy(self.peft_clip.peft_config[self.peft_clip.active_adapter])
        adapter_config.inference_mode = True
        # PEFT resolves this against the working directory: a local base is named absolutely.
        reference = self.config.clip_name_or_path
        local = loading.is_local_reference(reference)
        adapter_config.base_model_name_or_path = os.path.abspath(os.path.expanduser(reference)) if local else reference
        adapter_config.revision = self.config.clip_revision
        adapter_config.auto_mapping = dict(CLIP_AUTO_MAPPING)
        adapter_config.save_pretrained(staging / ADAPTER_DIR)
        config.save_pretrained(staging)
        files = sorted(path.relative_to(staging).as_posix() for path in staging.rglob("*") if path.is_file())
        return [*plan, *(name for name in files if name not in plan)]

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload exactly the files of ``save_pretrained`` plus the PromptPAR model card;
        see :func:`par_prompt.hub.push_model_to_hub` for the options."""
        from ..hub import push_model_to_hub

        return push_model_to_hub(self, repo_id, **kwargs)

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_official_checkpoint(cls, path: Union[str, os.PathLike], dataset: Optional[str] = None, **kwargs: Any):
        """A model from a checkpoint of the official PromptPAR code (a ``.pth`` file, read
        without unpickling code) that predicts what the official code predicts.

        The arguments are those of :func:`par_prompt.official.load_official_checkpoint`
        (``dataset``, ``attributes``/``sentences``, ``attribute_order``, ``clip_tokenizer``,
        ``clip_name_or_path``), which returns the processor as well (the official image
        pipeline). ``par_prompt.official.save_official_model(model, processor, out)``
        writes both with the model card; a folder saved with ``model.save_pretrained``
        alone still gets the official image pipeline from ``PromptPARProcessor.from_pretrained``.
        """
        from ..official import load_official_checkpoint

        return load_official_checkpoint(path, dataset, **kwargs)[0]

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: Union[str, os.PathLike],
        *model_args: Any,
        subfolder: str = "",
        revision: Optional[str] = None,
        cache_dir: Optional[str] = None,
        token: Union[None, bool, str] = None,
        local_files_only: bool = False,
        clip_name_or_path: Optional[str] = None,
        fusion_name_or_path: Optional[str] = None,
        config=None,
        dtype: Union[None, str, torch.dtype] = None,
        device_map: Any = None,
        device: Union[None, str, int, torch.device] = None,
        attn_implementation: Optional[str] = None,
        **kwargs: Any,
    ):
        """Load a saved PromptPAR model from a directory, the Hub, or the local Hub cache.

        The model's folder is resolved first (``subfolder``, ``revision``,
        ``cache_dir``, ``token`` and ``local_files_only`` apply to it, as in
        transformers), then the bases it names (at the revisions its config records;
        local paths relative to the model folder). ``clip_name_or_path`` /
        ``fusion_name_or_path`` point at another copy of a base, e.g. a local
        directory; it must hold the same weights as the one the model was trained on
        (checked by fingerprint). Everything read is validated before the model is
        built (see the module docstring).

        ``dtype`` (or ``torch_dtype``): a torch dtype or its name; ``"auto"`` keeps the
        saved precision. ``device_map`` (or ``device``): the one device to load onto --
        ``"auto"`` (the first GPU if there is one, else the CPU), ``"cpu"``,
        ``"cuda"``, ``"cuda:N"``, ``N``, a ``torch.device`` or ``{"": device}``;
        PromptPAR is not split across devices, so a per-module map is an error. Any
        other argument transformers' ``from_pretrained`` takes and PromptPAR cannot
        honour is an error too, never silently ignored.

        The tokenizer and image processor are not part of the model: load them with
        ``PromptPARProcessor.from_pretrained`` (the same folder).
        """
        if model_args:
            raise TypeError(f"PromptPARModel.from_pretrained takes no positional arguments after the model, got "
                            f"{len(model_args)}; pass settings by name.")
        if "torch_dtype" in kwargs:
            if dtype is not None:
                raise TypeError("Give dtype or torch_dtype (its older name), not both.")
            dtype = kwargs.pop("torch_dtype")
        dtype = loading.resolve_dtype(dtype)
        device = loading.resolve_device_map(device_map, device)
        hub_extra = loading.pop_loading_arguments(kwargs)  # AutoModel / pipeline() ones, honoured or refused
        if kwargs:
            raise TypeError(f"PromptPARModel.from_pretrained got unexpected arguments: {sorted(kwargs)}")
        hub = dict(cache_dir=cache_dir, token=token, local_files_only=local_files_only)
        model_dir = loading.resolve_model_dir(pretrained_model_name_or_path, revision=revision, subfolder=subfolder,
                                              **hub, **hub_extra)
        config = read_config(model_dir) if config is None else copy.deepcopy(config)
        cls._check_complete(config, model_dir)
        config.sentences = resolve_sentences(config.attributes, config.sentences, config.dataset)
        config.clip_name_or_path = loading.resolve_reference(config.clip_name_or_path, model_dir)
        config.fusion_name_or_path = loading.resolve_reference(config.fusion_name_or_path, model_dir)
        base_kwargs = dict(hub, **hub_extra)  # force_download and proxies apply to the bases too
        if attn_implementation is not None:
            base_kwargs["attn_implementation"] = attn_implementation

        # The cheap checks first: a broken folder fails before any base is loaded.
        cls._check_one_save(model_dir)
        if config.sentence_token_ids is None:  # saved before the ids were recorded: tokenize as then
            cls._tokenize_legacy(config, model_dir, clip_name_or_path, hub)
        head_state = read_safetensors(model_dir / HEAD_FILE, "PromptPAR head")
        _check_values("PromptPAR head", model_dir / HEAD_FILE, head_state)
        adapter_state = read_safetensors(model_dir / ADAPTER_FILE, "CLIP prompt adapter")
        _check_values("CLIP prompt adapter", model_dir / ADAPTER_FILE, adapter_state)
        bundled_fusion = config.fusion_layers > 0 and any(k.startswith(FUSION_LAYERS_PREFIX) for k in head_state)
        if bundled_fusion:
            cls._check_bundled_fusion(config, model_dir / HEAD_FILE, head_state)

        clip = cls._load_clip(config, model_dir, clip_name_or_path, base_kwargs)
        fusion_vit = None
        if config.fusion_layers > 0 and not bundled_fusion:
            fusion_vit = cls._load_fusion(config, model_dir, fusion_name_or_path, base_kwargs)

        model = cls(config, clip_model=clip, fusion_vit=fusion_vit)
        del fusion_vit
        _check_tensors("CLIP prompt adapter", model_dir / ADAPTER_FILE, adapter_state, model._adapter_state())
        set_peft_model_state_dict(model.peft_clip, adapter_state, adapter_name=model.peft_clip.active_adapter)
        expected_head = {k: v for k, v in model.state_dict().items() if not k.startswith(CLIP_STATE_PREFIX)
                         and (k in head_state or not k.startswith(FUSION_LAYERS_PREFIX))}
        _check_tensors("PromptPAR head", model_dir / HEAD_FILE, head_state, expected_head)
        model.load_state_dict(head_state, strict=False)
        model._check_base_fingerprints(model_dir, clip_name_or_path, fusion_name_or_path)
        model.freeze_backbones()
        if dtype is not None:
            model.to(dtype)
        if device is not None:
            model.to(device)
        return model.eval()

    @staticmethod
    def _tokenize_legacy(config, model_dir: Path, clip_override: Optional[str], hub: dict) -> None:
        """``config.sentence_token_ids`` of a model saved before they were recorded: the
        sentences tokenized by the tokenizer saved with it, else its CLIP base's."""
        from .processing_promptpar import PromptPARProcessor, sentence_token_ids

        # the tokenizer alone: the image processor plays no part in the ids (and a broken one
        # must not keep the model from loading)
        tokenizer = PromptPARProcessor.load_tokenizer(model_dir, clip_name_or_path=clip_override, **hub)
        config.sentence_token_ids = sentence_token_ids(tokenizer, config.sentences)
        config.check()

    @staticmethod
    def _check_complete(config, model_dir: Path) -> None:
        for field, what in (("clip_config", "CLIP"), ("fusion_config", "fusion ViT")):
            if getattr(config, field) is None:
                raise ValueError(
                    f"{model_dir / CONFIG_FILE} has no {field} (the {what} architecture): the file is incomplete. "
                    "Download or save the model again."
                )

    @staticmethod
    def _check_one_save(model_dir: Path) -> None:
        """Every tensor file must come from the save that wrote config.json."""
        has_config, save_id = _folder_save_id(model_dir)
        if not has_config:
            return  # an explicit config for a folder without one: nothing to compare with
        for name in (HEAD_FILE, ADAPTER_FILE, CLIP_BASE_FILE):
            if name == CLIP_BASE_FILE and not (model_dir / name).is_file():
                continue
            found = read_safetensors_header(model_dir / name, name).metadata.get(SAVE_ID_KEY)
            if found != save_id:
                raise ValueError(
                    f"{model_dir} mixes files of different saves: {name} was written by "
                    f"{'save ' + found if found else 'an older save'}, config.json by "
                    f"{'save ' + save_id if save_id else 'an older save'}. A save into this folder was interrupted "
                    "or is still running: wait for it to end, or save (or download) the model again."
                )

    @staticmethod
    def _check_bundled_fusion(config, path: Path, head_state: dict[str, torch.Tensor]) -> None:
        """The fusion layers in the head file must be those the config describes, checked
        on the meta device before the real layers are allocated."""
        from .fusion import MMFormer

        count = _layer_count(head_state, FUSION_LAYERS_PREFIX)
        if count != config.fusion_layers:
            raise ValueError(f"{path} bundles {count} fusion layers, but config.json says fusion_layers="
                             f"{config.fusion_layers}; the files do not belong together. Download or save the model again.")
        with torch.device("meta"):
            skeleton = MMFormer(config.get_fusion_config(), config.fusion_layers)
        expected = {f"fusion.{name}": t for name, t in skeleton.state_dict().items()}
        found = {name: t for name, t in head_state.items()
                 if name in expected or name.startswith(FUSION_LAYERS_PREFIX)}
        _check_tensors("bundled fusion layers", path, found, expected)

    @staticmethod
    def _load_clip(config, model_dir: Path, override: Optional[str], base_kwargs: dict) -> CLIPModel:
        bundled = model_dir / CLIP_BASE_FILE
        if bundled.is_file() and override is None:
            return PromptPARSerializationMixin._load_bundled_clip(config, bundled)
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
    def _load_bundled_clip(config, path: Path) -> CLIPModel:
        """The CLIP of ``clip_base.safetensors``; its layer counts and shapes are checked
        against the config from the file header before anything is allocated."""
        header = read_safetensors_header(path, "bundled CLIP")
        clip_config = config.get_clip_config()
        for tower, tower_config in (("vision_model", clip_config.vision_config), ("text_model", clip_config.text_config)):
            count = _layer_count(header.shapes, f"{tower}.encoder.layers.")
            if count != tower_config.num_hidden_layers:
                raise ValueError(
                    f"{path} holds {count} {tower.split('_')[0]} layers, but config.json describes "
                    f"{tower_config.num_hidden_layers}; the files do not belong together. Download or save the model again."
                )
        with torch.device("meta"):
            skeleton = CLIPModel(clip_config)
        _check_tensors("bundled CLIP", path, header.shapes, skeleton.state_dict())
        del skeleton
        state = read_safetensors(path, "bundled CLIP")
        _check_values("bundled CLIP", path, state)
        clip = CLIPModel(clip_config)
        clip.load_state_dict(state)
        return clip.requires_grad_(False)

    @staticmethod
    def _load_fusion(config, model_dir: Path, override: Optional[str], base_kwargs: dict):
        from .fusion import vit_layers

        reference = override or config.fusion_name_or_path
        if reference is None:
            raise ValueError(f"{model_dir} names no fusion ViT and bundles no fusion layers; pass fusion_name_or_path.")
        revision = None if override else config.fusion_revision
        vit = loading.load_fusion_vit(reference, revision, model_dir, **base_kwargs)
        loading.check_same_backbone("fusion ViT", loading.fusion_signature(config.fusion_config),
                                    loading.fusion_signature(vit.config), reference, config.fusion_name_or_path)
        if config.fusion_layers > len(vit_layers(vit)):
            raise ValueError(
                f"config.json asks for fusion_layers={config.fusion_layers}, but the fusion ViT {reference!r} has "
                f"only {len(vit_layers(vit))} layers; the model was saved for another fusion ViT."
            )
        return vit

    def _check_base_fingerprints(self, model_dir: Path, clip_override: Optional[str],
                                 fusion_override: Optional[str]) -> None:
        """The frozen bases must be the ones the model was saved with (models saved before
        fingerprints were recorded are not checked)."""
        recorded = self.config.base_fingerprints or {}
        bundled = (model_dir / CLIP_BASE_FILE).is_file() and clip_override is None
        if "clip" in recorded:
            reference = f"{CLIP_BASE_FILE} in {model_dir}" if bundled else clip_override or self.config.clip_name_or_path
            loading.check_fingerprint("CLIP", recorded["clip"], plain_clip_state_dict(self.clip_model).values(),
                                      reference, "clip_name_or_path")
        if "fusion" in recorded and self.config.fusion_layers > 0:
            reference = fusion_override or self.config.fusion_name_or_path
            loading.check_fingerprint("fusion ViT", recorded["fusion"], self.fusion.layers.state_dict().values(),
                                      reference, "fusion_name_or_path")

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
        processor=None,
        **config_kwargs: Any,
    ):
        """A new, untrained PromptPAR model on pretrained backbones, ready to train.

        ``fusion_name_or_path`` defaults to the paper's ``google/vit-base-patch16-224``;
        pass ``fusion_name_or_path=None`` together with ``fusion_config`` for a random
        fusion layer. ``config_kwargs`` go to :class:`PromptPARConfig` (sentences,
        dataset, region-prompt settings, ...).

        The sentences are tokenized with the tokenizer of ``processor`` (a
        :class:`PromptPARProcessor`), by default the CLIP's own; the model keeps their
        token ids (``config.sentence_token_ids``). The processor to use with the model
        is ``PromptPARProcessor.from_pretrained(clip_name_or_path)``.
        """
        from .configuration import PAPER_FUSION_CHECKPOINT, PromptPARConfig
        from .processing_promptpar import PromptPARProcessor, sentence_token_ids

        if fusion_name_or_path is None and "fusion_config" not in config_kwargs:
            fusion_name_or_path = PAPER_FUSION_CHECKPOINT
        hub = dict(cache_dir=cache_dir, token=token, local_files_only=local_files_only)
        # The tokenizer first: it is quick to load, and a missing one should not wait for the CLIP weights.
        tokenizer = processor.tokenizer if processor is not None else PromptPARProcessor.load_tokenizer(
            clip_name_or_path, revision=clip_revision, **hub)
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
        config.sentences = resolve_sentences(config.attributes, config.sentences, config.dataset)
        config.sentence_token_ids = sentence_token_ids(tokenizer, config.sentences)
        config.check()  # the sentences' lengths against the text positions, the ids against the vocabulary
        return cls(config, clip_model=clip, fusion_vit=vit if config.fusion_layers > 0 else None)
