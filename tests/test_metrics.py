"""Tests for par_prompt.metrics against hand-computed values (docs/method.md §9)."""

import json
import os

import numpy as np
import pytest
import torch

from par_prompt.metrics import (
    EVALUATE_METRIC_PATH,
    ParMetricAccumulator,
    ParMetrics,
    calibrate_thresholds,
    compute_par_metrics,
    load_evaluate_metric,
)

# 3 samples x 4 attributes; one uncertain entry (sample 1, attribute 3) and an attribute
# (3) without any certain positive.
PROBS = np.array(
    [
        [0.9, 0.2, 0.6, 0.1],
        [0.3, 0.8, 0.4, 0.7],
        [0.6, 0.4, 0.9, 0.2],
    ]
)
LABELS = np.array(
    [
        [1, 0, 1, 0],
        [1, 1, 0, 2],
        [0, 0, 1, 0],
    ]
)
# By hand, threshold 0.5 -> predictions [1,0,1,0], [0,1,0,(1: uncertain, dropped)], [1,0,1,0]
#   attribute 0: labels 1,1,0 preds 1,0,1 -> PR 1/2, NR 0/1
#   attribute 1: labels 0,1,0 preds 0,1,0 -> PR 1,   NR 1
#   attribute 2: labels 1,0,1 preds 1,0,1 -> PR 1,   NR 1
#   attribute 3: labels 0,-,0 preds 0,-,0 -> PR n/a (no positives), NR 1, unscored
#   mA = mean(0.25, 1, 1) = 0.75 (over the three scored attributes)
#   precision TP/(TP+FP): attribute 0: 1/2, 1: 1, 2: 1 -> F1 with PR: 1/2, 1, 1
#   AP (by probability): attribute 0: 0.9+ 0.6- 0.3+ -> (1/2)·1 + (1/2)·(2/3) = 5/6
#                        attribute 1: 0.8+ 0.4- 0.2- -> 1;  attribute 2: 0.9+ 0.6+ 0.4- -> 1
#   sample 0: G={0,2} P={0,2}: Acc 1,   Prec 1,   Rec 1,   F1 1
#   sample 1: G={0,1} P={1}:   Acc 1/2, Prec 1,   Rec 1/2, F1 2/3
#   sample 2: G={2}   P={0,2}: Acc 1/2, Prec 1/2, Rec 1,   F1 2/3
HAND = dict(
    mA=0.75,
    accuracy=2 / 3,
    precision=5 / 6,
    recall=5 / 6,
    f1=7 / 9,
    positive_recall=[0.5, 1.0, 1.0, None],
    negative_recall=[0.0, 1.0, 1.0, 1.0],
    attribute_precision=[0.5, 1.0, 1.0, None],
    attribute_f1=[0.5, 1.0, 1.0, None],
    average_precision=[5 / 6, 1.0, 1.0, None],
    mAP=(5 / 6 + 2) / 3,
    mean_attribute_precision=2.5 / 3,
    mean_attribute_f1=2.5 / 3,
    num_attributes_scored=3,
)


def assert_same_result(got: dict, expected: dict):
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, float) or (isinstance(value, list) and value and isinstance(value[0], float)):
            assert got[key] == pytest.approx(value), key
        else:
            assert got[key] == value, key


def assert_matches(metrics, expected):
    for key, value in expected.items():
        got = getattr(metrics, key)
        if isinstance(value, list):  # None ("n/a") entries must match exactly
            assert [g is None for g in got] == [v is None for v in value], key
            got, value = [g for g in got if g is not None], [v for v in value if v is not None]
        assert got == pytest.approx(value), key


def test_hand_computed_case():
    m = compute_par_metrics(PROBS, LABELS, threshold=0.5)
    assert_matches(m, HAND)
    assert m.num_samples == 3
    assert m.num_positives == [2, 1, 2, 0]
    assert m.num_negatives == [1, 2, 1, 2]
    assert m.num_uncertain == 1
    assert m.num_attributes_without_positives == 1
    assert m.num_attributes_without_negatives == 0
    assert m.f1_of_means == pytest.approx(5 / 6)
    assert m.threshold == 0.5
    assert m.attribute_names == ["attr_0", "attr_1", "attr_2", "attr_3"]


def test_uncertain_entries_are_excluded_not_counted_negative():
    # Were the uncertain entry counted, sample 1 would have P={1,3} and Prec 1/2.
    m = compute_par_metrics(PROBS, LABELS)
    labels_certain = LABELS.copy()
    labels_certain[1, 3] = 0
    m_certain = compute_par_metrics(PROBS, labels_certain)
    assert m.precision == pytest.approx(5 / 6)
    assert m_certain.precision == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert m_certain.negative_recall[3] == pytest.approx(2 / 3)


def test_zero_denominators_count_as_zero():
    probs = np.array([[0.1, 0.2], [0.9, 0.1], [0.7, 0.3]])
    labels = np.array([[0, 0], [1, 0], [0, 0]])
    # sample 0: G={} P={}  -> Acc, Prec, Rec, F1 all 0 (0/0)
    # sample 1: G={0} P={0} -> all 1
    # sample 2: G={} P={0} -> Acc 0/1, Prec 0/1, Rec 0/0 -> 0, F1 0
    # attribute 0: labels 0,1,0 preds 0,1,1 -> PR 1, NR 1/2 ; attribute 1: no positives -> PR n/a, NR 1
    m = compute_par_metrics(probs, labels)
    assert_matches(
        m,
        dict(
            accuracy=1 / 3,
            precision=1 / 3,
            recall=1 / 3,
            f1=1 / 3,
            positive_recall=[1.0, None],
            negative_recall=[0.5, 1.0],
            mA=0.75,  # attribute 1 is left out, not counted as (0 + 1) / 2
        ),
    )
    assert m.num_attributes_without_positives == 1 and m.num_attributes_scored == 1
    assert not any(v is not None and np.isnan(v) for v in m.as_dict()["positive_recall"])


def test_attribute_without_negatives_is_na_not_zero():
    m = compute_par_metrics(np.array([[0.9, 0.9], [0.2, 0.1]]), np.array([[1, 1], [1, 0]]))
    assert m.positive_recall == [0.5, 1.0] and m.negative_recall == [None, 1.0]
    assert m.attribute_mA == [None, 1.0] and m.mA == 1.0
    assert m.average_precision == [None, 1.0] and m.attribute_precision[0] is None and m.attribute_f1[0] is None
    assert m.num_attributes_without_negatives == 1 and m.num_attributes_scored == 1


def test_no_scored_attribute_gives_na_means_and_instance_scores_still():
    m = compute_par_metrics(np.array([[0.9], [0.2]]), np.array([[1], [1]]))
    assert m.mA is None and m.mAP is None and m.mean_attribute_precision is None and m.mean_attribute_f1 is None
    assert m.recall == pytest.approx(0.5)
    assert m.paper_row().startswith("mA n/a | Acc 50.00")
    assert json.loads(json.dumps(m.as_dict()))["mA"] is None


def test_average_precision_by_hand_with_ties():
    from par_prompt.metrics import average_precision

    # ranked 0.9+, 0.8-, 0.7+, 0.6-: precision 1 at recall 1/2, 2/3 at recall 1
    assert average_precision(np.array([0.6, 0.9, 0.7, 0.8]), np.array([0, 1, 1, 0], bool)) == pytest.approx(5 / 6)
    # a tie between a positive and a negative counts once, at precision 1/2
    assert average_precision(np.array([0.9, 0.9, 0.1]), np.array([1, 0, 1], bool)) == pytest.approx(
        0.5 * 0.5 + 0.5 * 2 / 3)
    # AP does not depend on the threshold; uncertain entries are left out of it
    probs = np.array([[0.9], [0.8], [0.7], [0.6]])
    labels = np.array([[1], [2], [0], [1]])  # without the uncertain row: 0.9+, 0.7-, 0.6+
    for t in (0.1, 0.5, 0.95):
        assert compute_par_metrics(probs, labels, threshold=t).mAP == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_f1_is_mean_of_per_sample_f1():
    # sample 0: Prec 1, Rec 1/3 -> F1 1/2 ; sample 1: Prec 1/2, Rec 1 -> F1 2/3
    probs = np.array([[0.9, 0.1, 0.1], [0.9, 0.9, 0.1]])
    labels = np.array([[1, 1, 1], [1, 0, 0]])
    m = compute_par_metrics(probs, labels)
    assert m.precision == pytest.approx(0.75)
    assert m.recall == pytest.approx(2 / 3)
    assert m.f1 == pytest.approx((0.5 + 2 / 3) / 2)
    assert m.f1_of_means == pytest.approx(2 * 0.75 * (2 / 3) / (0.75 + 2 / 3))


def test_threshold_is_strict():
    m = compute_par_metrics(np.array([[0.5], [0.5]]), np.array([[1], [0]]), threshold=0.5)
    assert m.positive_recall == [0.0] and m.negative_recall == [1.0]
    m = compute_par_metrics(np.array([[0.5], [0.5]]), np.array([[1], [0]]), threshold=0.49)
    assert m.positive_recall == [1.0] and m.negative_recall == [0.0]


def test_per_attribute_thresholds():
    # thresholds (0.7, 0.5, 0.5, 0.1):
    #   attribute 0: preds 1,0,0 vs labels 1,1,0 -> PR 1/2, NR 1
    #   attribute 3: preds 0 (0.1 is not > 0.1), -, 1 vs labels 0,-,0 -> PR n/a, NR 1/2 (unscored)
    #   sample 0: P={0,2} G={0,2}; sample 1: P={1} G={0,1}; sample 2: P={2,3} G={2}
    m = compute_par_metrics(PROBS, LABELS, threshold=[0.7, 0.5, 0.5, 0.1])
    assert_matches(
        m,
        dict(
            mA=(0.75 + 1 + 1) / 3,
            positive_recall=[0.5, 1.0, 1.0, None],
            negative_recall=[1.0, 1.0, 1.0, 0.5],
            accuracy=2 / 3,
            precision=5 / 6,
            recall=5 / 6,
            f1=7 / 9,
        ),
    )
    assert m.threshold == [0.7, 0.5, 0.5, 0.1]
    same = compute_par_metrics(PROBS, LABELS, threshold=np.array([0.7, 0.5, 0.5, 0.1]))
    assert same.as_dict() == m.as_dict()


def test_torch_inputs():
    probs = torch.tensor(PROBS, dtype=torch.float32, requires_grad=True)
    labels = torch.tensor(LABELS, dtype=torch.long)
    assert_matches(compute_par_metrics(probs, labels), HAND)
    # bf16 probabilities and float labels, threshold as a tensor
    m = compute_par_metrics(probs.detach().bfloat16(), labels.float(), threshold=torch.tensor(0.5))
    assert_matches(m, HAND)
    assert m.threshold == 0.5


def test_validation_errors():
    with pytest.raises(ValueError, match="same shape"):
        compute_par_metrics(PROBS, LABELS[:, :3])
    bad = LABELS.copy()
    bad[0, 0], bad[1, 3] = -1, 3
    with pytest.raises(ValueError, match=r"found other values: -1, 3"):
        compute_par_metrics(PROBS, bad)
    with pytest.raises(ValueError, match=r"0\.5"):
        compute_par_metrics(PROBS, LABELS * 0.5)
    with pytest.raises(ValueError, match="sigmoid"):
        compute_par_metrics(PROBS * 4 - 2, LABELS)
    with pytest.raises(ValueError, match="NaN"):
        compute_par_metrics(np.full((3, 4), np.nan), LABELS)
    with pytest.raises(ValueError, match=r"threshold must lie in \[0, 1\]"):
        compute_par_metrics(PROBS, LABELS, threshold=1.5)
    with pytest.raises(ValueError, match=r"got 2 thresholds for 4 attributes; give one per attribute"):
        compute_par_metrics(PROBS, LABELS, threshold=[0.5, 0.5])
    with pytest.raises(ValueError, match=r"every threshold must lie in \[0, 1\]"):
        compute_par_metrics(PROBS, LABELS, threshold=[0.5, 0.5, 0.5, -0.1])
    with pytest.raises(ValueError, match="shape"):
        compute_par_metrics(PROBS[0], LABELS[0])
    with pytest.raises(ValueError, match="rectangular"):
        compute_par_metrics([[0.1, 0.2], [0.3]], [[0, 1], [1]])
    with pytest.raises(ValueError, match="zero samples"):
        compute_par_metrics(np.zeros((0, 4)), np.zeros((0, 4), int))
    with pytest.raises(ValueError, match="2 attribute names for 4 attributes"):
        compute_par_metrics(PROBS, LABELS, attribute_names=["a", "b"])


def test_as_dict_is_json_serialisable():
    m = compute_par_metrics(
        torch.tensor(PROBS), torch.tensor(LABELS), threshold=np.array([0.5] * 4), attribute_names=list("abcd")
    )
    data = json.loads(json.dumps(m.as_dict()))
    assert data["mA"] == pytest.approx(0.75)
    assert data["positive_recall"][3] is None and data["average_precision"][3] is None
    assert data["threshold"] == [0.5] * 4
    assert data["attribute_names"] == ["a", "b", "c", "d"]
    assert ParMetrics(**data) == m


def test_paper_row_and_table():
    m = ParMetrics(
        mA=0.87474,
        accuracy=0.83776,
        precision=0.8927,
        recall=0.917,
        f1=0.90149,
        threshold=0.5,
        positive_recall=[],
        negative_recall=[],
        attribute_names=[],
        num_samples=1,
    )
    assert m.paper_row() == "mA 87.47 | Acc 83.78 | Prec 89.27 | Rec 91.70 | F1 90.15 (threshold 0.5)"
    hand = compute_par_metrics(PROBS, LABELS, threshold=[0.7, 0.5, 0.5, 0.1], attribute_names=list("wxyz"))
    assert hand.paper_row().endswith("(per-attribute thresholds)")
    table = compute_par_metrics(PROBS, LABELS, attribute_names=["Female", "Hat", "Glasses", "Boots"])
    text = table.per_attribute_table()
    rows = {line.split()[0]: line.split() for line in text.splitlines()}
    # name, threshold, #pos, #neg, pos recall, neg recall, mA, precision, F1, AP
    assert rows["Boots"] == ["Boots", "0.50", "0", "2", "n/a", "100.00", "n/a", "n/a", "n/a", "n/a"]
    assert rows["Female"] == ["Female", "0.50", "2", "1", "50.00", "0.00", "25.00", "50.00", "50.00", "83.33"]
    assert rows["mean"][1:] == ["75.00", "83.33", "83.33", "94.44"]  # mA, prec, F1, mAP over 3 attributes
    assert "over the 3 of 4 attributes" in table.label_row() and table.label_row().startswith("mAP 94.44")


def test_accumulator_matches_hand_case():
    acc = ParMetricAccumulator(num_attributes=4)
    acc.update(torch.tensor(PROBS[:1]), torch.tensor(LABELS[:1]))
    acc.update(PROBS[1:], LABELS[1:])
    assert acc.num_samples == 3
    np.testing.assert_array_equal(acc.labels, LABELS)
    assert_matches(acc.compute(threshold=0.5), HAND)
    with pytest.raises(ValueError, match="expected 4 attributes, got probs of width 3"):
        acc.update(PROBS[:, :3], LABELS[:, :3])
    acc.reset()
    assert acc.num_samples == 0 and acc.probs.shape == (0, 4)
    with pytest.raises(ValueError, match="no samples"):
        acc.compute()


def test_calibrate_thresholds_hand_case():
    probs = np.array(
        [
            [0.10, 0.2, 0.3],
            [0.30, 0.9, 0.6],
            [0.35, 0.1, 0.9],
            [0.80, 0.8, 0.2],
        ]
    )
    labels = np.array(
        [
            [0, 0, 2],
            [1, 1, 2],
            [1, 0, 2],
            [1, 1, 2],
        ]
    )
    # attribute 0 on grid (0.2, 0.4, 0.5, 0.6): t=0.2 -> preds 0,1,1,1: PR 1, NR 1 -> best;
    #   t>=0.4 -> PR 1/3.
    # attribute 1: every grid value separates perfectly -> tie -> closest to 0.5.
    # attribute 2: all uncertain -> every score 0 -> tie -> 0.5.
    out = calibrate_thresholds(probs, labels, grid=[0.2, 0.4, 0.5, 0.6])
    np.testing.assert_allclose(out, [0.2, 0.5, 0.5])
    # equal distance to 0.5: the smaller threshold wins
    np.testing.assert_allclose(calibrate_thresholds(probs, labels, grid=[0.6, 0.4])[1:], [0.4, 0.4])
    # default grid 0.01..0.99: attribute 0 is perfect for t in [0.10, 0.30), closest to 0.5 is 0.29
    assert calibrate_thresholds(probs, labels)[0] == pytest.approx(0.29)
    with pytest.raises(ValueError, match="grid"):
        calibrate_thresholds(probs, labels, grid=[0.5, 1.2])


def test_calibrated_thresholds_never_lower_attribute_ma():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=(60, 5))
    probs = np.clip(0.35 * (labels == 1) + rng.random((60, 5)) * 0.6, 0, 1)
    thresholds = calibrate_thresholds(probs, labels)
    tuned = compute_par_metrics(probs, labels, threshold=thresholds).attribute_mA
    default = compute_par_metrics(probs, labels, threshold=0.5).attribute_mA
    assert None not in tuned and all(t >= d - 1e-12 for t, d in zip(tuned, default))


def test_evaluate_metric_path_layout():
    assert os.path.basename(EVALUATE_METRIC_PATH) == "par_metrics"
    assert os.path.isfile(os.path.join(EVALUATE_METRIC_PATH, "par_metrics.py"))


def test_evaluate_module_matches_compute_par_metrics(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    import evaluate
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)

    rng = np.random.default_rng(1)
    probs = rng.integers(0, 9, size=(20, 6)) / 8  # exact in float32
    labels = rng.integers(0, 3, size=(20, 6))

    metric = load_evaluate_metric(keep_in_memory=True, cache_dir=str(tmp_path))
    out = metric.compute(predictions=probs.tolist(), references=labels.tolist())
    assert_same_result(out, compute_par_metrics(probs, labels).as_dict())

    # batches + per-attribute thresholds
    thresholds = [0.25, 0.5, 0.5, 0.75, 0.1, 0.9]
    for i in range(0, 20, 8):
        metric.add_batch(predictions=probs[i : i + 8].tolist(), references=labels[i : i + 8].tolist())
    out = metric.compute(threshold=thresholds)
    assert_same_result(out, compute_par_metrics(probs, labels, threshold=thresholds).as_dict())
    assert out["threshold"] == thresholds

    # the hand case, through evaluate
    out = metric.compute(predictions=PROBS.tolist(), references=LABELS.tolist())
    assert out["mA"] == pytest.approx(HAND["mA"]) and out["f1"] == pytest.approx(HAND["f1"])
