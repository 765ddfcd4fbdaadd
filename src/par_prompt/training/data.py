"""Training data: loading and checking the splits, seeded order and augmentation.

Reproducibility is by construction, not by RNG state: the order of epoch ``e`` is a
permutation drawn from ``(seed, e)``, and the augmentation of example ``i`` in epoch
``e`` from a generator seeded with ``(seed, e, i)``. Neither depends on the number of
processes, on DataLoader workers or on where a run was resumed, so

- a resumed run sees exactly the batches and crops an uninterrupted run sees;
- ``P`` data-parallel processes see, between them, exactly the global batches one
  process sees (each process takes its contiguous slice of every global batch).

Batches are full: an epoch has ``floor(M / (batch × accumulation)) × accumulation``
steps (the remainder of the permutation is dropped, a different remainder every epoch),
so every update averages the same number of examples and shards are equal in size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch

from ..data.transforms import ImageTransform, normalize, random_pad_crop_flip

__all__ = [
    "EpochBatchSampler",
    "ImageSplit",
    "TrainingDataError",
    "check_splits",
    "example_generator",
    "label_matrix",
    "load_training_data",
    "scaled_augment_pad",
]


class TrainingDataError(ValueError):
    """The data cannot be trained on; the message names the problem and the fix."""


# ------------------------------------------------------------------------------ loading


def load_training_data(data_args, cache_dir: Optional[str] = None):
    """The :class:`~par_prompt.data.ParData` named by ``data_args``.

    - ``--data-dir`` set: :func:`par_prompt.data.load` of it (a converted directory, a
      folder of data files or a Hub dataset id);
    - else ``--dataset synthetic``: the synthetic set of the ``--synthetic-*`` sizes,
      generated once and cached under ``cache_dir`` (:func:`par_prompt.data.load_synthetic`);
    - else ``--dataset`` as a path or Hub id.
    """
    from .. import data as par_data

    if data_args.data_dir is not None:
        return par_data.load(data_args.data_dir)
    name = data_args.dataset
    if name is not None and name.lower() == "synthetic":
        return par_data.load_synthetic(data_args.synthetic_train, data_args.synthetic_validation,
                                       data_args.synthetic_test, seed=data_args.synthetic_seed, cache_dir=cache_dir)
    check_named_data(data_args)
    return par_data.load(name)


def check_named_data(data_args) -> None:
    """A benchmark name without ``--data-dir`` names no data: say how to convert it."""
    from ..data import KNOWN_DATASETS

    name = data_args.dataset
    if data_args.data_dir is None and name is not None and name.lower() in KNOWN_DATASETS \
            and not Path(name).exists():
        raise TrainingDataError(
            f"--dataset {name} names a benchmark but no data: convert it first (`par-prompt convert {name} --src "
            f"SRC --out OUT`) and pass --data-dir OUT, or pass a Hub dataset id with --data-dir."
        )


# ------------------------------------------------------------------------------- checks


def label_matrix(dataset) -> np.ndarray:
    """The ``labels`` column of a ``datasets.Dataset`` as an int64 (M, N) array.

    Raises :class:`TrainingDataError` when the rows differ in length.
    """
    import pyarrow.compute as pc

    column = dataset.data.column("labels") if hasattr(dataset, "data") else None
    if column is not None and len(column):
        lengths = pc.list_value_length(column)
        low, high = pc.min(lengths).as_py(), pc.max(lengths).as_py()
        if low != high:
            raise TrainingDataError(f"label rows differ in length ({low} to {high} values); every row needs one per attribute.")
    if len(dataset) == 0:
        width = getattr(dataset.features["labels"], "length", -1)
        return np.zeros((0, max(width or 0, 0)), dtype=np.int64)
    values = dataset.select_columns(["labels"]).with_format("numpy")["labels"]
    return np.asarray(values, dtype=np.int64).reshape(len(dataset), -1)


def check_splits(data, train_split: str, validation_split: str, test_split: Optional[str],
                 num_attributes: int) -> dict[str, np.ndarray]:
    """Check the splits before anything trains; return their label matrices.

    Fails (:class:`TrainingDataError`) when a needed split is missing or empty, or when
    its label width differs from the number of attributes (the model's).
    """
    available = list(data.splits)
    labels: dict[str, np.ndarray] = {}
    wanted = [(train_split, "training", "--train-split"), (validation_split, "validation", "--validation-split")]
    if test_split is not None:
        wanted.append((test_split, "test", "--test-split"))
    for split, role, option in wanted:
        if split not in data.splits:
            if role == "validation":
                raise TrainingDataError(
                    f"The data has no validation split {split!r} (it has {available}). The best epoch is chosen on a "
                    f"validation split, never on the test split: name one with --validation-split, or convert the "
                    f"data with a validation split (`par-prompt convert` writes train/validation/test)."
                )
            if role == "test":
                raise TrainingDataError(
                    f"The data has no test split {split!r} (it has {available}); name it with --test-split, or pass "
                    f"--test-split none to skip the final test evaluation."
                )
            raise TrainingDataError(f"The data has no training split {split!r} (it has {available}); use {option}.")
        matrix = label_matrix(data.splits[split])
        if matrix.shape[0] == 0:
            raise TrainingDataError(f"The {role} split {split!r} is empty: it holds no examples. Check {option} and the data.")
        if matrix.shape[1] != num_attributes:
            raise TrainingDataError(
                f"The {role} split {split!r} has labels of width {matrix.shape[1]}, but there are {num_attributes} "
                f"attributes. The labels must hold one value per attribute, in the order of the attribute list; "
                f"convert the data again or fix its attribute metadata."
            )
        bad = ~np.isin(matrix, (0, 1, 2))
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise TrainingDataError(
                f"The {role} split {split!r} has label values other than 0, 1 and 2 (uncertain), first in row {row}: "
                f"{sorted(set(np.unique(matrix[bad]).tolist()))[:5]}."
            )
        labels[split] = matrix
    return labels


# ------------------------------------------------------------------------ augmentation


def scaled_augment_pad(size: int, augment_pad: Optional[int] = None) -> int:
    """The padding of the random crop: the 10 px of docs/method.md §1 at 224 px, scaled to ``size``."""
    if augment_pad is not None:
        if augment_pad < 0:
            raise ValueError(f"augment_pad must be non-negative, got {augment_pad}")
        return int(augment_pad)
    return max(1, round(10 * size / 224))


def example_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of example ``index``'s augmentation in ``epoch`` (independent streams)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(index)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class ImageSplit(torch.utils.data.Dataset):
    """One split as model inputs: ``{"pixel_values": float32 (3, S, S), "labels": int64 (N,)}``.

    Items are addressed by an index, or by ``(index, epoch)`` when ``train`` is true: the
    training augmentation (pad, random crop, random flip; docs/method.md §1) then draws from
    :func:`example_generator` ``(seed, epoch, index)``. Decoding, squaring and resizing
    are those of :class:`~par_prompt.data.ImageTransform` (the inference pipeline).
    """

    def __init__(self, dataset, transform: ImageTransform, labels: np.ndarray, *, train: bool = False,
                 seed: int = 0, augment_pad: int = 10, flip_prob: float = 0.5) -> None:
        from datasets import Image

        self.dataset = dataset.select_columns(["image"]).cast_column("image", Image(decode=False))
        self.transform = transform.for_training(False)
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.train = train
        self.seed = seed
        self.augment_pad = augment_pad
        self.flip_prob = flip_prob

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> dict[str, torch.Tensor]:
        index, epoch = key if isinstance(key, tuple) else (key, None)
        index = int(index)
        pixels, kept = self.transform.pixels([self.dataset[index]["image"]])
        if not kept:
            raise TrainingDataError(f"example {index} has an undecodable image")
        if self.train:
            if epoch is None:
                raise TypeError("a training ImageSplit is indexed by (index, epoch); use EpochBatchSampler")
            generator = example_generator(self.seed, epoch, index)
            pixels = random_pad_crop_flip(pixels, self.augment_pad, self.flip_prob, generator=generator)
        values = normalize(pixels, self.transform.image_mean, self.transform.image_std)[0]
        return {"pixel_values": values, "labels": self.labels[index]}


# ---------------------------------------------------------------------------- sampling


@dataclass
class EpochBatchSampler(torch.utils.data.Sampler):
    """Seeded global batches, each process taking its contiguous slice.

    Yields, for this process, lists of ``(index, epoch)`` of length
    ``batch_size // num_processes``. Call :meth:`set_epoch` before iterating; the order
    of an epoch is ``torch.randperm(M)`` with a generator seeded from ``(seed, epoch)``.
    """

    num_examples: int
    batch_size: int
    seed: int = 0
    num_processes: int = 1
    process_index: int = 0
    steps_multiple: int = 1
    epoch: int = 0

    def __post_init__(self) -> None:
        if self.batch_size % self.num_processes:
            raise TrainingDataError(
                f"The global batch {self.batch_size} is not divisible by the {self.num_processes} processes; choose "
                f"--batch-size as a multiple of the process count so that every process gets an equal shard."
            )
        if self.batch_size // self.num_processes < 2:
            raise TrainingDataError(
                f"Each process would get {self.batch_size // self.num_processes} example(s) per step; the heads end "
                f"in a BatchNorm, which needs at least 2. Raise --batch-size to at least {2 * self.num_processes}."
            )
        if len(self) == 0:
            raise TrainingDataError(
                f"The training split has {self.num_examples} examples, fewer than one update needs "
                f"(batch {self.batch_size} × {self.steps_multiple} accumulation steps). Lower --batch-size or "
                f"--gradient-accumulation-steps, or add data."
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        per_epoch = self.num_examples // self.batch_size
        return per_epoch - per_epoch % self.steps_multiple

    def epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(int(self.seed) * 1_000_003 + int(epoch))
        return torch.randperm(self.num_examples, generator=generator)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.epoch_order(self.epoch).tolist()
        shard = self.batch_size // self.num_processes
        for step in range(len(self)):
            start = step * self.batch_size + self.process_index * shard
            yield [(index, self.epoch) for index in order[start:start + shard]]


def make_train_loader(split: ImageSplit, sampler: EpochBatchSampler, num_workers: int = 0,
                      pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader over ``split`` driven by ``sampler`` (not prepared by Accelerate)."""
    return torch.utils.data.DataLoader(split, batch_sampler=sampler, num_workers=num_workers,
                                       pin_memory=pin_memory, persistent_workers=False)


def make_eval_loader(split: ImageSplit, batch_size: int, num_workers: int = 0) -> torch.utils.data.DataLoader:
    """A sequential DataLoader (shard it with ``accelerator.prepare``)."""
    return torch.utils.data.DataLoader(split, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def shard_batch_size(global_batch: int, num_processes: int) -> int:
    """Per-process evaluation batch (at least 1)."""
    return max(1, global_batch // max(1, num_processes))

