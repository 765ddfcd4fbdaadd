"""``par-prompt evaluate`` end to end on a tiny model and a tiny synthetic data set."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from par_prompt import PromptPARModel, calibrate_thresholds, compute_par_metrics
from par_prompt.evaluation import EvaluationError, check_attributes, resolve_threshold
from par_prompt.evaluation.cli import register, run

from .builders import direct_probabilities

ROW = re.compile(
    r"^mA (\d+\.\d\d) \| Acc (\d+\.\d\d) \| Prec (\d+\.\d\d) \| Rec (\d+\.\d\d) \| F1 (\d+\.\d\d) \| threshold (.+)$",
    re.MULTILINE,
)
REPO_ROOT = Path(__file__).resolve().parents[2]


def evaluate(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="par-prompt")
    register(parser.add_subparsers(dest="command"))
    return run(parser.parse_args(["evaluate", *map(str, argv)]))


@pytest.fixture(scope="module")
def direct(model, data):
    """Probabilities computed with the model's forward on the images, per split."""
    return {split: direct_probabilities(model, data.splits[split]) for split in ("validation", "test")}


def _paper_numbers(metrics):
    return {"mA": metrics.mA, "Acc": metrics.accuracy, "Prec": metrics.precision, "Rec": metrics.recall,
            "F1": metrics.f1}


def test_default_threshold_output_and_json(model_dir, data_dir, data, direct, tmp_path, capsys):
    out = tmp_path / "results" / "test.json"
    assert evaluate("--model", model_dir, "--dataset", data_dir, "--batch-size", 3, "--output", out) == 0
    printed = capsys.readouterr().out

    expected = compute_par_metrics(*direct["test"], threshold=0.5, attribute_names=data.attributes)
    row = ROW.search(printed)
    assert row, printed
    numbers = [float(v) for v in row.groups()[:5]]
    assert numbers == [round(100 * v, 2) for v in _paper_numbers(expected).values()]
    assert row.group(6) == "global 0.50"
    assert "split 'test' (8 images)" in printed
    table = printed[printed.index("attribute "):]
    assert table.splitlines()[0].split() == ["attribute", "thr", "#pos", "#neg", "pos_rec", "neg_rec", "mA"]
    for name in data.attributes:
        assert re.search(rf"^{name}\s+0\.50\s", table, re.MULTILINE), name

    report = json.loads(out.read_text())
    assert report["model"] == str(model_dir) and report["dataset"] == str(data_dir)
    assert report["split"] == "test" and report["num_images"] == 8
    assert report["threshold"] == {"description": "global 0.50", "source": "config.threshold", "per_attribute": False,
                                   "value": 0.5, "values": [0.5] * len(data.attributes)}
    assert report["calibration"] is None
    assert report["paper_row"] == {k: round(100 * v, 2) for k, v in _paper_numbers(expected).items()}
    for key, value in _paper_numbers(expected).items():
        field = {"Acc": "accuracy", "Prec": "precision", "Rec": "recall", "F1": "f1"}.get(key, key)
        assert report["metrics"][field] == pytest.approx(value, abs=1e-9)
    assert [a["attribute"] for a in report["per_attribute"]] == data.attributes
    assert [a["positive_recall"] for a in report["per_attribute"]] == [
        round(100 * v, 2) for v in expected.positive_recall]
    assert [a["negative_recall"] for a in report["per_attribute"]] == [
        round(100 * v, 2) for v in expected.negative_recall]
    assert [a["num_positives"] for a in report["per_attribute"]] == expected.num_positives


def test_threshold_option_overrides_the_config(model_dir, data_dir, data, direct, tmp_path, capsys):
    out = tmp_path / "t.json"
    assert evaluate("--model", model_dir, "--dataset", data_dir, "--threshold", 0.3, "--output", out) == 0
    row = ROW.search(capsys.readouterr().out)
    assert row.group(6) == "global 0.30"
    expected = compute_par_metrics(*direct["test"], threshold=0.3)
    report = json.loads(out.read_text())
    assert report["threshold"]["source"] == "--threshold"
    assert report["metrics"]["mA"] == pytest.approx(expected.mA, abs=1e-9)
    assert report["metrics"]["accuracy"] == pytest.approx(expected.accuracy, abs=1e-9)


def test_calibration_is_done_on_validation_stored_and_reloaded(model_dir, data_dir, data, direct, tmp_path, capsys):
    out, saved = tmp_path / "cal.json", tmp_path / "calibrated"
    assert evaluate("--model", model_dir, "--dataset", data_dir, "--calibrate", "--save-calibrated", saved,
                    "--output", out) == 0
    printed = capsys.readouterr().out
    assert ROW.search(printed).group(6) == "per-attribute (calibrated on validation)"

    thresholds = calibrate_thresholds(*direct["validation"])
    assert not np.allclose(thresholds, 0.5)  # the test below would not tell calibration from the default
    report = json.loads(out.read_text())
    np.testing.assert_allclose(report["threshold"]["values"], thresholds)
    assert report["threshold"]["per_attribute"] and report["threshold"]["value"] is None
    assert report["calibration"] == {"split": "validation", "num_images": 8}
    assert report["saved_calibrated_model"] == str(saved)
    expected = compute_par_metrics(*direct["test"], threshold=thresholds)
    assert report["metrics"]["mA"] == pytest.approx(expected.mA, abs=1e-9)
    assert report["metrics"]["f1"] == pytest.approx(expected.f1, abs=1e-9)

    reloaded = PromptPARModel.from_pretrained(saved)
    np.testing.assert_allclose(reloaded.config.attribute_thresholds, thresholds)
    assert PromptPARModel.from_pretrained(model_dir).config.attribute_thresholds is None  # source untouched

    out2 = tmp_path / "reloaded.json"
    assert evaluate("--model", saved, "--dataset", data_dir, "--output", out2) == 0
    assert ROW.search(capsys.readouterr().out).group(6) == "per-attribute (from the model config)"
    again = json.loads(out2.read_text())
    assert again["threshold"]["source"] == "config.attribute_thresholds"
    assert again["paper_row"] == report["paper_row"]


def test_example_script_shares_the_command(model_dir, data_dir, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("evaluate_par", REPO_ROOT / "examples" / "evaluate_par.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out_example, out_cli = tmp_path / "example.json", tmp_path / "cli.json"
    assert example.main(["--model", str(model_dir), "--dataset", str(data_dir), "--output", str(out_example)]) == 0
    assert evaluate("--model", model_dir, "--dataset", data_dir, "--output", out_cli) == 0
    capsys.readouterr()
    assert json.loads(out_example.read_text()) == json.loads(out_cli.read_text())


# ------------------------------------------------------------------------ bad input


def _error(capsys) -> str:
    """The command's error: exactly one line, the last one on stderr (loading may log before it)."""
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    ours = [line for line in lines if "par-prompt evaluate" in line]
    assert len(ours) == 1 and lines[-1] == ours[0], captured.err
    assert ours[0].startswith("par-prompt evaluate: error: ")
    return ours[0]


def test_folder_without_promptpar_config(data_dir, tmp_path, capsys):
    assert evaluate("--model", data_dir, "--dataset", data_dir) == 2
    assert "config.json" in _error(capsys)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert evaluate("--model", tmp_path, "--dataset", data_dir) == 2
    assert "'bert'" in _error(capsys)


def test_unknown_split_lists_the_available_ones(model_dir, data_dir, capsys):
    assert evaluate("--model", model_dir, "--dataset", data_dir, "--split", "dev") == 2
    assert "'dev'" in (message := _error(capsys)) and "train, validation, test" in message


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan"])
def test_threshold_outside_unit_interval(model_dir, data_dir, capsys, value):
    assert evaluate("--model", model_dir, "--dataset", data_dir, "--threshold", value) == 2
    assert "[0, 1]" in _error(capsys)


def test_calibrating_on_the_evaluated_validation_split_is_refused(model_dir, data_dir, capsys):
    assert evaluate("--model", model_dir, "--dataset", data_dir, "--split", "validation", "--calibrate") == 2
    message = _error(capsys)
    assert "'validation'" in message and "inflate" in message


@pytest.mark.parametrize("argv, words", [
    (["--save-calibrated", "x"], "needs --calibrate"),
    (["--calibrate", "--threshold", "0.4"], "exclude each other"),
    (["--batch-size", "0"], "--batch-size"),
])
def test_inconsistent_options(model_dir, data_dir, capsys, argv, words):
    assert evaluate("--model", model_dir, "--dataset", data_dir, *argv) == 2
    assert words in _error(capsys)


def test_calibration_needs_a_validation_split(model_dir, data, tmp_path, capsys):
    from datasets import DatasetDict

    from par_prompt.data import load, save

    splits = DatasetDict({name: data.splits[name] for name in ("train", "test")})
    save(load(splits, attributes=data.attributes, sentences=data.sentences), tmp_path / "no-val")
    assert evaluate("--model", model_dir, "--dataset", tmp_path / "no-val", "--calibrate") == 2
    message = _error(capsys)
    assert "no 'validation' split to calibrate the thresholds on" in message and "train, test" in message


def test_attribute_mismatch_names_the_differences(model_dir, data, tmp_path, capsys):
    from par_prompt.data import load, save

    renamed = list(data.attributes)
    renamed[2] = "sunglasses"
    save(load(data.splits, attributes=renamed, sentences=data.sentences), tmp_path / "renamed")
    assert evaluate("--model", model_dir, "--dataset", tmp_path / "renamed") == 2
    message = _error(capsys)
    assert "#2: model 'glasses' vs data 'sunglasses'" in message
    assert "only the data set has 'sunglasses'" in message


def test_check_attributes_reports_width_and_count():
    with pytest.raises(EvaluationError, match="labels hold 3 values per image but the model predicts 2"):
        check_attributes(["a", "b"], ["a", "b"], label_width=3)
    with pytest.raises(EvaluationError, match="the model has 2 attributes, the data set 3.*only the data set has 'c'"):
        check_attributes(["a", "b"], ["a", "b", "c"])
    check_attributes(["a", "b"], ["a", "b"], label_width=2)


def test_threshold_precedence():
    class Config:
        threshold = 0.4
        attribute_thresholds = None

    assert resolve_threshold(Config()).describe() == "global 0.40"
    Config.attribute_thresholds = [0.2, 0.7]
    assert resolve_threshold(Config()).value == [0.2, 0.7]
    assert resolve_threshold(Config()).describe() == "per-attribute (from the model config)"
    assert resolve_threshold(Config(), 0.6).value == 0.6
    with pytest.raises(EvaluationError, match=r"\[0, 1\]"):
        resolve_threshold(Config(), 2.0)
