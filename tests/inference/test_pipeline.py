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


def test_pipeline_matches_predict(recognise, model, image_files):
    assert isinstance(recognise, PedestrianAttributeRecognitionPipeline)
    single = recognise(str(image_files["jpeg"]))
    assert set(single) == {"attributes", "probabilities", "threshold", "source"}
    assert single["source"] == str(image_files["jpeg"]) and single["threshold"] == 0.5
    (expected,) = model.predict(image_files["jpeg"])
    assert single["attributes"] == expected.attributes
    for name in ATTRIBUTES:
        assert single["probabilities"][name] == pytest.approx(expected.probabilities[name], abs=1e-6)


def test_pipeline_lists_batches_and_thresholds(recognise, model):
    images = [random_image(seed=i) for i in range(3)]
    expected = model.predict(images)
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


def test_pipeline_from_hub_id_offline(hub_cache, offline, model):
    recognise = pipeline(TASK, model=HUB_MODEL, device="cpu", model_kwargs={"cache_dir": str(hub_cache)})
    image = random_image(seed=5)
    (expected,) = model.predict(image)
    assert recognise(image)["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)


def test_pipeline_from_a_model_instance(model, image_files):
    recognise = pipeline(TASK, model=model, device="cpu")
    (expected,) = model.predict(image_files["grey"])
    assert recognise(image_files["grey"])["attributes"] == expected.attributes


def test_importing_par_prompt_registers_the_task():
    import subprocess
    import sys

    code = ("import par_prompt; from transformers.pipelines import PIPELINE_REGISTRY;"
            "print('pedestrian-attribute-recognition' in PIPELINE_REGISTRY.get_supported_tasks())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "True", result.stderr[-2000:]


def test_pipeline_top_k_and_nan(recognise, model):
    image = random_image(seed=2)
    (expected,) = model.predict(image)
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
