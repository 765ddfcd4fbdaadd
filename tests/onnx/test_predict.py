"""ONNXPromptPARPredictor and ``par-prompt predict --onnx``: the same predictions as PyTorch."""

from __future__ import annotations

import json

import onnx
import pytest

from par_prompt.inference.predict import predict
from par_prompt.onnx import TOLERANCE, ONNXPromptPARPredictor

from ..inference.conftest import ATTRIBUTES
from .conftest import run_cli


def assert_same_predictions(onnx_results, torch_results) -> None:
    assert len(onnx_results) == len(torch_results)
    for got, expected in zip(onnx_results, torch_results):
        assert (got.index, got.source, got.threshold) == (expected.index, expected.source, expected.threshold)
        assert list(got.probabilities) == ATTRIBUTES
        assert got.probabilities == pytest.approx(expected.probabilities, abs=TOLERANCE["fp32"])
        assert got.attributes == expected.attributes


@pytest.mark.parametrize("batch_size", [1, 4])
def test_predict_gives_the_records_of_the_pytorch_model(predictor, torch_predictor, image_list, batch_size):
    expected = torch_predictor.predict(image_list, batch_size=batch_size)
    assert_same_predictions(predictor.predict(image_list, batch_size=batch_size), expected)
    assert 0 < sum(len(p.attributes) for p in expected) < len(expected) * len(ATTRIBUTES)  # thresholds matter


def test_thresholds_passed_and_unreadable_inputs(predictor, model, processor, image_list, tmp_path):
    inputs = [image_list[0], tmp_path / "missing.png", image_list[3]]
    per_attribute = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    for threshold in (0.35, per_attribute):
        got = predictor.predict(inputs, threshold=threshold, return_errors=True)
        expected = predict(model, inputs, threshold=threshold, processor=processor, return_errors=True)
        assert type(got[1]) is type(expected[1]) and str(got[1]) == str(expected[1])
        assert_same_predictions([got[0], got[2]], [expected[0], expected[2]])
    with pytest.raises(ValueError, match="thresholds for 6 attributes"):
        predictor.predict(inputs[:1], threshold=[0.5, 0.5])


def test_iter_predictions_streams_in_order(predictor, image_list):
    results = list(predictor.iter_predictions(image_list, batch_size=2))
    assert [r.index for r in results] == list(range(len(image_list)))


def test_the_file_alone_decides_the_thresholds(onnx_path, tmp_path, image_list, torch_predictor):
    """Calibrated per-attribute thresholds written into the metadata are what predict uses."""
    proto = onnx.load(onnx_path)
    thresholds = [0.05, 0.95, 0.5, 0.3, 0.7, 0.45]
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props},
                                        "par_prompt.attribute_thresholds": json.dumps(thresholds)})
    onnx.save(proto, tmp_path / "calibrated.onnx")
    calibrated = ONNXPromptPARPredictor.from_file(tmp_path / "calibrated.onnx")
    got = calibrated.predict(image_list)
    assert all(p.threshold == thresholds for p in got)
    assert_same_predictions(got, torch_predictor.predict(image_list, threshold=thresholds))


def test_predict_cli_with_onnx_matches_the_pytorch_model(onnx_path, model_dir, image_list):
    files = image_list[:3]
    code, out, err = run_cli("predict", "--onnx", onnx_path, *files, "--format", "json", "--batch-size", "2")
    assert code == 0, err
    code, reference, _ = run_cli("predict", "--model", model_dir, *files, "--format", "json")
    assert code == 0
    for got, expected in zip(json.loads(out), json.loads(reference), strict=True):
        assert got["attributes"] == expected["attributes"] and got["source"] == expected["source"]
        assert got["probabilities"] == pytest.approx(expected["probabilities"], abs=TOLERANCE["fp32"])


def test_predict_cli_needs_exactly_one_model(onnx_path, model_dir, image_list):
    code, _, err = run_cli("predict", "--onnx", onnx_path, "--model", model_dir, image_list[0])
    assert code == 2 and "not allowed with argument" in err
    code, _, err = run_cli("predict", image_list[0])
    assert code == 2 and "one of the arguments --model --onnx is required" in err
