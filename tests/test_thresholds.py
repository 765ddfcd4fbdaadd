"""One threshold resolver (par_prompt.thresholds) for prediction, evaluation, training and the metrics."""

import numpy as np
import pytest
import torch

from par_prompt import compute_par_metrics
from par_prompt.thresholds import ThresholdChoice, check_threshold, resolve_threshold

NAMES = ["hat", "bag", "boots"]


class Config:
    attributes = NAMES
    num_attributes = len(NAMES)
    threshold = 0.4
    attribute_thresholds = None


def test_precedence_given_then_per_attribute_then_global():
    config = Config()
    assert resolve_threshold(config) == ThresholdChoice(0.4, "config.threshold")
    config.attribute_thresholds = [0.2, 0.7, 0.5]
    assert resolve_threshold(config) == ThresholdChoice([0.2, 0.7, 0.5], "config.attribute_thresholds")
    assert resolve_threshold(config, 0.6) == ThresholdChoice(0.6, "threshold")
    assert resolve_threshold(config, [0.1, 0.2, 0.3], given_as="--threshold").source == "--threshold"
    assert resolve_threshold(config).values(3) == [0.2, 0.7, 0.5]
    assert resolve_threshold(config, 0.6).values(3) == [0.6] * 3


@pytest.mark.parametrize("value", [0.3, np.float32(0.3), np.array(0.3), torch.tensor(0.3), 1, 0])
def test_numbers_of_every_kind(value):
    choice = resolve_threshold(Config(), value)
    assert isinstance(choice.value, float) and choice.value == pytest.approx(float(value))


@pytest.mark.parametrize("values", [[0.1, 0.5, 0.9], (0.1, 0.5, 0.9), np.array([0.1, 0.5, 0.9]),
                                    torch.tensor([0.1, 0.5, 0.9])])
def test_one_per_attribute_of_every_kind(values):
    choice = resolve_threshold(Config(), values)
    assert choice.per_attribute and choice.value == pytest.approx([0.1, 0.5, 0.9])
    assert all(type(v) is float for v in choice.value)


@pytest.mark.parametrize("bad, message", [
    (1.5, r"threshold must lie in \[0, 1\], got 1.5"),
    (-0.1, r"threshold must lie in \[0, 1\]"),
    (float("nan"), r"threshold must lie in \[0, 1\], got nan"),
    (True, "threshold must be a number in"),
    ("0.5", "threshold must be a number in"),
    (b"0.5", "threshold must be a number in"),
    ([0.5, 0.5], "got 2 thresholds for 3 attributes; give one per attribute"),
    ([[0.5] * 3], r"shape \(N,\)\), got shape \(1, 3\)"),
    ([0.5, "0.5", 0.5], "one per attribute"),
    ([0.5, True, 0.5], "one per attribute"),
    ([0.5, 2.0, float("nan")], r"out of range in threshold: \[\('bag', 2.0\), \('boots', nan\)\]"),
    (object(), "one per attribute"),
])
def test_bad_thresholds_get_one_message_wherever_they_are_given(bad, message):
    """The same check and the same words for a model's predictions, its evaluation and the
    metrics: they all call resolve_threshold."""
    from par_prompt.evaluation import EvaluationError
    from par_prompt.evaluation.evaluate import save_with_thresholds
    from par_prompt.inference.predict import resolve_thresholds

    with pytest.raises(ValueError, match=message):
        resolve_threshold(Config(), bad)
    with pytest.raises(ValueError, match=message):
        resolve_thresholds(Config(), bad)
    probs, labels = np.full((2, 3), 0.5), np.array([[1, 0, 1], [0, 1, 0]])
    with pytest.raises(ValueError, match=message):
        compute_par_metrics(probs, labels, threshold=bad, attribute_names=NAMES)
    if isinstance(bad, list) and len(bad) == 3:
        class Model:
            config = Config()

        with pytest.raises(EvaluationError, match=message.replace("in threshold", "in thresholds")):
            save_with_thresholds(Model(), bad, "unused")


@pytest.mark.parametrize("stored, message", [
    ([0.5, 0.5], "config.attribute_thresholds: got 2 thresholds for 3 attributes"),
    ([0.5, 0.5, 1.5], r"out of range in config.attribute_thresholds: \[\('boots', 1.5\)\]"),
])
def test_a_config_edited_after_loading_is_checked_too(stored, message):
    config = Config()
    config.attribute_thresholds = stored
    with pytest.raises(ValueError, match=message):
        resolve_threshold(config)
    config.attribute_thresholds, config.threshold = None, 7
    with pytest.raises(ValueError, match=r"config.threshold must lie in \[0, 1\], got 7"):
        resolve_threshold(config)


def test_without_a_config_the_number_of_attributes_comes_from_the_caller():
    assert resolve_threshold(threshold=[0.1, 0.2], num_attributes=2).value == [0.1, 0.2]
    with pytest.raises(ValueError, match="got 2 thresholds for 4 attributes"):
        resolve_threshold(threshold=[0.1, 0.2], num_attributes=4)
    with pytest.raises(ValueError, match="threshold is missing"):
        resolve_threshold()


def test_check_threshold_names_the_value():
    assert check_threshold(0.25) == 0.25
    with pytest.raises(ValueError, match=r"--threshold must lie in \[0, 1\], got 2.0"):
        check_threshold(2.0, "--threshold")


def test_describe_names_where_per_attribute_thresholds_came_from():
    config = Config()
    config.attribute_thresholds = [0.2, 0.7, 0.5]
    assert resolve_threshold(config).describe() == "per-attribute (from the model config)"
    assert resolve_threshold(config, [0.1, 0.2, 0.3], given_as="--threshold").describe() == "per-attribute (--threshold)"
    assert ThresholdChoice([0.1] * 3, "calibrated on validation").describe() == "per-attribute (calibrated on validation)"
    assert resolve_threshold(config, 0.25).describe() == "global 0.25"
