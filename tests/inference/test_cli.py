"""``par-prompt predict`` and ``par-prompt visualize``."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from par_prompt.cli import main
from par_prompt.inference.visualize import figure_size

from .conftest import ATTRIBUTES, HUB_MODEL


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predict_table(capsys, model, model_dir, image_files):
    code, out, err = run(capsys, "predict", "--model", model_dir, image_files["rgb"], image_files["grey"])
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("image") and len(lines) == 3
    (expected,) = model.predict(image_files["rgb"])
    assert lines[1].startswith(str(image_files["rgb"]))
    for name in ATTRIBUTES:
        assert (f"{name} (" in lines[1]) == (name in expected.attributes)


def test_predict_json_matches_the_api(capsys, model, model_dir, image_files):
    code, out, _ = run(capsys, "predict", "--model", model_dir, image_files["jpeg"], "--format", "json",
                       "--threshold", "0.3", "--batch-size", "1")
    assert code == 0
    (record,) = json.loads(out)
    (expected,) = model.predict(image_files["jpeg"], threshold=0.3)
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
    assert code == 1 and "cannot decode" in err and not (tmp_path / "x.png").exists()
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
