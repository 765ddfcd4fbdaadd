"""Resolving and loading what a PromptPAR model refers to, with errors that say how to fix them.

A saved PromptPAR model names its frozen bases (a CLIP and a ViT) by reference: a Hub
id or a local directory. Loading resolves the model's own folder first (a directory,
or a Hub repository through ``huggingface_hub``, which also serves the local cache when
offline), then each base.

A local base given as a relative path is stored relative to the model folder (an
absolute one stays absolute), and resolved against the model folder at load, never
against the working directory (:func:`reference_for_folder`, :func:`resolve_reference`).
The frozen weights themselves are identified by a short fingerprint
(:func:`weights_fingerprint`), recorded at save time and checked at load.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional, Union

import torch
from transformers import CLIPConfig, CLIPModel, ViTConfig, ViTModel

from ..quiet import quiet_libraries


class MissingBaseModelError(OSError):
    """A base checkpoint named by a PromptPAR model cannot be found or read."""


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "0").upper() in {"1", "ON", "YES", "TRUE"}


def _where_searched(local_files_only: bool) -> str:
    if _offline() or local_files_only:
        return " Only the local Hugging Face cache was searched (offline mode or local_files_only=True)."
    return ""


def _check_subfolder(subfolder: str) -> str:
    """``subfolder`` as a relative POSIX path inside the model folder ("" for none)."""
    if not isinstance(subfolder, str):
        raise TypeError(f"subfolder must be a string (a folder inside the model's), got {type(subfolder).__name__}.")
    parts = [part for part in subfolder.replace("\\", "/").split("/") if part not in ("", ".")]
    if os.path.isabs(subfolder) or ".." in parts:
        raise ValueError(f"subfolder must be a relative path inside the model folder, got {subfolder!r}.")
    return "/".join(parts)


def check_not_a_missing_path(name: str) -> None:
    """FileNotFoundError when ``name`` is written as a local path (``./m``, ``/abs``, ``~/m``,
    ``a/b/c``, a Windows separator) that does not exist: it cannot be a Hub repository id
    (``org/name``), so the Hub is not asked and the message says what is missing."""
    if Path(name).exists():
        return
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep in name.replace("/", "") or "\\" in name:
        raise FileNotFoundError(f"There is no directory {name}, and it is not a Hub repository id.")


def resolve_model_dir(
    name_or_path: Union[str, os.PathLike],
    revision: Optional[str] = None,
    cache_dir: Optional[str] = None,
    token: Union[None, bool, str] = None,
    local_files_only: bool = False,
    subfolder: str = "",
    force_download: bool = False,
    proxies: Optional[dict] = None,
) -> Path:
    """A local directory holding the model files: ``name_or_path`` itself if it is a
    directory, else the snapshot of the Hub repository of that id (downloaded or cached);
    with ``subfolder``, that folder inside it (only its files are downloaded)."""
    subfolder = _check_subfolder(subfolder)
    path = Path(name_or_path)
    if path.is_dir():
        return _inside(path, subfolder, str(name_or_path))
    if path.exists():
        raise NotADirectoryError(f"{path} is a file; a PromptPAR model is a directory (or a Hub repository id).")
    name = str(name_or_path)
    check_not_a_missing_path(name)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        snapshot = Path(
            snapshot_download(
                name, revision=revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only,
                allow_patterns=f"{subfolder}/*" if subfolder else None, force_download=force_download,
                **({"proxies": proxies} if proxies else {}),
            )
        )
    except HFValidationError as error:
        raise FileNotFoundError(f"There is no directory {name}, and it is not a valid Hub repository id.") from error
    except Exception as error:  # huggingface_hub raises several error types for "not available"
        raise FileNotFoundError(
            f"Could not find the PromptPAR model {name!r} (revision {revision or 'main'}): {error}."
            f"{_where_searched(local_files_only)} Download it once while online, or pass a local directory."
        ) from error
    return _inside(snapshot, subfolder, f"{name} (revision {revision or 'main'})")


def _inside(folder: Path, subfolder: str, named: str) -> Path:
    if not subfolder:
        return folder
    inner = folder / subfolder
    if not inner.is_dir():
        raise FileNotFoundError(f"{named} has no subfolder {subfolder!r}; give the folder that holds the model's "
                                "config.json, or no subfolder.")
    return inner


# -------------------------------------------------------------- loading arguments
def resolve_dtype(dtype: Any) -> Optional[torch.dtype]:
    """``dtype`` (or ``torch_dtype``) of ``from_pretrained`` as a floating torch dtype,
    None for the saved precision (None or ``"auto"``); ValueError otherwise."""
    if dtype is None or (isinstance(dtype, str) and dtype == "auto"):
        return None
    value = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch dtype (torch.float32, torch.float16, torch.bfloat16, "
                         f"or its name) or 'auto', got {dtype!r}.")
    return value


def resolve_device_map(device_map: Any, device: Any = None) -> Optional[torch.device]:
    """The one device ``from_pretrained`` loads onto, from ``device_map`` or ``device``.

    PromptPAR is one small model on one device: ``"auto"`` is the first GPU if there is
    one, else the CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"``, an index ``N`` (a GPU), a
    ``torch.device`` or ``{"": device}`` name it. A per-module map, ``"balanced"`` or
    ``"sequential"`` would split the model, which it is not: ValueError.
    """
    if device_map is not None and device is not None:
        raise ValueError("Give device_map or device, not both.")
    value = device if device_map is None else device_map
    if value is None:
        return None
    what = "device" if device_map is None else "device_map"
    if isinstance(value, dict):
        if set(value) != {""}:
            raise ValueError(
                f"device_map={_short(value)} places modules on different devices; a PromptPAR model loads onto one "
                "device: give device_map='auto', a device ('cpu', 'cuda', 'cuda:N', a torch.device) or {'': device}."
            )
        value = value[""]
    if isinstance(value, str) and value == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")
    if isinstance(value, int) and not isinstance(value, bool):
        value = torch.device("cuda", value) if value >= 0 else value
    try:
        target = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"{what}={_short(value)} is not supported: a PromptPAR model loads onto one device, so give 'auto', a "
            "device ('cpu', 'cuda', 'cuda:N', an index N, a torch.device) or {'': device}."
        ) from None
    _check_device_available(target, what)
    return target


def _short(value: Any) -> str:
    return repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."


def _check_device_available(device: torch.device, what: str) -> None:
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{what}={str(device)!r} asks for a GPU, but CUDA is not available here; use 'cpu' "
                             "(or 'auto', which takes a GPU when there is one).")
        if device.index is not None and device.index >= count:
            raise ValueError(f"{what}={str(device)!r}: this machine has {count} CUDA device(s), cuda:0 to "
                             f"cuda:{count - 1}.")
    elif device.type == "meta":
        raise ValueError(f"{what}='meta' holds no weights; load onto a real device ('cpu', 'cuda').")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{what}={str(device)!r}: Apple's MPS is not available here; use 'cpu'.")
    elif device.type != "cpu":
        backend = getattr(torch, device.type, None)
        available = getattr(backend, "is_available", None)
        if not callable(available) or not available():
            raise ValueError(f"{what}={str(device)!r}: {device.type} is not available here; use 'cpu'.")


#: Arguments AutoModel and pipeline() pass along that change nothing for PromptPAR: its
#: code is in the package (no remote code), it reads safetensors only, never a pickle
#: (so weights_only holds whatever it says), and it allocates each weight once.
_MEANINGLESS = ("trust_remote_code", "code_revision", "low_cpu_mem_usage", "weights_only")


def pop_loading_arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take out of ``kwargs`` the loading arguments of transformers' ``from_pretrained``
    that PromptPAR honours (returned, for the download: ``force_download``, ``proxies``)
    or that mean nothing for it (internal ``_`` ones, ``trust_remote_code``,
    ``use_safetensors=True``, AutoModel's ``adapter_kwargs`` for a folder without a
    top-level adapter, ...). One it cannot honour (``use_safetensors=False``,
    ``state_dict``, ``output_loading_info=True``, ...) is a ValueError."""
    for key in [key for key in kwargs if key.startswith("_")]:
        kwargs.pop(key)  # transformers' internal ones (_from_auto, _from_pipeline, _commit_hash, ...)
    for key in _MEANINGLESS:
        kwargs.pop(key, None)
    if kwargs.pop("use_safetensors", None) is False:
        raise ValueError("PromptPAR models are stored as safetensors only; use_safetensors=False cannot be honoured.")
    adapter = kwargs.pop("adapter_kwargs", None) or {}
    if "_adapter_model_path" in adapter:  # AutoModel found a PEFT adapter folder to load on top of a base
        raise ValueError("A PromptPAR model folder holds its adapter in clip_adapter/, not a PEFT adapter over a base "
                         "model; load it by its own folder.")
    for key in ("state_dict", "adapter_name", "quantization_config", "gguf_file", "tp_plan",
                "key_mapping", "variant", "offload_folder", "offload_state_dict", "max_memory"):
        if kwargs.get(key) not in (None, False, {}):
            raise ValueError(f"PromptPARModel.from_pretrained cannot honour {key}={_short(kwargs[key])}; "
                             "load the model without it.")
        kwargs.pop(key, None)
    if kwargs.pop("output_loading_info", False):
        raise ValueError("PromptPARModel.from_pretrained checks every tensor itself and refuses missing or unexpected "
                         "ones, so it has no loading info to return; drop output_loading_info=True.")
    return {key: kwargs.pop(key) for key in ("force_download", "proxies") if key in kwargs}


def _load_failed(kind: str, reference: str, revision: Optional[str], model_dir: Optional[Path], error,
                 local_files_only: bool, override: str) -> MissingBaseModelError:
    named_in = f" named in {model_dir / 'config.json'}" if model_dir is not None else ""
    return MissingBaseModelError(
        f"The {kind} base {reference!r} (revision {revision or 'main'}){named_in} could not be loaded: {error}."
        f"{_where_searched(local_files_only)} To fix it, download it once while online "
        f"(`hf download {reference}`), or pass {override}='/path/to/a/local/copy' to from_pretrained."
    )


def load_backbone_config(config_class, kind: str, reference: str, revision: Optional[str] = None, **hub: Any):
    """The config of a backbone checkpoint (no weights read)."""
    try:
        return config_class.from_pretrained(reference, revision=revision, **hub)
    except (OSError, ValueError) as error:
        override = "clip_name_or_path" if config_class is CLIPConfig else "fusion_name_or_path"
        raise _load_failed(kind, reference, revision, None, error, hub.get("local_files_only", False),
                           override) from error


def _load_frozen(model_class, kind: str, override: str, reference: str, revision: Optional[str],
                 model_dir: Optional[Path], **kwargs: Any):
    """``model_class.from_pretrained`` (safetensors only), every weight frozen; errors say how to fix them.

    The weights load in float32 whatever precision the checkpoint stores (transformers keeps
    a float16 checkpoint in float16): the prompts and heads are float32, and the whole
    model is cast at once when a dtype is asked for."""
    kwargs.setdefault("dtype", torch.float32)
    try:
        model = model_class.from_pretrained(reference, revision=revision, use_safetensors=True, **kwargs)
    except (OSError, ValueError) as error:
        raise _load_failed(kind, reference, revision, model_dir, error, kwargs.get("local_files_only", False),
                           override) from error
    return model.requires_grad_(False)  # from_pretrained leaves loaded weights trainable


def load_clip(reference: str, revision: Optional[str], model_dir: Optional[Path] = None, **kwargs: Any) -> CLIPModel:
    """A pretrained CLIPModel from safetensors weights, every weight frozen."""
    return _load_frozen(CLIPModel, "CLIP", "clip_name_or_path", reference, revision, model_dir, **kwargs)


def load_fusion_vit(reference: str, revision: Optional[str], model_dir: Optional[Path] = None, **kwargs: Any) -> ViTModel:
    """The pretrained ViT whose last layers initialise the MM-Former (safetensors only), frozen."""
    with quiet_libraries("transformers"):  # the classifier of a ViT checkpoint is unused by design
        return _load_frozen(ViTModel, "fusion ViT", "fusion_name_or_path", reference, revision, model_dir,
                            add_pooling_layer=False, **kwargs)


def clip_signature(config: Union[CLIPConfig, dict]) -> dict[str, int]:
    """The CLIP sizes an adapter depends on."""
    config = config if isinstance(config, dict) else config.to_dict()
    vision, text = config["vision_config"], config["text_config"]
    return {
        "vision width": vision["hidden_size"], "vision layers": vision["num_hidden_layers"],
        "patch size": vision["patch_size"], "image size": vision["image_size"],
        "text width": text["hidden_size"], "text layers": text["num_hidden_layers"],
        "projection": config["projection_dim"],
    }


def fusion_signature(config: Union[ViTConfig, dict]) -> dict[str, int]:
    config = config if isinstance(config, dict) else config.to_dict()
    return {"width": config["hidden_size"], "heads": config["num_attention_heads"],
            "MLP width": config["intermediate_size"]}


def check_same_backbone(kind: str, expected: dict, found: dict, reference: str, saved_reference: Optional[str]) -> None:
    """Raise if a base does not have the sizes the adapter was trained with."""
    if expected == found:
        return
    differences = ", ".join(f"{key} {expected[key]} vs {found.get(key)}" for key in expected if expected[key] != found.get(key))
    raise ValueError(
        f"This PromptPAR adapter was saved for a different {kind} than {reference!r} (adapter vs base: {differences}). "
        f"Load the base it was trained on (config.json names {saved_reference!r})."
    )


# ------------------------------------------------------------------ base references
def _is_local_path(reference: str) -> bool:
    """Whether a reference is written as a file-system path rather than a Hub id."""
    return os.path.isabs(reference) or reference.startswith(("./", "../", "~", ".\\", "..\\")) or reference in (".", "..")


def is_local_reference(reference: Optional[str]) -> bool:
    """Whether a base reference (as given in this process) names a local directory."""
    return reference is not None and (_is_local_path(reference) or Path(reference).is_dir())


def reference_for_folder(reference: Optional[str], folder: Union[str, os.PathLike]) -> Optional[str]:
    """How ``save_pretrained`` writes a base reference into ``folder/config.json``.

    A local directory given as a relative path (relative to the working directory) is
    rewritten relative to ``folder`` (``./...`` or ``../...``), so that the model loads the
    same base from any working directory; absolute paths and Hub ids are kept.
    """
    if reference is None or os.path.isabs(os.path.expanduser(reference)):
        return None if reference is None else os.path.expanduser(reference)
    if not is_local_reference(reference):
        return reference  # a Hub id
    try:
        relative = os.path.relpath(os.path.abspath(reference), os.path.abspath(folder))
    except ValueError:  # another drive (Windows): only an absolute path can name it
        return os.path.abspath(reference)
    relative = relative.replace(os.sep, "/")
    return relative if relative.startswith("../") or relative == ".." else f"./{relative}"


def resolve_reference(reference: Optional[str], model_dir: Path) -> Optional[str]:
    """A base reference from ``model_dir/config.json`` as something ``from_pretrained`` can
    take: relative paths are taken relative to the model folder (absolute result), Hub
    ids are kept. A bare ``name`` or ``org/name`` is a Hub id unless the model folder
    holds a directory of that name (models saved before references were rewritten)."""
    if reference is None:
        return None
    if _is_local_path(reference):
        return str((model_dir / os.path.expanduser(reference)).resolve())
    local = model_dir / reference
    return str(local.resolve()) if local.is_dir() else reference


# --------------------------------------------------------------------- fingerprints
FINGERPRINT_SAMPLES = 64
_ROUNDING = {"fp16": torch.float16, "bf16": torch.bfloat16}


def weights_fingerprint(tensors: Iterable[torch.Tensor], precision: Optional[str] = None) -> str:
    """A short fingerprint of frozen weights, e.g. ``"fp16:3f2a9c0e5b7d1184"``.

    Each floating-point tensor contributes its shape and up to ``FINGERPRINT_SAMPLES``
    evenly spaced values, rounded to ``precision`` ("fp16" or "bf16"; default: "bf16" if
    the weights are bf16, else "fp16"). Rounding makes the fingerprint the same for a
    base held in fp32 and the same base stored in (and upcast from) that half precision;
    the order and names of the tensors do not matter. Cheap: a few thousand values for a
    430M-parameter CLIP.
    """
    tensors = [t.detach() for t in tensors if t.is_floating_point()]
    if precision is None:
        precision = "bf16" if any(t.dtype == torch.bfloat16 for t in tensors) else "fp16"
    dtype = _ROUNDING[precision]
    digests = []
    for tensor in tensors:
        flat = tensor.reshape(-1)
        if flat.numel() > FINGERPRINT_SAMPLES:
            index = torch.linspace(0, flat.numel() - 1, FINGERPRINT_SAMPLES, dtype=torch.float64).round().long()
            flat = flat[index.to(flat.device)]
        values = flat.to(device="cpu", dtype=dtype).view(torch.int16).numpy().tobytes()
        digests.append(hashlib.sha256(repr(tuple(tensor.shape)).encode() + values).digest())
    return f"{precision}:{hashlib.sha256(b''.join(sorted(digests))).hexdigest()[:16]}"


def check_fingerprint(kind: str, recorded: str, tensors: Iterable[torch.Tensor], reference: Optional[str],
                      override: str) -> None:
    """Raise if frozen weights do not have the fingerprint recorded when the model was saved."""
    precision = recorded.split(":", 1)[0]
    found = weights_fingerprint(tensors, precision)
    if found != recorded:
        raise ValueError(
            f"The {kind} base {reference!r} does not hold the weights this model was trained on (fingerprint "
            f"{found}, config.json records {recorded}): same shapes, different values, e.g. another checkpoint or "
            f"revision. Load the base the model was saved with (pass {override}='/path/to/it' to from_pretrained), "
            "or save the model with bundle_base_weights=True."
        )
