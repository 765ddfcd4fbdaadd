"""``par-prompt predict`` and ``par-prompt visualize``."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from par_prompt.cli import main
from par_prompt.inference.visualize import figure_size

from .conftest import ATTRIBUTES, HUB_MODEL


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predict_table(capsys, model, model_dir, image_files, no_progress_bars, predictor):
    code, out, err = run(capsys, "predict", "--model", model_dir, image_files["rgb"], image_files["grey"])
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("image") and len(lines) == 3
    (expected,) = predictor.predict(image_files["rgb"])
    assert lines[1].startswith(str(image_files["rgb"]))
    for name in ATTRIBUTES:
        assert (f"{name} (" in lines[1]) == (name in expected.attributes)


def test_predict_json_matches_the_api(capsys, model, model_dir, image_files, predictor):
    code, out, _ = run(capsys, "predict", "--model", model_dir, image_files["jpeg"], "--format", "json",
                       "--threshold", "0.3", "--batch-size", "1")
    assert code == 0
    (record,) = json.loads(out)
    (expected,) = predictor.predict(image_files["jpeg"], threshold=0.3)
    assert record["attributes"] == expected.attributes and record["threshold"] == 0.3
    assert record["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)


def test_predict_reports_bad_files_and_processes_the_others(capsys, model_dir, image_files):
    names = ["rgb", "missing", "corrupt", "tiny", "rgba"]
    code, out, err = run(capsys, "predict", "--model", model_dir, *(image_files[n] for n in names),
                         "--format", "csv", "--batch-size", "2")
    assert code == 1
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [row["image"] for row in rows] == [str(image_files[n]) for n in names]
    assert [bool(row["error"]) for row in rows] == [False, True, True, True, False]
    assert all(0 <= float(rows[i][name]) <= 1 for i in (0, 4) for name in ATTRIBUTES)
    for name, reason in (("missing", "does not exist"), ("corrupt", "cannot decode"), ("tiny", "1×1")):
        assert f"({image_files[name]})" in err and reason in err
    assert "3 of 5 images could not be processed" in err


def test_predict_bad_model_and_bad_arguments(capsys, tmp_path, image_files):
    code, _, err = run(capsys, "predict", "--model", tmp_path, image_files["rgb"])
    assert code == 2 and "cannot load the model" in err and "no config.json" in err
    for bad in (["--threshold", "1.5"], ["--threshold", "x"], ["--batch-size", "0"], ["--format", "xml"]):
        with pytest.raises(SystemExit) as caught:
            main(["predict", "--model", str(tmp_path), str(image_files["rgb"]), *bad])
        assert caught.value.code == 2
    capsys.readouterr()


def test_visualize_writes_the_png(capsys, model_dir, image_files, tmp_path):
    out = tmp_path / "where.png"
    code, text, _ = run(capsys, "visualize", "--model", model_dir, image_files["rgb"], "--out", out,
                        "--top-k", "2", "--panel", "64")
    assert code == 0 and text.startswith(f"wrote {out}")
    picture = Image.open(out)
    assert picture.format == "PNG" and picture.size == figure_size(4, 2, len(ATTRIBUTES), panel=64)
    assert np.asarray(picture, dtype=np.float64).std() > 30


def test_visualize_errors(capsys, model_dir, image_files, tmp_path):
    code, _, err = run(capsys, "visualize", "--model", model_dir, image_files["corrupt"], "--out", tmp_path / "x.png")
    assert code == 2 and "cannot decode" in err and not (tmp_path / "x.png").exists()
    code, _, err = run(capsys, "visualize", "--model", model_dir, image_files["rgb"], "--out", tmp_path / "no" / "x.png")
    assert code == 2 and "does not exist" in err


def test_console_command_by_hub_id_offline(hub_cache, image_files):
    """The installed command, as a user runs it: a Hub id served from the cache, offline."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache)}
    done = subprocess.run(
        [sys.executable, "-m", "par_prompt.cli", "predict", "--model", HUB_MODEL, str(image_files["rgb"]),
         str(image_files["missing"]), "--format", "json"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert done.returncode == 1, done.stderr
    records = json.loads(done.stdout)
    assert set(records[0]["probabilities"]) == set(ATTRIBUTES) and "does not exist" in records[1]["error"]


# ------------------------------------------------------------- inputs, outputs, top-k


def _one_error_line(err: str, command: str = "predict") -> str:
    lines = [line for line in err.splitlines() if f"par-prompt {command}" in line]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def inputs(tmp_path, image_files):
    """A folder with two images and a list file naming one of them and a third image."""
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(image_files["rgb"], folder / "b.png")
    shutil.copy(image_files["jpeg"], folder / "a.jpg")
    listing = tmp_path / "lists" / "some.txt"
    listing.parent.mkdir()
    listing.write_text(f"# picked by hand\n../folder/a.jpg\n\n{image_files['grey']}\n")
    return folder, listing


def test_folder_list_and_jsonl_output_with_top_k(capsys, model, model_dir, inputs, tmp_path, image_files, predictor):
    folder, listing = inputs
    out = tmp_path / "predictions.jsonl"
    code, printed, _ = run(capsys, "predict", "--model", model_dir, folder, f"@{listing}", "--output", out,
                           "--top-k", 3)
    assert code == 0 and f"wrote {out}" in printed
    records = [json.loads(line) for line in out.read_text().splitlines()]
    expected_sources = [str(folder / "a.jpg"), str(folder / "b.png"), os.path.join(listing.parent, "../folder/a.jpg"),
                        str(image_files["grey"])]
    assert [r["source"] for r in records] == expected_sources and [r["index"] for r in records] == [0, 1, 2, 3]
    reference = predictor.predict([folder / "a.jpg", folder / "b.png", folder / "a.jpg", image_files["grey"]])
    for record, expected in zip(records, reference):
        assert record["attributes"] == expected.attributes
        assert record["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)
        ranked = sorted(expected.probabilities, key=expected.probabilities.get, reverse=True)[:3]
        assert [t["attribute"] for t in record["top_k"]] == ranked
        assert [t["probability"] for t in record["top_k"]] == pytest.approx(
            [expected.probabilities[n] for n in ranked], abs=1e-6)


def test_csv_output_by_extension_and_format_flag(capsys, model, model_dir, image_files, tmp_path, predictor):
    out = tmp_path / "p.csv"
    assert run(capsys, "predict", "--model", model_dir, image_files["rgb"], image_files["missing"], "--output", out,
               "--top-k", 2)[0] == 1
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["image"] for r in rows] == [str(image_files["rgb"]), str(image_files["missing"])]
    (expected,) = predictor.predict(image_files["rgb"])
    assert rows[0]["top_k"] == ";".join(f"{n}:{p:.4f}" for n, p in expected.top(2))
    assert "does not exist" in rows[1]["error"]
    as_json = tmp_path / "p.data"
    assert run(capsys, "predict", "--model", model_dir, image_files["rgb"], "--output", as_json,
               "--format", "json")[0] == 0
    assert json.loads(as_json.read_text())[0]["source"] == str(image_files["rgb"])


@pytest.mark.parametrize("case", ["directory", "missing folder", "folder is a file", "unknown extension",
                                  "an input", "device"])
def test_bad_output_is_refused_before_the_model_loads(capsys, tmp_path, image_files, case):
    """The model path does not exist: a message about the output proves it was checked first."""
    (tmp_path / "a-file").write_text("keep me")
    target = {"directory": tmp_path, "missing folder": tmp_path / "no" / "p.jsonl",
              "folder is a file": tmp_path / "a-file" / "p.jsonl", "unknown extension": tmp_path / "p.xyz",
              "an input": image_files["rgb"], "device": "/dev/null"}[case]
    before = image_files["rgb"].read_bytes()
    code, out, err = run(capsys, "predict", "--model", tmp_path / "no-model", image_files["rgb"], "--output", target,
                         *(["--format", "csv"] if case == "an input" else []))
    line = _one_error_line(err)
    assert code == 2 and out == "" and "--output" in line and "cannot load the model" not in line
    assert image_files["rgb"].read_bytes() == before and (tmp_path / "a-file").read_text() == "keep me"
    assert not (tmp_path / "no").exists() and not any(tmp_path.glob(".*partial"))


def test_output_onto_the_list_file_is_refused(capsys, tmp_path, inputs):
    _, listing = inputs
    before = listing.read_text()
    code, _, err = run(capsys, "predict", "--model", tmp_path / "no-model", f"@{listing}", "--output", listing,
                       "--format", "table")
    assert code == 2 and "is one of the inputs" in _one_error_line(err) and listing.read_text() == before


def test_bad_input_lists_are_refused_before_the_model_loads(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    for argument, words in ((f"@{tmp_path / 'none.txt'}", "does not exist"), (tmp_path / "empty", "no image files")):
        code, out, err = run(capsys, "predict", "--model", tmp_path / "no-model", argument)
        assert code == 2 and out == "" and words in _one_error_line(err)


def test_nan_probabilities_are_an_error_and_leave_no_file(capsys, model_dir, image_files, tmp_path, monkeypatch):
    from par_prompt import PromptPARModel

    load = PromptPARModel.from_pretrained

    def nan_model(*args, **kwargs):
        model = load(*args, **kwargs)
        with torch.no_grad():
            model.heads.weight.fill_(float("nan"))
        return model

    monkeypatch.setattr(PromptPARModel, "from_pretrained", nan_model)
    out = tmp_path / "p.jsonl"
    out.write_text("an earlier result\n")
    code, printed, err = run(capsys, "predict", "--model", model_dir, image_files["rgb"], image_files["jpeg"],
                             "--output", out)
    assert code == 2 and "NaN" in _one_error_line(err) and "(none)" not in printed
    assert out.read_text() == "an earlier result\n" and not any(tmp_path.glob(".*partial"))
    code, printed, err = run(capsys, "predict", "--model", model_dir, image_files["rgb"])
    assert code == 2 and "NaN" in _one_error_line(err) and "(none)" not in printed
    png = tmp_path / "where.png"
    code, _, err = run(capsys, "visualize", "--model", model_dir, image_files["rgb"], "--out", png)
    assert code == 2 and "NaN" in _one_error_line(err, "visualize") and not png.exists()


@pytest.mark.parametrize("command", ["predict", "visualize"])
@pytest.mark.parametrize(("device", "words"), [("cuda", "CUDA is not available"), ("cuda:0", "CUDA is not available"),
                                               ("gpu", "not a torch device"), ("meta", "holds no weights")])
def test_device_without_the_hardware(capsys, model_dir, image_files, tmp_path, monkeypatch, command, device, words):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    extra = ["--out", tmp_path / "x.png"] if command == "visualize" else []
    code, out, err = run(capsys, command, "--model", model_dir, image_files["rgb"], "--device", device, *extra)
    assert code == 2 and out == "" and words in _one_error_line(err, command)


def test_progress_bar_follows_the_switches(capsys, model_dir, image_files, tmp_path):
    import datasets

    images = [str(image_files[n]) for n in ("rgb", "grey", "jpeg", "rgba")]
    out = tmp_path / "p.jsonl"
    datasets.enable_progress_bars()
    code, _, err = run(capsys, "predict", "--model", model_dir, *images, "--output", out)
    assert code == 0 and re.search(r"predict: 100%.*4/4", err), err
    datasets.disable_progress_bars()
    try:
        code, _, err = run(capsys, "predict", "--model", model_dir, *images, "--output", out)
    finally:
        datasets.enable_progress_bars()
    assert code == 0 and "predict:" not in err
    code, _, err = run(capsys, "predict", "--model", model_dir, images[0], "--output", out)
    assert code == 0 and "predict:" not in err  # one image: no bar


# ------------------------------------------------------------------------ visualize


def test_visualize_panel_is_bounded(capsys, model_dir, image_files, tmp_path):
    for panel in ("8000", "1025", "15"):
        with pytest.raises(SystemExit) as caught:
            main(["visualize", "--model", str(model_dir), str(image_files["rgb"]), "--out", str(tmp_path / "x.png"),
                  "--panel", panel])
        assert caught.value.code == 2 and "between 16 and 1024" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("case", ["directory", "the input", "folder is a file"])
def test_visualize_bad_out_is_refused_before_the_model_loads(capsys, tmp_path, image_files, case):
    (tmp_path / "a-file").write_text("keep me")
    target = {"directory": tmp_path, "the input": image_files["rgb"], "folder is a file": tmp_path / "a-file" / "x.png"}
    before = image_files["rgb"].read_bytes()
    code, out, err = run(capsys, "visualize", "--model", tmp_path / "no-model", image_files["rgb"], "--out",
                         target[case])
    line = _one_error_line(err, "visualize")
    assert code == 2 and "--out" in line and "cannot load the model" not in line
    assert image_files["rgb"].read_bytes() == before and (tmp_path / "a-file").read_text() == "keep me"
