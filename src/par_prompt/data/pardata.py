"""``ParData``: a PAR ``DatasetDict`` with its attribute names and sentences.

Where the metadata lives (checked against ``datasets`` 5.x):

- **On disk** (``save_to_disk`` / ``load_from_disk``): a JSON object under the key
  ``"par_prompt"`` in every split's ``DatasetInfo.description``, i.e. in each split's
  ``dataset_info.json``. ``Features`` cannot carry it: the ``id`` field of a feature is
  not serialised, and the ``labels`` values (0/1/2) are not class ids, so a
  ``ClassLabel`` cannot name the attributes.
- **On the Hub**: ``push_to_hub`` keeps only the features (in the dataset card's YAML
  and the parquet schema), not the description. :meth:`ParData.push_to_hub` therefore
  also writes the same object under the key ``par_prompt`` of the dataset card's YAML
  header, and :func:`load` reads it back from there (from ``README.md`` for a local
  folder of data files, or via ``huggingface_hub.DatasetCard`` for a Hub id).

``load`` also accepts a plain ``DatasetDict`` (e.g. from ``load_dataset``) when the
attribute names are passed explicitly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .common import (
    METADATA_KEY,
    ParDataError,
    attach_metadata,
    check_split_name,
    metadata_dict,
    read_metadata,
)

if TYPE_CHECKING:  # pragma: no cover
    import datasets

    from .transforms import ImageTransform

logger = logging.getLogger(__name__)


@dataclass
class ParData:
    """The splits of a PAR data set plus its attribute names and sentences.

    ``splits`` is a ``DatasetDict`` whose splits have the columns ``image`` and
    ``labels`` (int8 × N, 1 / 0 / 2 = positive / negative / uncertain). On construction
    the metadata is (re)attached to every split, so ``splits`` can be saved on its own.
    """

    splits: datasets.DatasetDict
    attributes: list[str]
    sentences: list[str]
    name: str | None = None

    def __post_init__(self) -> None:
        self.attributes = [str(a) for a in self.attributes]
        self.sentences = [str(s) for s in self.sentences]
        meta = metadata_dict(self.name, self.attributes, self.sentences)  # validates lengths
        for split, dataset in self.splits.items():
            _check_columns(dataset, split, len(self.attributes))
        attach_metadata(self.splits, meta)

    @property
    def num_attributes(self) -> int:
        return len(self.attributes)

    def __getitem__(self, split: str) -> datasets.Dataset:
        if split not in self.splits:
            raise KeyError(f"no split {split!r}; available: {list(self.splits)}")
        return self.splits[split]

    def metadata(self) -> dict:
        """The metadata object stored with the data (name, attributes, sentences)."""
        return metadata_dict(self.name, self.attributes, self.sentences)

    def save(self, path: str | Path, overwrite: bool = False) -> None:
        """``save_to_disk`` atomically (see :func:`save`)."""
        save(self, path, overwrite=overwrite)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> None:
        """``DatasetDict.push_to_hub`` plus the metadata in the dataset card's YAML.

        ``kwargs`` go to ``DatasetDict.push_to_hub``; ``token`` and ``revision`` are also
        used to update the card.
        """
        from huggingface_hub import DatasetCard

        self.splits.push_to_hub(repo_id, **kwargs)
        token, revision = kwargs.get("token"), kwargs.get("revision")
        card = DatasetCard(
            card_with_metadata(DatasetCard.load(repo_id, token=token).content, self.metadata())
        )
        card.push_to_hub(
            repo_id, token=token, revision=revision, commit_message="Add PromptPAR attribute metadata"
        )

    def with_image_transforms(
        self, transform: ImageTransform | None = None, train_split: str = "train", **kwargs: Any
    ) -> datasets.DatasetDict:
        """Every split with the image pipeline applied lazily (``with_transform``).

        ``train_split`` gets the training augmentation, the others the plain pipeline.
        ``transform`` (an :class:`~par_prompt.data.transforms.ImageTransform`) sets size,
        mean and std; by default ``ImageTransform(**kwargs)``. Images are decoded by the
        transform itself, so a corrupt file is reported by name.
        """
        from datasets import DatasetDict, Image

        from .transforms import ImageTransform

        if transform is not None and kwargs:
            raise TypeError(
                f"pass either a transform or ImageTransform arguments, not both ({sorted(kwargs)})"
            )
        base = transform if transform is not None else ImageTransform(**kwargs)
        out = {}
        for split, dataset in self.splits.items():
            split_transform = base.for_training(split == train_split)
            out[split] = dataset.cast_column("image", Image(decode=False)).with_transform(split_transform)
        return DatasetDict(out)


def _check_columns(dataset: datasets.Dataset, split: str, num_attributes: int) -> None:
    missing = {"image", "labels"} - set(dataset.column_names)
    if missing:
        raise ParDataError(
            f"split {split!r} lacks the column(s) {sorted(missing)}; it has {dataset.column_names}"
        )
    length = getattr(dataset.features["labels"], "length", -1)
    if length not in (-1, None) and length != num_attributes:
        raise ParDataError(
            f"split {split!r}: labels hold {length} values per example but there are "
            f"{num_attributes} attributes"
        )


# ------------------------------------------------------------------------ dataset card


def card_with_metadata(card_text: str | None, meta: Mapping) -> str:
    """``card_text`` (a README.md, possibly empty) with ``meta`` under ``par_prompt`` in its YAML."""
    from huggingface_hub import DatasetCard

    card = DatasetCard(
        card_text if card_text and card_text.startswith("---") else "---\n---\n" + (card_text or "")
    )
    card.data[METADATA_KEY] = dict(meta)
    return card.content


def _card_metadata(source: str) -> dict | None:
    """The ``par_prompt`` object of a local folder's README.md or a Hub dataset's card."""
    from huggingface_hub import DatasetCard

    readme = Path(source) / "README.md"
    try:
        if readme.is_file():
            card = DatasetCard(readme.read_text(encoding="utf-8"))
        elif Path(source).exists():
            return None
        else:
            card = DatasetCard.load(source)
    except Exception as error:  # no card, no network, ...: the caller reports what is missing
        logger.info("no dataset card metadata for %s: %s", source, error)
        return None
    meta = card.data.to_dict().get(METADATA_KEY)
    return dict(meta) if isinstance(meta, Mapping) else None


# -------------------------------------------------------------------------- load / save


def load(
    source: str | Path | datasets.DatasetDict | datasets.Dataset | ParData,
    split: str | None = None,
    *,
    attributes: Sequence[str] | None = None,
    sentences: Sequence[str] | None = None,
    name: str | None = None,
    **load_dataset_kwargs: Any,
) -> ParData:
    """Load a PAR data set with its attribute names and sentences.

    Args:
        source: a directory written by ``save_to_disk`` / :func:`save` /
            :func:`~par_prompt.data.convert` / :func:`make_synthetic` + ``save``; a local
            folder of data files or a Hub id (read with ``datasets.load_dataset``); or an
            in-memory ``DatasetDict`` / ``Dataset`` / ``ParData``.
        split: keep only this split (``KeyError`` listing the available ones).
        attributes, sentences, name: override the stored metadata, or supply it for data
            that carries none (sentences default to
            :func:`par_prompt.sentences.expand_attributes` of the names).
        load_dataset_kwargs: passed to ``datasets.load_dataset``.

    Raises:
        ParDataError: no metadata is found and ``attributes`` is not given, or the data
            lacks the ``image`` / ``labels`` columns.
    """
    import datasets

    card_meta = None
    if isinstance(source, ParData):
        splits, card_meta = source.splits, source.metadata()
    elif isinstance(source, datasets.DatasetDict):
        splits = source
    elif isinstance(source, datasets.Dataset):
        splits = datasets.DatasetDict({split or str(source.split or "train"): source})
    else:
        path = Path(source)
        if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
            loaded = datasets.load_from_disk(str(path))
        else:
            loaded = datasets.load_dataset(str(source), **load_dataset_kwargs)
            card_meta = _card_metadata(str(source))
        if isinstance(loaded, datasets.Dataset):
            loaded = datasets.DatasetDict({str(loaded.split or "train"): loaded})
        splits = loaded

    if split is not None:
        if split not in splits:
            raise KeyError(f"no split {split!r} in {source!r}; available: {list(splits)}")
        splits = datasets.DatasetDict({split: splits[split]})
    if not splits:
        raise ParDataError(f"{source!r} holds no splits")

    stored = next((m for m in map(read_metadata, splits.values()) if m is not None), None) or card_meta or {}
    names = list(attributes) if attributes is not None else stored.get("attributes")
    if names is None:
        raise ParDataError(
            f"{source!r} carries no PromptPAR metadata (attribute names); pass attributes=[...] "
            "(and optionally sentences=[...])"
        )
    if sentences is not None:
        texts = list(sentences)
    elif attributes is None and stored.get("sentences") is not None:
        texts = stored["sentences"]
    else:
        from par_prompt.sentences import expand_attributes

        texts = expand_attributes(names, dataset=None)
    return ParData(splits, names, texts, name if name is not None else stored.get("name"))


def save(data: ParData | datasets.DatasetDict, path: str | Path, overwrite: bool = False) -> None:
    """``save_to_disk`` atomically, with the metadata in every split's ``DatasetInfo``.

    A ``DatasetDict`` must already carry the metadata (e.g. one returned by
    :func:`~par_prompt.data.convert`); otherwise wrap it with :func:`load` first.
    ``path`` follows the rules of :mod:`par_prompt.data.output`: new, empty, or (with
    ``overwrite``) a data set written by par-prompt; never another directory. Split
    names must be plain names.
    """
    from .output import dataset_output

    if not isinstance(data, ParData):
        data = load(data)
    for split in data.splits:
        check_split_name(split, "save")
    # Saving over the data set it was loaded from is allowed: the new copy is complete
    # before the old one is removed (its memory-mapped files stay readable until then).
    with dataset_output(path, overwrite=overwrite) as target:
        data.splits.save_to_disk(str(target))


# ----------------------------------------------------------------------------- ratios


def _label_matrix(source: Any) -> np.ndarray:
    import datasets

    if isinstance(source, ParData):
        source = source.splits
    if isinstance(source, datasets.DatasetDict):
        if "train" not in source:
            raise KeyError(f"no 'train' split; available: {list(source)}; pass the split itself")
        source = source["train"]
    if isinstance(source, datasets.Dataset):
        column = source.select_columns(["labels"]).with_format("numpy")["labels"]
        return np.asarray(column if len(column) else np.zeros((0, source.features["labels"].length)))
    return np.asarray(source)


def positive_ratios(split: Any) -> np.ndarray:
    """Positive ratio per attribute: positives / (positives + negatives), ignoring 2s.

    ``split`` is a ``Dataset`` (its ``labels`` column), a ``DatasetDict`` or ``ParData``
    (their ``train`` split), or a label matrix (examples × attributes). Returns float64 of
    shape ``(N,)``. An attribute with no certain entry gets 0.5 (as in
    :func:`par_prompt.losses.compute_positive_ratios`, the one implementation) and a
    warning is logged.
    """
    labels = _label_matrix(split)
    if labels.ndim != 2:
        raise ParDataError(f"expected a 2-D label matrix, got shape {labels.shape}")
    import torch

    from ..losses import compute_positive_ratios

    try:
        ratios = compute_positive_ratios(labels.astype(np.int64), dtype=torch.float64).numpy()
    except ValueError as error:
        raise ParDataError(str(error)) from error
    empty = ~((labels == 0) | (labels == 1)).any(axis=0)
    if empty.any():
        logger.warning(
            "attribute(s) %s have no certain label; their positive ratio is set to 0.5 (their loss weight is 0)",
            np.flatnonzero(empty).tolist(),
        )
    return ratios
