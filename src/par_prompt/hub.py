"""Sharing PromptPAR models on the Hugging Face Hub: the upload and the model card.

A saved PromptPAR model is a small folder (see
:mod:`par_prompt.saved_files`): the adapter and head weights, ``config.json``, the
processor's tokenizer and image-processor files. Uploading it means uploading that folder and
nothing else -- never the frozen base weights (they are named by reference) and never
training leftovers that happen to sit next to it (checkpoints, optimizer states, logs).

- :func:`push_to_hub` uploads a saved folder (``HfApi.create_repo`` + ``upload_folder``).
- :func:`upload_model_folder` is what ``PromptPARModel.save_pretrained(dir,
  push_to_hub=True, repo_id=...)`` calls (:func:`check_upload_arguments` checks its
  arguments).
- :func:`push_model_to_hub` saves a model to a temporary folder, writes its card and
  uploads it: the body of ``PromptPARModel.push_to_hub``.
- :func:`render_model_card` / :func:`write_model_card` render the packaged Jinja template
  ``par_prompt/model_cards/promptpar.md`` with ``huggingface_hub.ModelCard.from_template``
  (see ``model_cards/README.md`` at the top of the repository); :func:`public_name` and
  :func:`public_text` keep local paths and tokens out of it.

Nothing here touches the network at import time.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Optional, Union

from .fileio import write_text_atomic
from .saved_files import (
    ADAPTER_CONFIG_FILE,
    ADAPTER_DIR,
    ADAPTER_FILE,
    PREPROCESSOR_FILE,
    PROCESSOR_FILE,
    FOLDER_FILES,
    OPTIONAL_WEIGHT_FILES,
    REQUIRED_FILES,
    WEIGHT_FILES,
)

logger = logging.getLogger(__name__)

__all__ = [
    "HubAccessError",
    "NotAPromptPARFolderError",
    "check_model_folder",
    "check_push_access",
    "check_upload_arguments",
    "model_files",
    "push_model_to_hub",
    "public_name",
    "public_text",
    "push_to_hub",
    "render_model_card",
    "upload_model_folder",
    "write_model_card",
]

PathLike = Union[str, os.PathLike]

MODEL_TYPE = "prompt_par"
#: Files of Trainer-style checkpoints that are never part of a model.
TRAINING_STATE_FILES = ("trainer_state.json",)
CARD_FILE = "README.md"
TEMPLATE = "model_cards/promptpar.md"

TAGS = ("pedestrian-attribute-recognition", "promptpar", "clip", "peft", "prompt-tuning", "multi-label-classification")
LIBRARY_NAME = "par-prompt"
#: What ``pipeline("image-classification", model=...)`` does with a saved model.
PIPELINE_TAG = "image-classification"
TASK_NAME = "Pedestrian Attribute Recognition"
#: The adapter and head are trained on top of the frozen backbones named in ``base_model``.
BASE_MODEL_RELATION = "adapter"
#: The licence of weights trained with par-prompt: the project's own (``ModelCardData`` fields).
PROJECT_LICENSE: Mapping[str, str] = {"license": "apache-2.0"}
#: (metric type in the model-index, key in ParMetrics.as_dict(), display name, column in the card)
CARD_METRICS = (
    ("mA", "mA", "mA (label-based)", "mA"),
    ("accuracy", "accuracy", "Accuracy (instance-based)", "Acc"),
    ("precision", "precision", "Precision (instance-based)", "Prec"),
    ("recall", "recall", "Recall (instance-based)", "Rec"),
    ("f1", "f1", "F1 (instance-based)", "F1"),
)
#: config.json entries shown under "Model settings".
MODEL_SETTINGS = ("num_regions", "overlap_rows", "prompts_per_group", "vision_depth", "text_prompts", "text_depth",
                  "text_prompt_per_sentence", "fusion_layers", "gl_alpha", "gl_threshold")
#: training_args keys never written to a card (credentials).
SECRET_WORDS = ("token", "password", "secret", "api_key", "credential")
#: Arguments of transformers' saving API that mean nothing for an upload of PromptPAR files.
IGNORED_SAVE_ARGUMENTS = ("safe_serialization", "max_shard_size", "variant")


class NotAPromptPARFolderError(ValueError):
    """A folder that is not a saved PromptPAR model; the message says what is missing."""


class HubAccessError(PermissionError):
    """The Hub cannot be written as asked (no login, read-only token, no access to the
    namespace, repository not creatable); the message says which and how to fix it."""


# ----------------------------------------------------------------------- folders


def check_model_folder(folder: PathLike) -> Path:
    """``folder`` as a ``Path`` if it holds a saved PromptPAR model, else
    :class:`NotAPromptPARFolderError` naming what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotAPromptPARFolderError(f"{folder} is not a directory; save the model with model.save_pretrained first.")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise NotAPromptPARFolderError(
            f"{folder} is not a saved PromptPAR model: it lacks {', '.join(missing)}. Upload the folder written by "
            "PromptPARModel.save_pretrained (e.g. the training run's exported best adapter), not a checkpoint or "
            "output directory."
        )
    config = _read_config(folder)
    if config.get("model_type") != MODEL_TYPE:
        raise NotAPromptPARFolderError(
            f"{folder / 'config.json'} has model_type {config.get('model_type')!r}, not {MODEL_TYPE!r}; "
            "this is not a PromptPAR model."
        )
    return folder


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NotAPromptPARFolderError(f"cannot read {path}: {error}") from error
    if not isinstance(config, dict):
        raise NotAPromptPARFolderError(f"{path} does not hold a JSON object.")
    return config


def _is_model_file(relative: Path) -> bool:
    """Whether a file (path relative to the folder) belongs to a saved model."""
    parts = relative.parts
    if any(part.startswith(".") for part in parts):
        return False
    if len(parts) == 2 and parts[0] == ADAPTER_DIR:
        return relative.as_posix() in (ADAPTER_CONFIG_FILE, ADAPTER_FILE)  # not an optimizer state saved beside
    if len(parts) != 1:
        return False  # other sub-folders: checkpoints, logs, runs
    name = relative.name
    if name in TRAINING_STATE_FILES:
        return False
    if relative.suffix == ".safetensors":
        return name in WEIGHT_FILES
    return name in FOLDER_FILES or name == CARD_FILE  # save_pretrained leaves other files in the folder


def _link_stays(path: Path, folder: Path) -> bool:
    """False for a symbolic link that leads out of ``folder`` (``vocab.json -> /etc/...``
    would upload that file), except into the ``blobs`` of the Hub-cache repository whose
    snapshot ``folder`` is (where a downloaded model's files really are)."""
    if not path.is_symlink():
        return True
    target, root = path.resolve(), folder.resolve()
    snapshot = next((p for p in [folder.absolute(), *folder.absolute().parents] if p.parent.name == "snapshots"), None)
    blobs = snapshot.parent.parent / "blobs" if snapshot is not None else None
    return target.is_relative_to(root) or (blobs is not None and target.is_relative_to(blobs.resolve()))


def model_files(folder: PathLike) -> list[str]:
    """The files of the saved model in ``folder`` (POSIX paths relative to it, sorted):
    what :func:`push_to_hub` uploads.

    That is ``config.json``, ``clip_adapter/{adapter_config.json,
    adapter_model.safetensors}``, ``promptpar_head.safetensors``, a bundled
    ``clip_base.safetensors`` if the model was saved with one, the tokenizer and
    preprocessor ``.json`` / ``.txt`` files, and ``README.md``. Hidden files, other
    sub-folders, other weight files and pickles are left out.
    """
    folder = Path(folder)
    files = (path.relative_to(folder) for path in folder.rglob("*") if path.is_file() and _link_stays(path, folder))
    return sorted(relative.as_posix() for relative in files if _is_model_file(relative))


# ------------------------------------------------------------------------ upload


def _make_api(token: Union[None, bool, str]):
    from huggingface_hub import HfApi

    from . import __version__

    return HfApi(token=token, library_name=LIBRARY_NAME, library_version=__version__)


def push_to_hub(
    folder: PathLike,
    repo_id: str,
    *,
    token: Union[None, bool, str] = None,
    private: Optional[bool] = None,
    revision: Optional[str] = None,
    commit_message: Optional[str] = None,
    commit_description: Optional[str] = None,
    create_pr: bool = False,
    api: Any = None,
) -> str:
    """Upload the saved PromptPAR model in ``folder`` to the Hub model repo ``repo_id``.

    The repository is created if needed (``exist_ok``; ``private`` applies only then),
    as is the branch ``revision``. Exactly the files of :func:`model_files` are uploaded,
    to the root of the repository; anything else in ``folder`` is left out (and logged).
    A ``clip_base.safetensors`` already in the repository is deleted when this folder has
    none, since a stale bundled base would be loaded instead of the referenced one.
    ``api`` replaces the ``huggingface_hub.HfApi`` used (e.g. in tests).

    Returns:
        The URL of the commit (or of the pull request with ``create_pr=True``).

    Raises:
        NotAPromptPARFolderError: ``folder`` is not a saved PromptPAR model.
    """
    folder = check_model_folder(folder)
    if not isinstance(repo_id, str) or not repo_id.strip():
        raise ValueError("repo_id must be a Hub repository id such as 'your-name/promptpar-pa100k'.")
    if create_pr and revision is not None:
        raise ValueError("create_pr=True opens a pull request against the default branch; do not pass revision too.")
    files = model_files(folder)
    left_out = sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*")
        if p.is_file() and p.relative_to(folder).as_posix() not in files
    )
    if left_out:
        logger.warning("not uploading %d file(s) that are not part of the model: %s", len(left_out), left_out[:10])
    if CARD_FILE not in files:
        logger.warning("%s has no %s; the repository gets no model card (see par_prompt.hub.write_model_card)",
                       folder, CARD_FILE)
    api = api if api is not None else _make_api(token)
    repo_url = api.create_repo(repo_id, token=token, private=private, repo_type="model", exist_ok=True)
    repo_id = getattr(repo_url, "repo_id", None) or repo_id
    if revision is not None and not revision.startswith("refs/pr"):
        api.create_branch(repo_id, branch=revision, token=token, repo_type="model", exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type="model",
        revision=revision,
        token=token,
        allow_patterns=files,
        # A bundled base left on the Hub by an earlier push would be loaded instead of the reference.
        delete_patterns=[f for f in OPTIONAL_WEIGHT_FILES if f not in files] or None,
        commit_message=commit_message or "Upload PromptPAR adapter",
        commit_description=commit_description,
        create_pr=create_pr,
    )
    url = getattr(info, "pr_url", None) if create_pr else None
    return str(url or getattr(info, "commit_url", None) or info)


def check_push_access(repo_id: str, *, private: Optional[bool] = None, token: Union[None, bool, str] = None,
                      api: Any = None) -> str:
    """Check, before a long job, that ``repo_id`` can be pushed to; return its full id.

    Checks the login (``whoami``), that the token may write, that the namespace is the
    user's own or an organisation where the user may write, and creates the repository
    (``exist_ok``, as ``push_to_hub`` will), which proves it can be created or exists.
    Raises :class:`HubAccessError` with the fix. ``api`` replaces ``HfApi`` (tests).
    """
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    api = api if api is not None else _make_api(token)
    try:
        who = api.whoami(token=token)
    except LocalTokenNotFoundError:
        raise HubAccessError(f"--push-to-hub {repo_id}: you are not logged in to the Hugging Face Hub; run "
                             "`hf auth login` or set HF_TOKEN to a write token, then start again.") from None
    except HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status == 401:
            raise HubAccessError(f"--push-to-hub {repo_id}: the Hub rejects your token (invalid or expired); run "
                                 "`hf auth login` with a valid write token.") from None
        raise HubAccessError(f"--push-to-hub {repo_id}: cannot check your Hub login ({_first_line(error)}).") from None
    except Exception as error:  # network down, offline mode, proxy: nothing can be pushed later either
        raise HubAccessError(f"--push-to-hub {repo_id}: cannot reach the Hugging Face Hub to check the login "
                             f"({type(error).__name__}: {_first_line(error)}); fix the connection or drop "
                             "--push-to-hub and upload later with par_prompt.hub.push_to_hub.") from None
    if not isinstance(who, Mapping):
        raise HubAccessError(f"--push-to-hub {repo_id}: unexpected answer from the Hub's whoami ({who!r}).")
    user = who.get("name")
    access = (who.get("auth") or {}).get("accessToken") or {}
    if access.get("role") == "read":
        raise HubAccessError(f"--push-to-hub {repo_id}: your token ({access.get('displayName') or 'current'}) is "
                             "read-only; create a write token and log in with it (`hf auth login`).")
    namespace = repo_id.split("/")[0] if "/" in repo_id else user
    if namespace != user:
        roles = {org.get("name"): org.get("roleInOrg") for org in who.get("orgs") or [] if isinstance(org, Mapping)}
        if namespace not in roles:
            raise HubAccessError(f"--push-to-hub {repo_id}: you ({user}) are neither {namespace!r} nor a member of "
                                 f"an organisation of that name; push to {user}/{repo_id.split('/')[-1]} or ask "
                                 f"for access.")
        if roles[namespace] == "read":
            raise HubAccessError(f"--push-to-hub {repo_id}: your role in {namespace} is read-only; ask an admin "
                                 f"for write access or push to your own namespace.")
    try:
        url = api.create_repo(repo_id, token=token, private=private, repo_type="model", exist_ok=True)
    except HfHubHTTPError as error:
        raise HubAccessError(f"--push-to-hub {repo_id}: the repository cannot be created or written "
                             f"({_first_line(error)}).") from None
    return getattr(url, "repo_id", None) or repo_id


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


UPLOAD_ARGUMENTS = ("token", "private", "revision", "commit_message", "commit_description", "create_pr", "api")


def check_upload_arguments(**kwargs: Any) -> tuple[str, dict[str, Any]]:
    """``(repo_id, arguments for push_to_hub)`` from ``save_pretrained``'s extra kwargs.

    ``repo_id`` is required; ``token``, ``private``, ``revision``, ``commit_message``,
    ``commit_description`` and ``create_pr`` are passed on; transformers' serialization
    arguments (``safe_serialization``, ``max_shard_size``, ``variant``) are dropped;
    anything else is a ``TypeError``. Cheap: call it before saving to fail early.
    """
    repo_id = kwargs.pop("repo_id", None)
    if not repo_id:
        raise ValueError(
            "save_pretrained(..., push_to_hub=True) needs repo_id='your-name/model-name': PromptPAR does not "
            "derive the repository from the folder name. Pass repo_id, or upload later with "
            "par_prompt.hub.push_to_hub(folder, repo_id)."
        )
    for name in IGNORED_SAVE_ARGUMENTS:
        kwargs.pop(name, None)
    unknown = sorted(set(kwargs) - set(UPLOAD_ARGUMENTS))
    if unknown:
        raise TypeError(f"save_pretrained(push_to_hub=True) got unexpected arguments {unknown}; "
                        f"the upload accepts repo_id and {[a for a in UPLOAD_ARGUMENTS if a != 'api']}.")
    return repo_id, kwargs


def upload_model_folder(save_directory: PathLike, **kwargs: Any) -> str:
    """Upload a folder just written by ``save_pretrained(..., push_to_hub=True, **kwargs)``.

    ``kwargs`` are checked by :func:`check_upload_arguments` (``repo_id`` is required).
    A folder without a model card gets one (without metrics). Returns the commit URL.
    """
    repo_id, arguments = check_upload_arguments(**kwargs)
    if not (Path(save_directory) / CARD_FILE).is_file():
        write_model_card(save_directory, metrics=None, training_args=None, dataset_name=None, repo_id=repo_id)
    return push_to_hub(save_directory, repo_id, **arguments)


def push_model_to_hub(
    model: Any,
    repo_id: str,
    *,
    commit_message: Optional[str] = None,
    commit_description: Optional[str] = None,
    private: Optional[bool] = None,
    token: Union[None, bool, str] = None,
    revision: Optional[str] = None,
    create_pr: bool = False,
    tags: Optional[Sequence[str]] = None,
    metrics: Optional[Mapping[str, Any]] = None,
    training_args: Optional[Mapping[str, Any]] = None,
    dataset_name: Optional[str] = None,
    bundle_base_weights: bool = False,
    processor: Any = None,
    api: Any = None,
    **ignored: Any,
) -> str:
    """Save ``model`` (and ``processor``, its PromptPARProcessor, when given) to a temporary
    folder, write its model card there and upload it.

    The body of ``PromptPARModel.push_to_hub``: the signature takes transformers'
    ``push_to_hub`` arguments (``max_shard_size`` and ``safe_serialization`` are
    ignored), plus ``metrics`` / ``training_args`` / ``dataset_name`` for the card.
    Without ``processor`` the repository has no tokenizer or image-processor files:
    ``PromptPARProcessor.from_pretrained`` then takes them from the CLIP base, but
    ``pipeline("image-classification")`` cannot load it (a warning says so).
    Unlike transformers' version it uploads our card, not a generic one, and only the
    files of :func:`model_files`. Returns the commit URL.
    """
    unknown = sorted(set(ignored) - set(IGNORED_SAVE_ARGUMENTS))
    if unknown:
        raise TypeError(f"push_to_hub got unexpected arguments {unknown}.")
    with tempfile.TemporaryDirectory(prefix="promptpar-push-") as tmp:
        folder = Path(tmp) / "model"
        model.save_pretrained(folder, bundle_base_weights=bundle_base_weights)
        if processor is not None:
            processor.save_pretrained(folder)
        else:
            logger.warning("pushing the model without its processor: pass processor=PromptPARProcessor(...) so that "
                           "pipeline('image-classification') and AutoProcessor can load the repository")
        write_model_card(folder, metrics=metrics, training_args=training_args, dataset_name=dataset_name,
                         repo_id=repo_id, tags=tags)
        return push_to_hub(folder, repo_id, token=token, private=private, revision=revision,
                           commit_message=commit_message, commit_description=commit_description,
                           create_pr=create_pr, api=api)


# -------------------------------------------------------------------- model card

_HUB_TOKEN = re.compile(r"hf_[A-Za-z0-9]{16,}")
# A run of characters that may be a path: anything but spaces, quotes, brackets and separators.
_WORD = re.compile(r"[^\s\"'`=,;()\[\]{}<>|]+")


def _config_dict(config: Any) -> dict[str, Any]:
    if isinstance(config, Mapping):
        return dict(config)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    raise TypeError(f"config must be a PromptPARConfig or its dict, got {type(config).__name__}")


def _is_hub_id(name: Optional[str]) -> bool:
    """Whether ``name`` reads as a Hub repository id rather than a local path (one that
    exists here is a path)."""
    if not name or name.startswith((".", "/", "~")) or "\\" in name:
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    try:
        return not Path(name).exists()
    except (OSError, ValueError):  # not a usable file name, so not a local path either
        return True


def public_name(name: Optional[str]) -> Optional[str]:
    """``name`` (a Hub id, a name or a local path) as a model card may show it.

    A Hub id or a plain name is kept; a local path is reduced to its last component
    (``/home/me/data/pa100k`` -> ``pa100k``), so that no folder above it -- user names,
    mount points, the layout of the machine -- reaches the card. None for nothing.
    """
    if not name:
        return None
    name = str(name)
    if _is_hub_id(name) or not ("/" in name or "\\" in name or name.startswith("~") or re.match(r"[A-Za-z]:", name)):
        return name
    parts = [part for part in re.split(r"[\\/]+", name) if part not in ("", ".", "..") and not part.startswith("~")]
    last = parts[-1] if parts else ""
    return None if not last or re.fullmatch(r"[A-Za-z]:", last) else last


def public_text(text: str) -> str:
    """Free text (e.g. a training argument) with Hub tokens removed and every local path in
    it reduced by :func:`public_name`; works inside JSON-encoded lists and dicts too."""
    text = _HUB_TOKEN.sub("<redacted>", text)
    return _WORD.sub(lambda match: public_name(match.group()) or "<local path>", text)


def _public_value(value: Any) -> Any:
    return public_text(value) if isinstance(value, str) else value


def _cell(value: Any) -> str:
    """A value as the text of a Markdown table cell (one line, ``|`` escaped, shortened)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= 120 else text[:117] + "..."


def _checked_metrics(metrics: Mapping[str, Any]) -> dict[str, Optional[float]]:
    """The card's metrics as fractions; None for a metric the split could not score (mA
    when no attribute has both positives and negatives)."""
    values = {}
    for _, key, _, _ in CARD_METRICS:
        if key not in metrics:
            raise ValueError(
                f"metrics lacks {key!r}; pass ParMetrics.as_dict() of the test evaluation (keys "
                f"{[k for _, k, _, _ in CARD_METRICS]}), plus 'threshold'."
            )
        if metrics[key] is None:
            values[key] = None
            continue
        value = float(metrics[key])
        if math.isnan(value) or not 0.0 <= value <= 1.0:
            raise ValueError(
                f"metrics[{key!r}] = {metrics[key]} is not a fraction in [0, 1]; pass ParMetrics.as_dict() values "
                "(the card converts them to percent)."
            )
        values[key] = value
    return values


def _threshold_text(metrics: Mapping[str, Any]) -> str:
    if metrics.get("threshold_description"):
        return public_text(str(metrics["threshold_description"]))
    threshold = metrics.get("threshold")
    if isinstance(threshold, (int, float)):
        return f"global {float(threshold):.2f}"
    if isinstance(threshold, Sequence) and not isinstance(threshold, str):
        return "per-attribute"
    return "unknown"


def _base_models(config: Mapping[str, Any]) -> list[str]:
    """The Hub ids of the frozen backbones: the CLIP, and the fusion ViT when fusion layers are used."""
    names = [config.get("clip_name_or_path")]
    if config.get("fusion_layers", 1):
        names.append(config.get("fusion_name_or_path"))
    return [name for name in dict.fromkeys(names) if _is_hub_id(name)]


def _card_data(config: Mapping[str, Any], metrics: Optional[Mapping[str, Any]], dataset_id: Optional[str],
               model_name: str, tags: Sequence[str], license: Mapping[str, str]):
    from huggingface_hub import EvalResult, ModelCardData

    eval_results = None
    if metrics is not None:
        values = _checked_metrics(metrics)
        if dataset_id is None:
            raise ValueError("the model-index needs the data set the metrics were measured on; pass dataset_name.")
        split = public_text(str(metrics.get("split", "test")))
        eval_results = [
            EvalResult(
                task_type=PIPELINE_TAG, task_name=TASK_NAME, dataset_type=dataset_id, dataset_name=dataset_id,
                dataset_split=split, metric_type=metric_type, metric_name=display,
                metric_value=round(100 * values[key], 2), metric_args={"threshold": _threshold_text(metrics)},
            )
            for metric_type, key, display, _ in CARD_METRICS
            if values[key] is not None  # a metric the split could not score is left out, not written as null
        ] or None
    base_models = _base_models(config)
    return ModelCardData(
        **license,
        library_name=LIBRARY_NAME,
        pipeline_tag=PIPELINE_TAG,
        base_model=base_models or None,
        base_model_relation=BASE_MODEL_RELATION if base_models else None,
        tags=list(dict.fromkeys([*TAGS, *tags])),
        datasets=[dataset_id] if dataset_id else None,
        metrics=[metric_type for metric_type, _, _, _ in CARD_METRICS],
        model_name=model_name if eval_results else None,  # it names the model-index; alone it is no Hub field
        eval_results=eval_results,
    )


def _results(metrics: Optional[Mapping[str, Any]], dataset_id: Optional[str]) -> Optional[dict[str, Any]]:
    if metrics is None:
        return None
    values = _checked_metrics(metrics)
    return {
        "dataset": dataset_id,
        "split": public_text(str(metrics.get("split", "test"))),
        "images": metrics.get("num_samples"),
        "threshold": _threshold_text(metrics),
        "metrics": [{"short": short, "percent": None if values[key] is None else 100 * values[key]}
                    for _, key, _, short in CARD_METRICS],
    }


def _saved_file_names() -> dict[str, str]:
    """The names of a saved model's files, as the card mentions them (from the module that names them)."""
    from . import saved_files

    return {"config": saved_files.CONFIG_FILE, "adapter": saved_files.ADAPTER_DIR,
            "head": saved_files.HEAD_FILE, "clip_base": saved_files.CLIP_BASE_FILE,
            "processor": saved_files.PROCESSOR_FILE}


def _backbones(config: Mapping[str, Any], names: Mapping[str, str]) -> list[dict[str, Any]]:
    """The frozen backbones as the card lists them: a Hub id is linked, a local path is
    named by its last component, a missing reference says where the weights are."""
    backbones = [("CLIP (both towers, frozen)", config.get("clip_name_or_path"),
                  f"bundled with this model (`{names['clip_base']}`)")]
    if config.get("fusion_layers", 1):
        backbones.append(("fusion layer initialisation (frozen ViT)", config.get("fusion_name_or_path"),
                          f"no reference; its weights are stored in `{names['head']}`"))
    return [{"role": role, "hub_id": name if _is_hub_id(name) else None, "name": public_name(name),
             "fallback": fallback} for role, name, fallback in backbones]


def _training_args(training_args: Optional[Mapping[str, Any]]) -> list[tuple[str, Any]]:
    """The rows of the training-arguments table: credentials left out, local paths reduced."""
    return [(str(key), _public_value(value)) for key, value in (training_args or {}).items()
            if not any(word in str(key).lower() for word in SECRET_WORDS)]


def _template_path():
    """The packaged template as a file (``importlib.resources``: works from a wheel or a zip)."""
    return resources.as_file(resources.files("par_prompt").joinpath(TEMPLATE))


def render_model_card(
    config: Any,
    *,
    metrics: Optional[Mapping[str, Any]] = None,
    training_args: Optional[Mapping[str, Any]] = None,
    dataset_name: Optional[str] = None,
    repo_id: Optional[str] = None,
    tags: Optional[Sequence[str]] = None,
    files: Optional[Mapping[str, int]] = None,
    bundled: Optional[bool] = None,
    license: Optional[Mapping[str, str]] = None,
    provenance: Optional[Mapping[str, Any]] = None,
) -> str:
    """The model card (``README.md`` text) of a PromptPAR model.

    Rendered from the packaged Jinja template ``par_prompt/model_cards/promptpar.md`` with
    ``huggingface_hub.ModelCard.from_template``, which also parses the result back (a card
    with invalid metadata raises). Local paths never reach the card: backbones and data
    sets are shown by Hub id or by the last component of their path, and so are paths
    inside the training arguments.

    Args:
        config: its :class:`~par_prompt.PromptPARConfig` (or the dict of ``config.json``).
        metrics: the test metrics as fractions, i.e. ``ParMetrics.as_dict()``, plus
            ``threshold`` (float or list) and optionally ``threshold_description``,
            ``split`` (default ``"test"``) and ``num_samples``. They fill the results table
            and the ``model-index`` (in percent); a metric that is None (the split could
            not score it) shows as n/a and is left out of the model-index. ``None``: the
            card says it is not evaluated.
        training_args: the training run's arguments, shown as a table (keys naming a
            token, password, secret or credential are left out).
        dataset_name: the data set (Hub id, name or local path). Default: ``config.dataset``.
        repo_id: the Hub repository, used in the code samples and the model name.
        tags: extra tags, added to the standard ones.
        files: sizes in bytes of the uploaded files, for the size note.
        bundled: whether the folder holds the CLIP weights (default: whether ``files``
            names a bundled base).
        license: the ``ModelCardData`` licence fields (``license``, ``license_name``,
            ``license_link``); default :data:`PROJECT_LICENSE`.
        provenance: for a model imported from elsewhere, the data of the template's
            provenance section (see :func:`par_prompt.official.card.provenance`).

    A model imported from an official checkpoint (its config records ``imported_from``)
    keeps that checkpoint's licence, tag and provenance section on every card, also when
    it is rendered again after fine-tuning or for an upload; ``license`` / ``provenance``
    given here take precedence.
    """
    from huggingface_hub import ModelCard

    from . import __version__

    config = _config_dict(config)
    if config.get("imported_from"):
        from .official import card as official_card

        license = license or official_card.OFFICIAL_LICENSE
        provenance = provenance or official_card.provenance(config)
        tags = [*(tags or ()), *(tag for tag in official_card.TAGS if tag not in (tags or ()))]
    dataset_id = public_name(dataset_name) or public_name(config.get("dataset"))
    model_name = (repo_id.split("/")[-1] if repo_id else None) or f"promptpar-{dataset_id or 'par'}"
    card_data = _card_data(config, metrics, dataset_id, model_name, tags or (), license or PROJECT_LICENSE)
    attributes = list(config.get("attributes") or [])
    sentences = list(config.get("sentences") or [])
    thresholds = config.get("attribute_thresholds")
    if bundled is None:
        bundled = any(name in (files or {}) for name in OPTIONAL_WEIGHT_FILES)
    clip = public_name(config.get("clip_name_or_path")) or "a bundled CLIP"
    names = _saved_file_names()
    # without the processor's files (a model saved or pushed alone) the stock pipelines cannot
    # load the repository; the card says so instead of promising them
    has_processor = files is None or any(name in files for name in (PROCESSOR_FILE, PREPROCESSOR_FILE))
    with _template_path() as template_path:
        card = ModelCard.from_template(
            card_data,
            template_path=str(template_path),
            title=f"PromptPAR on {clip}" + (f" for {dataset_id}" if dataset_id else ""),
            dataset=dataset_id,
            text_prompts=config.get("text_prompts", 0),
            bundled=bundled,
            has_processor=has_processor,
            backbones=_backbones(config, names),
            names=names,
            provenance=provenance,
            repo_id=repo_id or "path/to/this/model",
            threshold=config.get("threshold", 0.5),
            attribute_thresholds=bool(thresholds),
            results=_results(metrics, dataset_id),
            attributes=[{"name": name, "sentence": sentences[i] if i < len(sentences) else "",
                         "threshold": thresholds[i] if thresholds else None} for i, name in enumerate(attributes)],
            settings=[(name, config[name]) for name in MODEL_SETTINGS if name in config],
            training_args=_training_args(training_args),
            files={"count": len(files), "mebibytes": sum(files.values()) / 2**20} if files else None,
            version=__version__,
            cell=_cell,
        )
    text = str(card)
    return text if text.endswith("\n") else text + "\n"


def write_model_card(
    folder: PathLike,
    *,
    metrics: Optional[Mapping[str, Any]],
    training_args: Optional[Mapping[str, Any]],
    dataset_name: Optional[str],
    repo_id: Optional[str] = None,
    tags: Optional[Sequence[str]] = None,
) -> Path:
    """Render the card of the saved model in ``folder`` and write it as ``folder/README.md``.

    See :func:`render_model_card` for the arguments; the config is read from
    ``folder/config.json``. The card is rendered (and so parsed back) before it is written,
    atomically, so a card with broken metadata is never left. Returns the path of the card.
    """
    folder = check_model_folder(folder)
    sizes = {name: (folder / name).stat().st_size for name in model_files(folder) if name != CARD_FILE}
    text = render_model_card(_read_config(folder), metrics=metrics, training_args=training_args,
                             dataset_name=dataset_name, repo_id=repo_id, tags=tags, files=sizes)
    return write_text_atomic(folder / CARD_FILE, text)
