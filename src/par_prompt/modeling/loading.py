"""Resolving and loading what a PromptPAR model refers to, with errors that say how to fix them.

A saved PromptPAR model names its frozen bases (a CLIP and a ViT) by reference: a Hub
id or a local directory. Loading resolves the model's own folder first (a directory,
or a Hub repository through ``huggingface_hub``, which also serves the local cache when
offline), then each base.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional, Union

from transformers import CLIPConfig, CLIPModel, ViTConfig, ViTModel

class MissingBaseModelError(OSError):
    """A base checkpoint named by a PromptPAR model cannot be found or read."""


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "0").upper() in {"1", "ON", "YES", "TRUE"}


def _where_searched(local_files_only: bool) -> str:
    if _offline() or local_files_only:
        return " Only the local Hugging Face cache was searched (offline mode or local_files_only=True)."
    return ""


def resolve_model_dir(
    name_or_path: Union[str, os.PathLike],
    revision: Optional[str] = None,
    cache_dir: Optional[str] = None,
    token: Union[None, bool, str] = None,
    local_files_only: bool = False,
) -> Path:
    """A local directory holding the model files: ``name_or_path`` itself if it is a
    directory, else the snapshot of the Hub repository of that id (downloaded or cached)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.exists():
        raise NotADirectoryError(f"{path} is a file; a PromptPAR model is a directory (or a Hub repository id).")
    name = str(name_or_path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep in name.replace("/", ""):
        raise FileNotFoundError(f"There is no directory {name}, and it is not a Hub repository id.")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(
            snapshot_download(
                name, revision=revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only
            )
        )
    except HFValidationError as error:
        raise FileNotFoundError(f"There is no directory {name}, and it is not a valid Hub repository id.") from error
    except Exception as error:  # huggingface_hub raises several error types for "not available"
        raise FileNotFoundError(
            f"Could not find the PromptPAR model {name!r} (revision {revision or 'main'}): {error}."
            f"{_where_searched(local_files_only)} Download it once while online, or pass a local directory."
        ) from error


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
    """``model_class.from_pretrained`` (safetensors only), every weight frozen; errors say how to fix them."""
    try:
        model = model_class.from_pretrained(reference, revision=revision, use_safetensors=True, **kwargs)
    except (OSError, ValueError) as error:
        raise _load_failed(kind, reference, revision, model_dir, error, kwargs.get("local_files_only", False),
                           override) from error
    return model.requires_grad_(False)  # from_pretrained leaves loaded weights trainable


def load_clip(reference: str, revision: Optional[str], model_dir: Optional[Path] = None, **kwargs: Any) -> CLIPModel:
    """A pretrained CLIPModel from safetensors weights, every weight frozen."""
    return _load_frozen(CLIPModel, "CLIP", "clip_name_or_path", reference, revision, model_dir, **kwargs)


@contextmanager
def _quiet_transformers_warnings():
    """Silence transformers' load report while a ViT classifier checkpoint is read as a
    ViTModel: its classifier weights are unused by design, not a problem to report."""
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def load_fusion_vit(reference: str, revision: Optional[str], model_dir: Optional[Path] = None, **kwargs: Any) -> ViTModel:
    """The pretrained ViT whose last layers initialise the MM-Former (safetensors only), frozen."""
    with _quiet_transformers_warnings():
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
