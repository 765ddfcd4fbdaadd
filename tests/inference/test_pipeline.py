"""The ``pedestrian-attribute-recognition`` pipeline task."""

from __future__ import annotations

import pytest
import torch
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from par_prompt.inference import (
    ImageInputError,
    PedestrianAttributeRecognitionPipeline,
    register_pipeline,
)
from par_prompt import PromptPARProcessor
from par_prompt.inference.pipeline import TASK

from .conftest import ATTRIBUTES, HUB_MODEL, random_image


@pytest.fixture(scope="module")
def recognise(model_dir):
    return pipeline(TASK, model=str(model_dir), device="cpu")


def test_task_is_registered_once():
    register_pipeline()
    register_pipeline()
    assert TASK in PIPELINE_REGISTRY.get_supported_tasks()
    assert PIPELINE_REGISTRY.supported_tasks[TASK]["impl"] is PedestrianAttributeRecognitionPipeline


def test_pipeline_matches_predict(recognise, model, image_files, predictor):
    assert isinstance(recognise, PedestrianAttributeRecognitionPipeline)
    single = recognise(str(image_files["jpeg"]))
    assert set(single) == {"attributes", "probabilities", "threshold", "source"}
    assert single["source"] == str(image_files["jpeg"]) and single["threshold"] == 0.5
    (expected,) = predictor.predict(image_files["jpeg"])
    assert single["attributes"] == expected.attributes
    for name in ATTRIBUTES:
        assert single["probabilities"][name] == pytest.approx(expected.probabilities[name], abs=1e-6)


def test_pipeline_lists_batches_and_thresholds(recognise, model, predictor):
    images = [random_image(seed=i) for i in range(3)]
    expected = predictor.predict(images)
    for batch_size in (1, 2):
        results = recognise(images, batch_size=batch_size)
        assert len(results) == 3
        for result, reference in zip(results, expected):
            got = torch.tensor([result["probabilities"][n] for n in ATTRIBUTES])
            torch.testing.assert_close(got, torch.tensor([reference.probabilities[n] for n in ATTRIBUTES]))
    assert recognise(images[0], threshold=0.0)["attributes"] == ATTRIBUTES
    assert recognise(images[0], threshold=1.0)["attributes"] == []
    with pytest.raises(ValueError, match="threshold"):
        recognise(images[0], threshold=3)


def test_pipeline_bad_input_names_it(recognise, image_files):
    with pytest.raises(ImageInputError, match="does not exist"):
        recognise(str(image_files["missing"]))


def test_pipeline_from_hub_id_offline(hub_cache, offline, model, predictor):
    recognise = pipeline(TASK, model=HUB_MODEL, device="cpu", model_kwargs={"cache_dir": str(hub_cache)})
    image = random_image(seed=5)
    (expected,) = predictor.predict(image)
    assert recognise(image)["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)


def test_pipeline_from_a_model_instance(model, processor, image_files, predictor):
    recognise = pipeline(TASK, model=model, processor=processor, device="cpu")
    (expected,) = predictor.predict(image_files["grey"])
    assert recognise(image_files["grey"])["attributes"] == expected.attributes
    with pytest.raises(Exception, match="processor"):  # a model instance alone: no folder to load a processor from
        pipeline(TASK, model=model, device="cpu")
    with pytest.raises(ValueError, match="needs the model's processor"):
        PedestrianAttributeRecognitionPipeline(model=model, device="cpu")


def test_pipeline_loads_the_processor_from_the_model_folder(recognise, model_dir):
    assert type(recognise.processor) is PromptPARProcessor
    assert recognise.image_processor is recognise.processor.image_processor


def test_pipeline_url_and_base64_inputs(recognise, image_files, monkeypatch, predictor):
    import base64

    import transformers.image_utils as image_utils

    class Response:
        content = image_files["jpeg"].read_bytes()

    monkeypatch.setattr(image_utils.httpx, "get", lambda url, timeout=None, follow_redirects=False: Response())
    (expected,) = predictor.predict(image_files["jpeg"])
    text = base64.b64encode(image_files["jpeg"].read_bytes()).decode()
    url = "https://example.com/walker.jpg"
    for value, source in ((url, url), (text, None), ("data:image/jpeg;base64," + text, None)):
        result = recognise(value, timeout=5)
        assert result["source"] == source
        assert result["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        recognise(url, timeout=0)


def test_importing_par_prompt_registers_the_task():
    import subprocess
    import sys

    code = ("import par_prompt; from transformers.pipelines import PIPELINE_REGISTRY;"
            "print('pedestrian-attribute-recognition' in PIPELINE_REGISTRY.get_supported_tasks())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "True", result.stderr[-2000:]


def test_pipeline_top_k_and_nan(recognise, model, predictor):
    image = random_image(seed=2)
    (expected,) = predictor.predict(image)
    result = recognise(image, top_k=2, threshold=1.0)
    assert result["attributes"] == []
    assert [(t["attribute"], pytest.approx(t["probability"], abs=1e-6)) for t in result["top_k"]] == [
        (n, p) for n, p in expected.top(2)]
    with pytest.raises(ValueError, match="top_k"):
        recognise(image, top_k=-2)

    from par_prompt.inference import NonFiniteOutputError

    weight = recognise.model.heads.weight.detach().clone()
    try:
        with torch.no_grad():
            recognise.model.heads.weight.fill_(float("nan"))
        with pytest.raises(NonFiniteOutputError, match="NaN"):
            recognise(image)
    finally:
        with torch.no_grad():
            recognise.model.heads.weight.copy_(weight)


# ------------------------------------------------ the stock image-classification pipeline (issue 14.1)
def test_stock_image_classification_pipeline(model_dir, predictor, image_files):
    """pipeline("image-classification") loads a saved model through
    AutoModelForImageClassification and its image processor through AutoImageProcessor,
    and returns [{label, score}] with per-attribute sigmoid scores (the config's
    multi-label problem_type), most probable first."""
    from transformers import AutoModelForImageClassification

    assert type(AutoModelForImageClassification.from_pretrained(model_dir)).__name__ == "PromptPARModel"
    classify = pipeline("image-classification", model=str(model_dir), device="cpu")
    (expected,) = predictor.predict(image_files["jpeg"])
    ranked = sorted(expected.probabilities.items(), key=lambda item: -item[1])
    result = classify(str(image_files["jpeg"]))
    assert [r["label"] for r in result] == [name for name, _ in ranked[:5]]  # transformers' default top_k=5
    assert [r["score"] for r in result] == pytest.approx([p for _, p in ranked[:5]], abs=1e-6)
    for top_k in (2, len(ATTRIBUTES), 100):
        result = pipeline("image-classification", model=str(model_dir), device="cpu", top_k=top_k)(
            str(image_files["jpeg"]))
        assert [(r["label"], pytest.approx(r["score"], abs=1e-6)) for r in result] == ranked[:top_k]
    scores = [r["score"] for r in classify(str(image_files["jpeg"]), top_k=len(ATTRIBUTES))]
    assert abs(sum(scores) - 1) > 1e-3  # sigmoids, not a softmax over the attributes
    softmax = classify(str(image_files["jpeg"]), top_k=len(ATTRIBUTES), function_to_apply="softmax")
    assert sum(r["score"] for r in softmax) == pytest.approx(1.0, abs=1e-5)


def test_stock_pipeline_reports_no_unsupported_model(model_dir):
    import logging

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.ERROR)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    logger = logging.getLogger("transformers")  # it does not propagate to the root logger
    handler = Collect()
    logger.addHandler(handler)
    try:
        pipeline("image-classification", model=str(model_dir), device="cpu")
        logging.getLogger("transformers.pipelines.base").error("probe")  # the handler does see the pipeline's errors
    finally:
        logger.removeHandler(handler)
    assert handler.messages == ["probe"]
