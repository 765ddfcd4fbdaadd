"""collect_predictions: order, dtypes, eval/inference mode, accelerate gathering, bad batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from par_prompt.evaluation import collect_predictions, predict_split

from .builders import direct_probabilities


def _loader(data, split="test", batch_size=3):
    from par_prompt.data import ImageTransform

    # a real model's processor is used by predict_split; here the same transform is built by hand
    transform = ImageTransform(size=32)
    return DataLoader(data.with_image_transforms(transform, train_split=None)[split], batch_size=batch_size)


def test_matches_direct_forward_in_dataset_order(model, processor, data):
    probs, labels = predict_split(model, data, "test", batch_size=3, processor=processor)
    expected_probs, expected_labels = direct_probabilities(model, data.splits["test"], processor)
    assert probs.dtype == np.float32 and labels.dtype == np.int8
    assert probs.shape == labels.shape == (8, len(data.attributes))
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_allclose(probs, expected_probs, atol=1e-5)


class _Recorder(torch.nn.Module):
    """Wraps a model and records the mode, the ``training`` argument and the inference state of each call."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = []

    def forward(self, pixel_values, **kwargs):
        self.calls.append((self.training, kwargs.get("training"), torch.is_inference_mode_enabled()))
        return self.inner(pixel_values=pixel_values, **kwargs)


@pytest.mark.parametrize("start_in_training", [True, False])
def test_computes_as_in_eval_mode_without_changing_the_mode(model, data, start_in_training):
    recorder = _Recorder(model)
    recorder.train(start_in_training)
    collect_predictions(recorder, _loader(data))
    assert recorder.calls and all(call == (start_in_training, False, True) for call in recorder.calls)
    assert recorder.training is start_in_training and model.training is start_in_training
    model.eval()


def test_mode_is_restored_after_an_error(model, data):
    model.train()
    bad = [{"pixel_values": torch.zeros(2, 3, 32, 32), "labels": torch.zeros(2, 3)}]
    with pytest.raises(ValueError, match="different attribute counts"):
        collect_predictions(model, bad)
    assert model.training
    model.eval()


class _FakeAccelerator:
    """Stands in for two processes: gather doubles each batch, and the last gather drops
    the ``pad`` duplicated rows as gather_for_metrics does."""

    def __init__(self, num_batches, pad):
        self.num_batches, self.pad, self.calls = num_batches, pad, 0

    def gather_for_metrics(self, data):
        self.calls += 1
        probs, labels = data
        probs, labels = torch.cat([probs, probs.flip(0)]), torch.cat([labels, labels.flip(0)])
        if self.calls == self.num_batches:
            probs, labels = probs[: len(probs) - self.pad], labels[: len(labels) - self.pad]
        return probs, labels


def test_gathers_with_the_accelerator(model, data):
    loader = _loader(data, batch_size=4)  # 2 batches
    accelerator = _FakeAccelerator(num_batches=2, pad=1)
    probs, labels = collect_predictions(model, loader, accelerator)
    assert accelerator.calls == 2
    assert probs.shape == labels.shape == (15, len(data.attributes))  # 2 x 8 - 1 padded duplicate
    single, single_labels = collect_predictions(model, loader)
    np.testing.assert_allclose(probs[:4], single[:4], atol=1e-6)
    np.testing.assert_array_equal(labels[4:8], single_labels[:4][::-1])


def test_real_accelerator_single_process(model, data):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    try:
        accelerator = Accelerator(cpu=True)
        loader = accelerator.prepare(_loader(data, batch_size=3))
        probs, labels = collect_predictions(model, loader, accelerator)
    finally:
        AcceleratorState._reset_state(True)
    expected, expected_labels = collect_predictions(model, _loader(data, batch_size=3))
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    np.testing.assert_array_equal(labels, expected_labels)


def test_bad_loaders(model):
    with pytest.raises(KeyError, match="labels"):
        collect_predictions(model, [{"pixel_values": torch.zeros(2, 3, 32, 32)}])
    with pytest.raises(ValueError, match="no batches"):
        collect_predictions(model, [])


def test_images_are_never_read_without_the_model_s_processor(model, data, tmp_path):
    """Guessed image settings would change every probability without a word."""
    from par_prompt.evaluation import EvaluationError, calibrate_on_split, evaluate_model

    for call in (lambda: predict_split(model, data, "test"), lambda: evaluate_model(model, data, "test"),
                 lambda: calibrate_on_split(model, data, "validation")):
        with pytest.raises(EvaluationError, match="No processor was given"):
            call()


def test_save_with_thresholds_refuses_a_bare_number_in_one_line(model, tmp_path):
    from par_prompt.evaluation import EvaluationError, save_with_thresholds

    with pytest.raises(EvaluationError, match="one number per attribute"):
        save_with_thresholds(model, 0.4, tmp_path / "out")
    assert not (tmp_path / "out").exists()
