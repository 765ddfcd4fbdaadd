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
def direct(model, processor, data):
    """Probabilities computed with the model's forward on the images, per split."""
    return {split: direct_probabilities(model, data.splits[split], processor) for split in ("validation", "test")}


def _paper_numbers(metrics):
    return {"mA": metrics.mA, "Acc": metrics.accuracy, "Prec": metrics.precision, "Rec": metrics.recall,
            "F1": metrics.f1}


def test_default_threshold_output_and_json(model_dir, data_dir, data, direct, tmp_path, capsys):
    (tmp_path / "results").mkdir()
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
    assert table.splitlines()[0].split() == ["attribute", "thr", "#pos", "#neg", "pos_rec", "neg_rec", "mA", "prec",
                                             "F1", "AP"]
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
    assert [a["positive_recall"] for a in report["per_attribute"]] == [_pct(v) for v in expected.positive_recall]
    assert [a["negative_recall"] for a in report["per_attribute"]] == [_pct(v) for v in expected.negative_recall]
    assert [a["num_positives"] for a in report["per_attribute"]] == expected.num_positives
    for key, values in (("precision", expected.attribute_precision), ("f1", expected.attribute_f1),
                        ("average_precision", expected.average_precision)):
        assert [a[key] for a in report["per_attribute"]] == [_pct(v) for v in values], key
    assert report["label_based"]["mAP"] == _pct(expected.mAP) and expected.mAP is not None


def _pct(value):
    return None if value is None else round(100 * value, 2)


def test_attributes_without_positives_are_na_not_zero(model_dir, data_dir, data, direct, tmp_path, capsys):
    """The 8-image test split lacks positives for some attributes: their positive recall, mA,
    precision, F1 and AP are n/a (null), and mA is the mean over the other attributes."""
    out = tmp_path / "na.json"
    assert evaluate("--model", model_dir, "--dataset", data_dir, "--output", out) == 0
    printed = capsys.readouterr().out
    probs, labels = direct["test"]
    empty = [i for i in range(labels.shape[1]) if not (labels[:, i] == 1).any()]
    scored = [i for i in range(labels.shape[1]) if (labels[:, i] == 1).any() and (labels[:, i] == 0).any()]
    assert empty and scored, "the fixture split no longer has an attribute without positives"
    report = json.loads(out.read_text())
    for i in empty:
        entry = report["per_attribute"][i]
        assert entry["positive_recall"] is None and entry["mA"] is None and entry["average_precision"] is None
        assert entry["precision"] is None and entry["f1"] is None and entry["negative_recall"] is not None
        assert re.search(rf"^{data.attributes[i]}\s.*\bn/a\b", printed, re.MULTILINE)
    # mA by hand over the scored attributes only
    predicted = probs > 0.5
    by_hand = np.mean([((predicted[:, i] & (labels[:, i] == 1)).sum() / (labels[:, i] == 1).sum()
                        + (~predicted[:, i] & (labels[:, i] == 0)).sum() / (labels[:, i] == 0).sum()) / 2
                       for i in scored])
    assert report["metrics"]["mA"] == pytest.approx(by_hand, abs=1e-9)
    assert report["label_based"]["num_attributes_scored"] == len(scored)
    assert f"over the {len(scored)} of {labels.shape[1]} attributes" in printed


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


@pytest.mark.parametrize("option", ["--output", "--save-calibrated"])
def test_results_are_never_written_into_the_model_or_the_data(model_dir, data_dir, capsys, option):
    for folder, name in ((model_dir, "--model"), (data_dir, "--dataset")):
        before = sorted((p.relative_to(folder), p.stat().st_mtime_ns) for p in folder.rglob("*"))
        target = folder / "config.json" if option == "--output" else folder
        extra = ["--calibrate"] if option == "--save-calibrated" else []
        assert evaluate("--model", model_dir, "--dataset", data_dir, option, target, *extra) == 2
        assert f"{name} {folder}" in (message := _error(capsys)) and "writing there would change it" in message
        assert sorted((p.relative_to(folder), p.stat().st_mtime_ns) for p in folder.rglob("*")) == before


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
    with pytest.raises(ValueError, match=r"threshold must lie in \[0, 1\], got 2.0"):  # par_prompt.thresholds
        resolve_threshold(Config(), 2.0)


# ---------------------------------------------- checked before the evaluation runs


@pytest.fixture
def no_evaluation(monkeypatch):
    """Makes any evaluation fail loudly: a test using it proves its error came first."""
    import par_prompt.evaluation.evaluate as module

    def forbidden(*args, **kwargs):
        raise AssertionError("the evaluation ran")

    monkeypatch.setattr(module, "predict_split", forbidden)


@pytest.mark.parametrize("case", ["directory", "missing folder", "folder is a file", "device node"])
def test_unwritable_output_is_refused_before_evaluating(model_dir, data_dir, tmp_path, capsys, no_evaluation, case):
    (tmp_path / "a-file").write_text("keep me")
    target = {"directory": tmp_path, "missing folder": tmp_path / "no" / "r.json",
              "folder is a file": tmp_path / "a-file" / "r.json", "device node": "/dev/null"}[case]
    assert evaluate("--model", model_dir, "--dataset", data_dir, "--output", target) == 2
    assert "--output" in _error(capsys)
    assert (tmp_path / "a-file").read_text() == "keep me" and not (tmp_path / "no").exists()


def test_save_calibrated_onto_a_file_is_refused_before_evaluating(model_dir, data_dir, tmp_path, capsys,
                                                                 no_evaluation):
    (tmp_path / "a-file").write_text("keep me")
    assert evaluate("--model", model_dir, "--dataset", data_dir, "--calibrate", "--save-calibrated",
                    tmp_path / "a-file") == 2
    assert "--save-calibrated" in _error(capsys) and (tmp_path / "a-file").read_text() == "keep me"


@pytest.mark.parametrize(("device", "words"), [("cuda", "CUDA is not available"), ("tpu9", "not a torch device")])
def test_device_without_the_hardware(model_dir, data_dir, capsys, monkeypatch, no_evaluation, device, words):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert evaluate("--model", model_dir, "--dataset", data_dir, "--device", device) == 2
    assert words in _error(capsys)


def test_processor_sized_for_another_model_is_refused(model_dir, data_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    path = copy / "processor_config.json"
    processor = json.loads(path.read_text())
    size = processor["image_processor"]["size"]
    processor["image_processor"]["size"] = 2 * size
    path.write_text(json.dumps(processor))
    assert evaluate("--model", copy, "--dataset", data_dir) == 2
    message = _error(capsys)
    assert str(2 * size) in message and str(size) in message


def test_nan_probabilities_are_refused(model_dir, data_dir, capsys, monkeypatch, tmp_path):
    import torch

    load = PromptPARModel.from_pretrained

    def nan_model(*args, **kwargs):
        model = load(*args, **kwargs)
        with torch.no_grad():
            model.heads.bias.fill_(float("nan"))
        return model

    monkeypatch.setattr(PromptPARModel, "from_pretrained", nan_model)
    assert evaluate("--model", model_dir, "--dataset", data_dir, "--output", tmp_path / "r.json") == 2
    assert "NaN" in _error(capsys) and not (tmp_path / "r.json").exists()


def test_threshold_help_names_the_official_protocol(capsys):
    parser = argparse.ArgumentParser(prog="par-prompt")
    register(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "official PromptPAR evaluation uses 0.45" in text and "0.5 is par-prompt's default" in text


def test_progress_bar_over_the_batches(model_dir, data_dir, capsys):
    import datasets

    datasets.enable_progress_bars()
    assert evaluate("--model", model_dir, "--dataset", data_dir, "--batch-size", 4) == 0
    assert re.search(r"evaluate test: 100%.*2/2", capsys.readouterr().err)
    datasets.disable_progress_bars()
    try:
        assert evaluate("--model", model_dir, "--dataset", data_dir, "--batch-size", 4) == 0
    finally:
        datasets.enable_progress_bars()
    assert "evaluate test" not in capsys.readouterr().err
