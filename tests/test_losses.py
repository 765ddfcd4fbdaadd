"""Tests for par_prompt.losses: weighted BCE with logits (docs/method.md §6)."""

import math

import pytest
import torch

from par_prompt.losses import (
    compute_positive_ratios,
    par_loss_weights,
    validate_labels,
    weighted_bce_with_logits,
)

LOGITS = [[0.0, 2.0], [-1.0, 0.0]]
LABELS = [[1, 0], [2, 1]]
RATIOS = [0.25, 0.5]


def hand_loss():
    # entry (0,0): positive, w = e^(1-0.25), BCE(0, 1) = log 2
    # entry (0,1): negative, w = e^0.5,      BCE(2, 0) = log(1 + e^2)
    # entry (1,0): uncertain, w = 0
    # entry (1,1): positive, w = e^(1-0.5),  BCE(0, 1) = log 2
    sample_0 = math.exp(0.75) * math.log(2) + math.exp(0.5) * math.log(1 + math.e**2)
    sample_1 = math.exp(0.5) * math.log(2)
    return (sample_0 + sample_1) / 2  # batch size 2


def test_hand_computed_loss():
    loss = weighted_bce_with_logits(torch.tensor(LOGITS), torch.tensor(LABELS), torch.tensor(RATIOS))
    assert loss.ndim == 0 and loss.dtype == torch.float32
    assert loss.item() == pytest.approx(hand_loss(), rel=1e-6)


def test_hand_computed_weights():
    w = par_loss_weights(torch.tensor(LABELS), torch.tensor(RATIOS))
    expected = torch.tensor([[math.exp(0.75), math.exp(0.5)], [0.0, math.exp(0.5)]])
    torch.testing.assert_close(w, expected)


def test_hand_computed_gradient_and_uncertain_gets_none():
    logits = torch.tensor(LOGITS, requires_grad=True)
    weighted_bce_with_logits(logits, torch.tensor(LABELS), torch.tensor(RATIOS)).backward()
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    # d/dx [w * BCE(x, y)] / B = w * (sigmoid(x) - y) / B
    expected = torch.tensor(
        [
            [math.exp(0.75) * (sig(0) - 1) / 2, math.exp(0.5) * sig(2) / 2],
            [0.0, math.exp(0.5) * (sig(0) - 1) / 2],
        ]
    )
    torch.testing.assert_close(logits.grad, expected)
    assert logits.grad[1, 0].item() == 0.0


def test_uncertain_entries_contribute_nothing_even_for_extreme_logits():
    base = weighted_bce_with_logits(torch.tensor(LOGITS), torch.tensor(LABELS), torch.tensor(RATIOS))
    for value in (-50.0, 50.0, float("inf"), float("-inf")):
        logits = torch.tensor(LOGITS)
        logits[1, 0] = value
        logits.requires_grad_(True)
        loss = weighted_bce_with_logits(logits, torch.tensor(LABELS), torch.tensor(RATIOS))
        loss.backward()
        assert loss.item() == pytest.approx(base.item(), rel=1e-6)
        assert logits.grad[1, 0].item() == 0.0
        assert torch.isfinite(logits.grad).all()


def test_batch_size_normalisation():
    logits, labels, ratios = torch.tensor(LOGITS), torch.tensor(LABELS), torch.tensor(RATIOS)
    full = weighted_bce_with_logits(logits, labels, ratios)
    # the batch repeated twice has the same mean-over-batch loss
    doubled = weighted_bce_with_logits(logits.repeat(2, 1), labels.repeat(2, 1), ratios)
    torch.testing.assert_close(doubled, full)
    # and it is the mean of the single-sample losses (sum over attributes, not mean)
    singles = [weighted_bce_with_logits(logits[i : i + 1], labels[i : i + 1], ratios) for i in range(2)]
    torch.testing.assert_close(full, (singles[0] + singles[1]) / 2)
    sample_0 = math.exp(0.75) * math.log(2) + math.exp(0.5) * math.log(1 + math.e**2)
    assert singles[0].item() == pytest.approx(sample_0, rel=1e-6)


def test_ratios_zero_and_one_are_fine():
    labels = torch.tensor([[1, 0], [0, 1]])
    w = par_loss_weights(labels, torch.tensor([0.0, 1.0]))
    # positive with r=0 -> e ; negative with r=1 -> e ; negative with r=0 -> 1 ; positive with r=1 -> 1
    torch.testing.assert_close(w, torch.tensor([[math.e, math.e], [1.0, 1.0]]))
    logits = torch.zeros(2, 2, requires_grad=True)
    loss = weighted_bce_with_logits(logits, labels, torch.tensor([0.0, 1.0]))
    loss.backward()
    assert loss.item() == pytest.approx((2 * math.e + 2) * math.log(2) / 2, rel=1e-6)
    assert torch.isfinite(logits.grad).all()


def test_dtype_and_autocast():
    logits32 = torch.tensor(LOGITS)
    labels, ratios = torch.tensor(LABELS), torch.tensor(RATIOS, dtype=torch.float64)
    loss = weighted_bce_with_logits(logits32.bfloat16(), labels.float(), ratios)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(hand_loss(), rel=1e-6)  # these logits are exact in bf16

    layer = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    labels = torch.tensor([[1, 0], [0, 2], [1, 1], [0, 0]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(x)
        assert logits.dtype == torch.bfloat16
        loss = weighted_bce_with_logits(logits, labels, torch.tensor(RATIOS))
    assert loss.dtype == torch.float32
    reference = weighted_bce_with_logits(logits.float(), labels, torch.tensor(RATIOS))
    torch.testing.assert_close(loss, reference)
    loss.backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


def test_float_and_bool_labels_equal_int_labels():
    logits, ratios = torch.tensor(LOGITS), torch.tensor(RATIOS)
    as_int = weighted_bce_with_logits(logits, torch.tensor(LABELS), ratios)
    as_float = weighted_bce_with_logits(logits, torch.tensor(LABELS, dtype=torch.float32), ratios)
    torch.testing.assert_close(as_int, as_float)
    bool_labels = torch.tensor([[True, False], [False, True]])
    torch.testing.assert_close(
        weighted_bce_with_logits(logits, bool_labels, ratios),
        weighted_bce_with_logits(logits, bool_labels.long(), ratios),
    )


def test_validate_labels():
    validate_labels(torch.tensor(LABELS), 2)
    with pytest.raises(ValueError, match="expected 2 attributes, got labels of width 3"):
        validate_labels(torch.zeros(4, 3), 2)
    with pytest.raises(ValueError, match=r"found other values: -1, 3"):
        validate_labels(torch.tensor([[1, -1], [3, 0]]), 2)
    with pytest.raises(ValueError, match=r"found other values: 0\.5"):
        validate_labels(torch.tensor([[0.5, 1.0]]), 2)
    with pytest.raises(ValueError, match="2-D"):
        validate_labels(torch.tensor([1, 0]), 2)
    with pytest.raises(ValueError, match="torch.Tensor"):
        validate_labels([[1, 0]], 2)


def test_loss_rejects_bad_inputs():
    logits, labels, ratios = torch.tensor(LOGITS), torch.tensor(LABELS), torch.tensor(RATIOS)
    with pytest.raises(ValueError, match="expected 2 attributes, got labels of width 3"):
        weighted_bce_with_logits(logits, torch.zeros(2, 3), ratios)
    with pytest.raises(ValueError, match="found other values: 5"):
        weighted_bce_with_logits(logits, torch.tensor([[1, 5], [0, 0]]), ratios)
    with pytest.raises(ValueError, match="2 samples but labels have 3"):
        weighted_bce_with_logits(logits, torch.zeros(3, 2), ratios)
    with pytest.raises(ValueError, match=r"positive_ratios must have shape \(2,\)"):
        weighted_bce_with_logits(logits, labels, torch.tensor([0.5, 0.5, 0.5]))
    with pytest.raises(ValueError, match=r"positive_ratios must lie in \[0, 1\]"):
        weighted_bce_with_logits(logits, labels, torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="logits must have shape"):
        weighted_bce_with_logits(logits[0], labels, ratios)
    with pytest.raises(ValueError, match="empty batch"):
        weighted_bce_with_logits(torch.zeros(0, 2), torch.zeros(0, 2), ratios)


def test_compute_positive_ratios():
    labels = torch.tensor([[1, 0, 2], [0, 0, 2], [1, 2, 2]])
    # column 0: 2 of 3 certain are positive; column 1: 0 of 2; column 2: no certain entry -> 0.5
    torch.testing.assert_close(compute_positive_ratios(labels), torch.tensor([2 / 3, 0.0, 0.5]))
