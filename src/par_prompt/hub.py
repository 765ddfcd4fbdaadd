"""Sharing PromptPAR models on the Hugging Face Hub: the upload and the model card.

A saved PromptPAR model is a small folder (see
:mod:`par_prompt.modeling.serialization`): the adapter and head weights, ``config.json``,
tokenizer and image-processor files. Uploading it means uploading that folder and
nothing else -- never the frozen base weights (they are named by reference) and never
training leftovers that happen to sit next to it (checkpoints, optimizer states, logs).

- :func:`push_to_hub` uploads a saved folder (``HfApi.create_repo`` + ``upload_folder``).
- :func:`upload_model_folder` is what ``PromptPARModel.save_pretrained(dir,
  push_to_hub=True, repo_id=...)`` calls (:func:`check_upload_arguments` checks its
  arguments).
- :func:`push_model_to_hub` saves a model to a temporary folder, writes its card and
  uploads it: the body of ``PromptPARModel.push_to_hub``.
- :func:`render_model_card` / :func:`write_model_card` fill the packaged template
  ``par_prompt/model_cards/promptpar.md`` (a ``string.Template``; see
  ``model_cards/README.md`` at the top of the repository).

Nothing here touches the network at import time.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Optional, Union

from .fileio import write_text_atomic
from .saved_files import (
    ADAPTER_DIR,
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
PIPELINE_TAG = "image-classification"
TASK_NAME = "Pedestrian Attribute Recognition"
#: (metric type in the model-index, key in ParMetrics.as_dict(), display name)
CARD_METRICS = (
    ("mA", "mA", "mA (label-based)"),
    ("accuracy", "accuracy", "Accuracy (instance-based)"),
    ("precision", "precision", "Precision (instance-based)"),
    ("recall", "recall", "Recall (instance-based)"),
    ("f1", "f1", "F1 (instance-based)"),
)
#: training_args keys never written to a card (credentials).
SECRET_WORDS = ("token", "password", "secret", "api_key")
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
        return relative.suffix in (".json", ".safetensors")
    if len(parts) != 1:
        return False  # other sub-folders: checkpoints, logs, runs
    name = relative.name
    if name in TRAINING_STATE_FILES:
        return False
    if relative.suffix == ".safetensors":
        return name in WEIGHT_FILES
    return name in FOLDER_FILES or name == CARD_FILE  # save_pretrained leaves other files in the folder


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
    files = (path.relative_to(folder) for path in folder.rglob("*") if path.is_file())
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
    api: Any = None,
    **ignored: Any,
) -> str:
    """Save ``model`` to a temporary folder, write its model card there and upload it.

    The body of ``PromptPARModel.push_to_hub``: the signature takes transformers'
    ``push_to_hub`` arguments (``max_shard_size`` and ``safe_serialization`` are
    ignored), plus ``metrics`` / ``training_args`` / ``dataset_name`` for the card.
    Unlike transformers' version it uploads our card, not a generic one, and only the
    files of :func:`model_files`. Returns the commit URL.
    """
    unknown = sorted(set(ignored) - set(IGNORED_SAVE_ARGUMENTS))
    if unknown:
        raise TypeError(f"push_to_hub got unexpected arguments {unknown}.")
    with tempfile.TemporaryDirectory(prefix="promptpar-push-") as tmp:
        folder = Path(tmp) / "model"
        model.save_pretrained(folder, bundle_base_weights=bundle_base_weights)
        write_model_card(folder, metrics=metrics, training_args=training_args, dataset_name=dataset_name,
                         repo_id=repo_id, tags=tags)
        return push_to_hub(folder, repo_id, token=token, private=private, revision=revision,
                           commit_message=commit_message, commit_description=commit_description,
                           create_pr=create_pr, api=api)


# -------------------------------------------------------------------- model card


def _config_dict(config: Any) -> dict[str, Any]:
    if isinstance(config, Mapping):
        return dict(config)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    raise TypeError(f"config must be a PromptPARConfig or its dict, got {type(config).__name__}")


def _is_hub_id(name: Optional[str]) -> bool:
    """Whether ``name`` reads as a Hub repository id rather than a local path."""
    if not name or Path(name).exists() or name.startswith((".", "/", "~")) or "\\" in name:
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _dataset_id(name: Optional[str]) -> Optional[str]:
    """The data set as it appears in the card: a Hub id as is, a local path by its folder name."""
    if not name:
        return None
    return name if _is_hub_id(name) else Path(name).name or None


def _cell(value: Any) -> str:
    """A value as the text of a Markdown table cell."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= 120 else text[:117] + "..."


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _checked_metrics(metrics: Mapping[str, Any]) -> dict[str, Optional[float]]:
    """The card's metrics as fractions; None for a metric the split could not score (mA
    when no attribute has both positives and negatives)."""
    values = {}
    for _, key, _ in CARD_METRICS:
        if key not in metrics:
            raise ValueError(
                f"metrics lacks {key!r}; pass ParMetrics.as_dict() of the test evaluation (keys "
                f"{[k for _, k, _ in CARD_METRICS]}), plus 'threshold'."
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
        return str(metrics["threshold_description"])
    threshold = metrics.get("threshold")
    if isinstance(threshold, (int, float)):
        return f"global {float(threshold):.2f}"
    if isinstance(threshold, Sequence) and not isinstance(threshold, str):
        return "per-attribute"
    return "unknown"


def _card_data(config: dict, metrics: Optional[Mapping[str, Any]], dataset_id: Optional[str], model_name: str,
               tags: Sequence[str]):
    from huggingface_hub import EvalResult, ModelCardData

    eval_results = None
    if metrics is not None:
        values = _checked_metrics(metrics)
        if dataset_id is None:
            raise ValueError("the model-index needs the data set the metrics were measured on; pass dataset_name.")
        split = str(metrics.get("split", "test"))
        eval_results = [
            EvalResult(
                task_type=PIPELINE_TAG, task_name=TASK_NAME, dataset_type=dataset_id, dataset_name=dataset_id,
                dataset_split=split, metric_type=metric_type, metric_name=display,
                metric_value=round(100 * values[key], 2), metric_args={"threshold": _threshold_text(metrics)},
            )
            for metric_type, key, display in CARD_METRICS
            if values[key] is not None
        ]
    base = config.get("clip_name_or_path")
    return ModelCardData(
        library_name=LIBRARY_NAME,
        base_model=base if _is_hub_id(base) else None,
        tags=list(dict.fromkeys([*TAGS, *tags])),
        datasets=[dataset_id] if dataset_id else None,
        metrics=[metric_type for metric_type, _, _ in CARD_METRICS],
        pipeline_tag=PIPELINE_TAG,
        model_name=model_name,
        eval_results=eval_results,
    )


def _results_section(metrics: Optional[Mapping[str, Any]], dataset_id: Optional[str]) -> str:
    if metrics is None:
        return ("Not evaluated yet. Run `par-prompt evaluate` on a test split and render the card again with "
                "`par_prompt.hub.write_model_card(folder, metrics=...)`.")
    values = _checked_metrics(metrics)
    split = metrics.get("split", "test")
    images = metrics.get("num_samples")
    row = [dataset_id, split, images if images is not None else "?"]
    row += ["n/a" if values[key] is None else f"{100 * values[key]:.2f}" for _, key, _ in CARD_METRICS] + [_threshold_text(metrics)]
    table = _table(["data set", "split", "images", "mA", "Acc", "Prec", "Rec", "F1", "threshold"], [row])
    return (table + "\n\nIn percent. mA is the mean over attributes of (positive recall + negative recall) / 2; "
            "Acc, Prec, Rec and F1 are computed per image and averaged. Uncertain labels are left out.")


def _attributes_section(config: dict) -> str:
    attributes = list(config.get("attributes") or [])
    sentences = list(config.get("sentences") or [""] * len(attributes))
    thresholds = config.get("attribute_thresholds")
    header = ["#", "attribute", "sentence"] + (["threshold"] if thresholds else [])
    rows = [
        [i, name, sentences[i] if i < len(sentences) else ""] + ([f"{thresholds[i]:.2f}"] if thresholds else [])
        for i, name in enumerate(attributes)
    ]
    return f"{len(attributes)} attributes, in output order:\n\n" + _table(header, rows)


MODEL_SETTINGS = ("num_regions", "overlap_rows", "prompts_per_group", "vision_depth", "text_prompts", "text_depth",
                  "text_prompt_per_sentence", "fusion_layers", "gl_alpha", "gl_threshold")


def _training_section(config: dict, training_args: Optional[Mapping[str, Any]], files: Optional[Mapping[str, int]]
                      ) -> str:
    parts = []
    settings = [[name, config.get(name)] for name in MODEL_SETTINGS if name in config]
    parts.append("Model settings (from `config.json`):\n\n" + _table(["setting", "value"], settings))
    if training_args:
        rows = [[key, value] for key, value in training_args.items()
                if not any(word in str(key).lower() for word in SECRET_WORDS)]
        parts.append("Training arguments:\n\n" + _table(["argument", "value"], rows))
    else:
        parts.append("The training arguments were not recorded with this card.")
    if files:
        total = sum(files.values())
        parts.append(f"Uploaded files: {len(files)}, {total / 2**20:.2f} MiB in total; the trainable weights are "
                     "the adapter and head files.")
    return "\n\n".join(parts)


def _backbones_section(config: dict) -> str:
    lines = [f"- CLIP (both towers, frozen): `{config.get('clip_name_or_path') or 'bundled'}`"]
    if config.get("fusion_layers", 1):
        lines.append(f"- fusion layer initialisation (frozen ViT): `{config.get('fusion_name_or_path') or 'bundled'}`")
    return "\n".join(lines)


def _load_template() -> str:
    return resources.files("par_prompt").joinpath(TEMPLATE).read_text(encoding="utf-8")


def render_model_card(
    config: Any,
    *,
    metrics: Optional[Mapping[str, Any]] = None,
    training_args: Optional[Mapping[str, Any]] = None,
    dataset_name: Optional[str] = None,
    repo_id: Optional[str] = None,
    tags: Optional[Sequence[str]] = None,
    files: Optional[Mapping[str, int]] = None,
) -> str:
    """The model card (``README.md`` text) of a PromptPAR model.

    Args:
        config: its :class:`~par_prompt.PromptPARConfig` (or the dict of ``config.json``).
        metrics: the test metrics as fractions, i.e. ``ParMetrics.as_dict()``, plus
            ``threshold`` (float or list) and optionally ``threshold_description`` and
            ``split`` (default ``"test"``). They fill the results table and the
            ``model-index`` (in percent). ``None``: the card says it is not evaluated.
        training_args: the training run's arguments, shown as a table (keys naming a
            token, password or secret are left out).
        dataset_name: the data set (Hub id, name or local path; a path is shown by its
            folder name). Default: ``config.dataset``.
        repo_id: the Hub repository, used in the code samples and the model name.
        tags: extra tags, added to the standard ones.
        files: sizes in bytes of the uploaded files, for the size note.
    """
    config = _config_dict(config)
    dataset_id = _dataset_id(dataset_name) or _dataset_id(config.get("dataset"))
    model_name = (repo_id.split("/")[-1] if repo_id else None) or f"promptpar-{dataset_id or 'par'}"
    card_data = _card_data(config, metrics, dataset_id, model_name, tags or ())
    clip = config.get("clip_name_or_path") or "a bundled CLIP"
    title = f"PromptPAR on {Path(clip).name if not _is_hub_id(clip) else clip}" + (
        f" for {dataset_id}" if dataset_id else "")
    summary = (
        f"A [PromptPAR](https://github.com/Event-AHU/OpenPAR) pedestrian attribute recognition model: a frozen "
        f"CLIP with trained region-aware visual prompts, text prompts and a multi-modal fusion head, predicting "
        f"{len(config.get('attributes') or [])} attributes of a person in a pedestrian image"
        + (f", trained on {dataset_id}." if dataset_id else ".")
    )
    thresholds = config.get("attribute_thresholds")
    threshold_note = (
        "The model config holds per-attribute thresholds (`config.attribute_thresholds`, calibrated on a "
        "validation split); predict attribute i when `probs[i] > config.attribute_thresholds[i]`."
        if thresholds else
        f"Predict an attribute when its probability exceeds `config.threshold` ({config.get('threshold', 0.5)})."
    )
    from . import __version__

    return Template(_load_template()).substitute(
        card_data=card_data.to_yaml(),
        title=title,
        summary=summary,
        backbones=_backbones_section(config),
        repo_id=repo_id or "path/to/this/model",
        threshold_note=threshold_note,
        results=_results_section(metrics, dataset_id),
        attributes=_attributes_section(config),
        training=_training_section(config, training_args, files),
        num_attributes=len(config.get("attributes") or []),
        version=__version__,
    )


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
    ``folder/config.json``. The card is parsed back with ``huggingface_hub.ModelCard``
    before it is written (atomically), so a card with broken metadata is never left.
    Returns the path of the card.
    """
    from huggingface_hub import ModelCard

    folder = check_model_folder(folder)
    sizes = {name: (folder / name).stat().st_size for name in model_files(folder) if name != CARD_FILE}
    text = render_model_card(_read_config(folder), metrics=metrics, training_args=training_args,
                             dataset_name=dataset_name, repo_id=repo_id, tags=tags, files=sizes)
    ModelCard(text, ignore_metadata_errors=False)  # raises on invalid front matter
    return write_text_atomic(folder / CARD_FILE, text)
