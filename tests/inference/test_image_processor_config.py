"""The image processor refuses invalid settings (NaN, infinities, absurd sizes, wrong JSON
types) when it is built or read, and prediction refuses a processor that does not fit
the model before it reads any image."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import pipeline

from par_prompt import PromptPARPredictor, PromptPARProcessor
from par_prompt.cli import main
from par_prompt.image_processing import MAX_IMAGE_SIZE, PromptPARImageProcessor
from par_prompt.inference import predict
from par_prompt.inference.pipeline import TASK
from par_prompt.inference.visualize import attention_maps

from .conftest import IMAGE_SIZE, random_image

NAN, INF = float("nan"), float("inf")

BAD_SETTINGS = [
    ("size", 0), ("size", -224), ("size", 20000), ("size", MAX_IMAGE_SIZE + 1), ("size", 224.5), ("size", "224"),
    ("size", True), ("size", [224, 224]), ("size", None), ("size", {"height": 224, "width": 200}),
    ("size", {"height": "224", "width": "224"}), ("size", {"height": 30000, "width": 30000}), ("size", {}),
    ("image_mean", [NAN, 0.5, 0.5]), ("image_mean", [INF, 0.5, 0.5]), ("image_mean", "abc"), ("image_mean", [0.5, 0.5]),
    ("image_mean", [0.5, 0.5, 2.0]), ("image_mean", [0.5, "0.5", 0.5]), ("image_mean", None), ("image_mean", NAN),
    ("image_std", [0.0, 0.5, 0.5]), ("image_std", [NAN, 0.5, 0.5]), ("image_std", [-0.2, 0.5, 0.5]),
    ("image_std", [INF, 0.5, 0.5]), ("image_std", [0.5, 0.5, 0.5, 0.5]), ("image_std", {"r": 0.5}),
    ("pad_fill", 256), ("pad_fill", -1), ("pad_fill", 1.5), ("pad_fill", "0"), ("pad_fill", True), ("pad_fill", NAN),
    ("resample", 7), ("resample", -1), ("resample", "bicubic"), ("resample", 3.0), ("resample", None),
]


@pytest.mark.parametrize(("name", "value"), BAD_SETTINGS)
def test_bad_setting_is_refused_naming_it(name, value):
    with pytest.raises(ValueError, match=name.split("_")[0]):
        PromptPARImageProcessor(**{name: value})


def test_good_settings_are_kept():
    processor = PromptPARImageProcessor(size={"height": 336, "width": 336}, image_mean=0.5, image_std=[0.5, 0.5, 0.5],
                                        pad_fill=128, resample=2)
    assert (processor.size, processor.image_mean, processor.pad_fill, processor.resample) == (336, [0.5] * 3, 128, 2)


@pytest.mark.parametrize(("name", "text"), [
    ("image_mean", "[NaN, 0.4, 0.4]"), ("image_std", "[0.2, Infinity, 0.2]"), ("size", "20000"), ("size", '"224"'),
    ("pad_fill", "[0]"), ("resample", "9"), ("image_std", "0"),
])
def test_bad_preprocessor_config_json_is_refused_at_load(tmp_path, name, text):
    PromptPARImageProcessor(size=32).save_pretrained(tmp_path)
    path = tmp_path / "preprocessor_config.json"
    raw = json.loads(path.read_text())
    raw[name] = "@@"
    path.write_text(json.dumps(raw).replace('"@@"', text))  # JSON NaN / Infinity literals, as json.dumps writes them
    with pytest.raises(ValueError, match=rf"preprocessor_config\.json.*{name.split('_')[0]}"):
        PromptPARImageProcessor.from_pretrained(tmp_path)


@pytest.fixture
def broken_model_dir(tmp_path, model_dir):
    """A copy of the saved model whose image processor settings (in processor_config.json)
    can be edited."""
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)

    def edit(**changes):
        path = copy / "processor_config.json"
        raw = json.loads(path.read_text())
        raw["image_processor"].update(changes)
        path.write_text(json.dumps(raw))
        return copy

    return edit


@pytest.mark.parametrize("changes", [{"image_std": [NAN, 0.2, 0.2]}, {"size": 20000}, {"size": "32"}])
def test_predict_command_refuses_a_bad_preprocessor_config(capsys, broken_model_dir, image_files, changes):
    directory = broken_model_dir(**changes)
    code = main(["predict", "--model", str(directory), str(image_files["rgb"])])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if "par-prompt predict" in line]
    assert code == 2 and len(lines) == 1 and captured.out == ""
    assert "processor_config.json" in lines[0] or "image processor" in lines[0]


def test_predict_command_refuses_a_processor_sized_for_another_model(capsys, broken_model_dir, image_files):
    directory = broken_model_dir(size=2 * IMAGE_SIZE)
    code = main(["predict", "--model", str(directory), str(image_files["rgb"])])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if "par-prompt predict" in line]
    assert code == 2 and len(lines) == 1 and captured.out == ""
    assert str(2 * IMAGE_SIZE) in lines[0] and str(IMAGE_SIZE) in lines[0]


@pytest.fixture
def wrong_size(processor):
    """A processor for 64-pixel inputs (the model's tower takes 32)."""
    return PromptPARProcessor(image_processor=PromptPARImageProcessor(size=2 * IMAGE_SIZE),
                              tokenizer=processor.tokenizer)


def test_predict_checks_the_processor_size_before_reading_images(model, wrong_size, image_files):
    with pytest.raises(ValueError, match=rf"resizes images to {2 * IMAGE_SIZE}.*takes {IMAGE_SIZE}×{IMAGE_SIZE}"):
        predict(model, [image_files["missing"]], processor=wrong_size, return_errors=True)  # nothing was read
    with pytest.raises(ValueError, match="vision tower takes"):
        PromptPARPredictor(model, wrong_size)


def test_visualize_and_pipeline_check_the_processor_size(model, wrong_size):
    with pytest.raises(ValueError, match="vision tower takes"):
        attention_maps(model, random_image(), processor=wrong_size)
    with pytest.raises(ValueError, match="vision tower takes"):
        pipeline(TASK, model=model, processor=wrong_size, device="cpu")


def test_a_setting_changed_after_construction_is_caught(model, predictor):
    processor = predictor.image_processor
    previous = processor.image_std
    processor.image_std = [NAN, NAN, NAN]
    try:
        with pytest.raises(ValueError, match="image_std"):
            predictor.predict(random_image())
        with pytest.raises(ValueError, match="image_std"):
            attention_maps(model, random_image(), processor=predictor.processor)
    finally:
        processor.image_std = previous


def test_processor_loaded_from_the_model_folder_is_valid(model_dir):
    processor = PromptPARProcessor.from_pretrained(model_dir)
    processor.image_processor.validate()
    assert processor.image_processor.size == IMAGE_SIZE
    assert torch.isfinite(processor(images=random_image())["pixel_values"]).all()
