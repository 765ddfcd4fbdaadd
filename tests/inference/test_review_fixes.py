"""Inputs and outputs that used to give a quietly different answer or put a file at risk:
stretching models decoded at reduced size, non-PNG picture names, byte-order marks in
lists, ONNX devices, outputs inside the model, missing local folders, pipeline messages."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from par_prompt import PromptPARImageProcessor
from par_prompt.cli import main
from par_prompt.inference.predict import ImageInputError, preprocess_image


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_stretching_processor_sees_the_full_image_in_prediction_too(tmp_path):
    """do_pad=False (official models): prediction must preprocess exactly as the processor
    itself, not shrink a large JPEG first."""
    path = tmp_path / "large.jpg"
    pixels = np.random.default_rng(0).integers(0, 256, (1000, 300, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    for do_pad in (False, True):
        processor = PromptPARImageProcessor(size=32, do_pad=do_pad)
        expected = processor(str(path))["pixel_values"][0]
        assert (preprocess_image(processor, str(path), 0) - expected).abs().max() < 1e-6, do_pad


def test_visualize_writes_only_png_names_and_a_bad_image_is_exit_2(capsys, model_dir, image_files, tmp_path):
    keep = tmp_path / "keep.json"
    keep.write_text('{"mine": 1}')
    code, _, err = run(capsys, "visualize", "--model", model_dir, image_files["rgb"], "--out", keep)
    assert code == 2 and "must end in .png" in err and len(err.strip().splitlines()) == 1
    assert keep.read_text() == '{"mine": 1}'
    code, _, err = run(capsys, "visualize", "--model", model_dir, image_files["missing"], "--out",
                       tmp_path / "v.png")
    assert code == 2 and "does not exist" in err and not (tmp_path / "v.png").exists()


def test_a_list_file_with_a_byte_order_mark(capsys, model_dir, image_files, tmp_path, no_progress_bars):
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\xef\xbb\xbf" + f"{image_files['rgb']}\r\n{image_files['grey']}\r\n".encode())
    code, out, err = run(capsys, "predict", "--model", model_dir, f"@{listing}", "--format", "jsonl")
    assert code == 0, err
    assert [json.loads(line)["source"] for line in out.splitlines()] == [str(image_files["rgb"]),
                                                                        str(image_files["grey"])]


@pytest.mark.parametrize("output", ["config.json", "new.json"])
def test_outputs_never_go_into_the_model_folder(capsys, model_dir, image_files, output):
    before = {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()}
    code, _, err = run(capsys, "predict", "--model", model_dir, image_files["rgb"], "--output", model_dir / output)
    assert code == 2 and "lies inside --model" in err
    assert {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()} == before


def test_a_missing_local_model_folder_is_named(capsys, image_files, tmp_path):
    code, _, err = run(capsys, "predict", "--model", "./no-such-model", image_files["rgb"])
    assert code == 2 and "There is no directory ./no-such-model" in err


def test_onnx_devices_are_cpu_or_cuda_with_their_index():
    from par_prompt.onnx.predictor import providers_for_device

    assert providers_for_device(None) == providers_for_device("cpu") == ["CPUExecutionProvider"]
    assert providers_for_device("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers_for_device("cuda:1") == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    for name in ("mps", "foo", "cuda:x"):
        with pytest.raises(ValueError, match="cpu, cuda or cuda:N"):
            providers_for_device(name)


def test_pipeline_errors_do_not_name_a_wrong_position_and_an_empty_list_is_empty(model_dir):
    from transformers import pipeline

    recognise = pipeline("pedestrian-attribute-recognition", model=str(model_dir))
    good = np.zeros((64, 32, 3), np.uint8)
    with pytest.raises(ImageInputError) as caught:
        recognise([good, good, np.zeros((2, 2, 3, 3), np.uint8)])
    assert "input 0" not in str(caught.value) and "an input image" in str(caught.value)
    assert recognise([]) == []
