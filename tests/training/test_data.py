"""Seeded order and augmentation, equal shards, and the checks that run before the first step."""

import numpy as np
import pytest
import torch

from par_prompt.data import ImageTransform, load, make_synthetic
from par_prompt.training import EpochBatchSampler, ImageSplit, TrainingDataError
from par_prompt.training.data import check_splits, example_generator


def test_two_shards_make_up_the_single_process_batches():
    one = EpochBatchSampler(num_examples=37, batch_size=6, seed=5)
    ranks = [EpochBatchSampler(num_examples=37, batch_size=6, seed=5, num_processes=2, process_index=r)
             for r in range(2)]
    for sampler in (one, *ranks):
        sampler.set_epoch(3)
    assert len(one) == len(ranks[0]) == 6  # floor(37 / 6): the remainder is dropped
    for full, first, second in zip(one, *ranks):
        assert full == first + second
        assert len(first) == len(second) == 3
        assert {epoch for _, epoch in full} == {3}


def test_order_depends_on_seed_and_epoch_only():
    sampler = EpochBatchSampler(num_examples=20, batch_size=4, seed=1)
    sampler.set_epoch(0)
    epoch0 = list(sampler)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    again = EpochBatchSampler(num_examples=20, batch_size=4, seed=1)
    again.set_epoch(1)
    assert list(again) == epoch1 != epoch0
    indices = [i for batch in epoch0 for i, _ in batch]
    assert len(set(indices)) == 20


def test_accumulation_keeps_whole_updates():
    sampler = EpochBatchSampler(num_examples=50, batch_size=4, steps_multiple=3)
    assert len(sampler) == 12  # 12 of the 12.5 batches, a multiple of 3


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_examples=10, batch_size=5, num_processes=2), "not divisible"),
    (dict(num_examples=10, batch_size=2, num_processes=2), "at least 2"),
    (dict(num_examples=3, batch_size=4), "fewer than one update"),
])
def test_sampler_errors_name_the_fix(kwargs, message):
    with pytest.raises(TrainingDataError, match=message):
        EpochBatchSampler(**kwargs)


@pytest.fixture(scope="module")
def synthetic():
    return load(make_synthetic(6, 3, 3, seed=1, image_size=(64, 32)))


def _split(data, train=True, seed=0):
    labels = np.asarray(data.splits["train"]["labels"])
    return ImageSplit(data.splits["train"], ImageTransform(32), labels, train=train, seed=seed, augment_pad=4)


def test_augmentation_is_a_function_of_seed_epoch_and_index(synthetic):
    split = _split(synthetic)
    first = split[(2, 0)]["pixel_values"]
    assert torch.equal(first, _split(synthetic)[(2, 0)]["pixel_values"])  # a fresh copy, e.g. a resumed run
    assert not torch.equal(first, split[(2, 1)]["pixel_values"])  # another epoch
    assert not torch.equal(first, _split(synthetic, seed=1)[(2, 0)]["pixel_values"])  # another seed
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(first, split[(2, 0)]["pixel_values"])
    plain = _split(synthetic, train=False)[2]
    assert plain["pixel_values"].shape == first.shape == (3, 32, 32)
    assert plain["labels"].tolist() == list(synthetic.splits["train"][2]["labels"])
    g1, g2 = example_generator(0, 1, 2), example_generator(0, 2, 1)
    assert torch.rand(3, generator=g1).tolist() != torch.rand(3, generator=g2).tolist()


def test_checks_name_each_problem(synthetic):
    labels = check_splits(synthetic, "train", "validation", "test", 18)
    assert labels["train"].shape == (6, 18)
    with pytest.raises(TrainingDataError, match="width 18, but there are 17 attributes"):
        check_splits(synthetic, "train", "validation", "test", 17)
    with pytest.raises(TrainingDataError, match="no validation split 'val'.*--validation-split"):
        check_splits(synthetic, "train", "val", None, 18)
    with pytest.raises(TrainingDataError, match="--test-split none"):
        check_splits(synthetic, "train", "validation", "final", 18)
