"""predict / PromptPARPredictor.predict: inputs, agreement with the forward pass, thresholds, cached text, errors."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from par_prompt.inference import AttributePrediction, ImageInputError, predict
from par_prompt.inference.predict import MIN_IMAGE_SIDE, resolve_thresholds

from .conftest import ATTRIBUTES, random_image


def forward_probabilities(model, images, processor) -> torch.Tensor:
    """The reference: the saved processor on the whole list, then one plain forward."""
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        return torch.sigmoid(model(pixels).logits)


def as_matrix(results) -> torch.Tensor:
    return torch.tensor([[r.probabilities[name] for name in ATTRIBUTES] for r in results])


def test_predict_agrees_with_forward_across_batches(model, predictor):
    images = [random_image(40 + 8 * i, 24 + 4 * i, seed=i) for i in range(5)]
    results = predictor.predict(images, batch_size=2)
    assert [r.index for r in results] == list(range(5))
    expected = forward_probabilities(model, images, predictor.processor)
    torch.testing.assert_close(as_matrix(results), expected, rtol=1e-5, atol=1e-6)
    probabilities = as_matrix(results)
    assert probabilities.min() < 0.3 and probabilities.max() > 0.7  # the fixture's heads spread them


def test_input_kinds_give_the_same_answer(model, processor, image_files):
    picture = Image.open(image_files["rgb"]).convert("RGB")
    array = np.array(picture)
    inputs = [picture, image_files["rgb"], str(image_files["rgb"]), array, torch.from_numpy(array).permute(2, 0, 1),
              torch.from_numpy(array).permute(2, 0, 1).float() / 255]
    results = predict(model, inputs, processor=processor)
    reference = as_matrix(results[:1])
    for result in results[1:]:
        torch.testing.assert_close(as_matrix([result]), reference, rtol=1e-5, atol=1e-6)
    assert results[1].source == str(image_files["rgb"]) and results[3].source is None
    stacked = predict(model, np.stack([array, array]), processor=processor)  # a 4-D stack is a list of images
    assert len(stacked) == 2


def test_single_image_gives_a_list_of_one(model, image_files, predictor):
    (result,) = predictor.predict(image_files["jpeg"])
    assert isinstance(result, AttributePrediction) and set(result.probabilities) == set(ATTRIBUTES)


def test_grey_and_rgba_are_converted_like_the_processor(model, image_files, predictor):
    grey, rgba = Image.open(image_files["grey"]), Image.open(image_files["rgba"])
    assert (grey.mode, rgba.mode) == ("L", "RGBA")
    results = predictor.predict([image_files["grey"], image_files["rgba"]])
    expected = forward_probabilities(model, [grey.convert("RGB"), rgba], predictor.processor)  # RGBA: on black
    torch.testing.assert_close(as_matrix(results), expected, rtol=1e-5, atol=1e-6)
    rgba_on_black = Image.new("RGB", rgba.size)
    rgba_on_black.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
    torch.testing.assert_close(as_matrix(predictor.predict(rgba_on_black)), expected[1:], rtol=1e-5, atol=1e-6)


def test_text_tower_runs_once_across_batches(model, predictor):
    calls = []
    handle = model.clip_model.text_model.register_forward_hook(lambda *args: calls.append(1))
    model._text_cache = None  # start cold, as after loading
    try:
        predictor.predict([random_image(seed=i) for i in range(5)], batch_size=2)  # 3 batches
        predictor.predict(random_image(seed=9))
    finally:
        handle.remove()
    assert len(calls) == 1


def test_training_mode_is_restored(model, predictor):
    model.train()
    try:
        first = as_matrix(predictor.predict(random_image()))
        assert model.training
    finally:
        model.eval()
    torch.testing.assert_close(first, as_matrix(predictor.predict(random_image())))  # eval-mode BatchNorm both times


# ------------------------------------------------------------------------ thresholds


def test_thresholds_global_stored_and_explicit(model, predictor):
    image = random_image(seed=3)
    probabilities = as_matrix(predictor.predict(image))[0]

    def expected(thresholds):
        return [name for name, p, t in zip(ATTRIBUTES, probabilities, thresholds) if p > t]

    (default,) = predictor.predict(image)
    assert default.threshold == 0.5 and default.attributes == expected([0.5] * 6)
    (low,) = predictor.predict(image, threshold=0.0)
    assert low.attributes == ATTRIBUTES and predictor.predict(image, threshold=1.0)[0].attributes == []
    stored = [0.1, 0.9, 0.5, 0.2, 0.8, 0.05]
    model.config.attribute_thresholds = stored
    try:
        (calibrated,) = predictor.predict(image)
        assert calibrated.threshold == stored and calibrated.attributes == expected(stored)
        assert predictor.predict(image, threshold=0.5)[0].attributes == expected([0.5] * 6)  # explicit wins
    finally:
        model.config.attribute_thresholds = None
    (per_attribute,) = predictor.predict(image, threshold=stored)
    assert per_attribute.attributes == expected(stored)
    json.dumps(per_attribute.to_dict())


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), True, "0.5", [0.5] * 5, [0.5] * 5 + [2.0]])
def test_wrong_threshold_is_refused_before_any_work(model, bad, predictor):
    with pytest.raises(ValueError, match="threshold"):
        predictor.predict(random_image(), threshold=bad)
    with pytest.raises(ValueError, match="threshold"):
        resolve_thresholds(model.config, bad)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_wrong_batch_size(model, bad, predictor):
    with pytest.raises(ValueError, match="batch_size"):
        predictor.predict(random_image(), batch_size=bad)


# ------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("name", "reason"),
    [("missing", "does not exist"), ("corrupt", "cannot decode"), ("tiny", f"1×1 pixels.*{MIN_IMAGE_SIDE}")],
)
def test_bad_file_names_the_input(model, image_files, name, reason, predictor):
    inputs = [image_files["rgb"], image_files["jpeg"], image_files[name]]
    with pytest.raises(ImageInputError, match=rf"input 2 \({image_files[name]}\): .*{reason}") as caught:
        predictor.predict(inputs, batch_size=2)
    assert caught.value.index == 2 and caught.value.source == str(image_files[name])


@pytest.mark.parametrize(
    ("value", "reason"),
    [(np.zeros((20, 20, 2), dtype=np.uint8), "array must be"), (torch.zeros(2, 9, 9), "tensor must be"),
     (np.full((20, 20, 3), 2.0), "float pixels"), (object(), "unsupported type"), (np.zeros((3, 3), np.uint8), "3×3")],
)
def test_bad_in_memory_input_names_its_index(model, value, reason, predictor):
    with pytest.raises(ImageInputError, match=rf"input 1: .*{reason}"):
        predictor.predict([random_image(), value])


def test_return_errors_keeps_the_others(model, image_files, predictor):
    names = ["rgb", "missing", "grey", "corrupt", "tiny", "jpeg"]
    results = predictor.predict([image_files[n] for n in names], batch_size=4, return_errors=True)
    assert [type(r).__name__ for r in results] == ["AttributePrediction", "ImageInputError", "AttributePrediction",
                                                  "ImageInputError", "ImageInputError", "AttributePrediction"]
    assert [r.index for r in results] == list(range(6))
    good = [image_files[n] for n in ("rgb", "grey", "jpeg")]
    torch.testing.assert_close(as_matrix(results[::2][:2] + results[-1:]), as_matrix(predictor.predict(good)))


def test_no_processor(model):
    """The model holds no processor: predict without one says where to get it."""
    assert not hasattr(model, "image_processor") and not hasattr(model, "predict")
    with pytest.raises(ValueError, match=r"processor=PromptPARProcessor\.from_pretrained\(MODEL\)"):
        predict(model, random_image())


def test_very_large_image_in_memory(model, predictor):
    huge = Image.linear_gradient("L").resize((10000, 10000), Image.NEAREST)  # 100 MB of pixels
    (result,) = predictor.predict(huge)
    expected = forward_probabilities(model, [huge], predictor.processor)
    torch.testing.assert_close(as_matrix([result]), expected, rtol=1e-5, atol=1e-6)


def test_very_large_jpeg_file_is_never_decoded_at_full_size(model, tmp_path, monkeypatch, predictor):
    """A 10000×10000 JPEG is decoded at reduced scale (1250×1250, 1/64 of the pixels),
    so it never takes its full 100 MB (grey; 300 MB in colour) in memory."""
    path = tmp_path / "huge.jpg"
    Image.linear_gradient("L").resize((10000, 10000), Image.NEAREST).save(path, quality=50)
    decoded = []
    load = Image.Image.load

    def spy(self):
        decoded.append(self.size)
        return load(self)

    monkeypatch.setattr(Image.Image, "load", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # 100 M pixels > PIL's 89 M warning limit
        (result,) = predictor.predict(path)
    assert len(result.probabilities) == len(ATTRIBUTES)
    assert decoded and max(w * h for w, h in decoded) <= 1250 * 1250


class PickyProcessor:
    """Wraps the real processor but refuses images 33 pixels wide (a stand-in for a
    processor failure that loading did not catch)."""

    def __init__(self, inner):
        self.inner, self.size = inner, inner.size

    def __call__(self, images, return_tensors="pt"):
        batch = images if isinstance(images, list) else [images]
        if any(image.size[0] == 33 for image in batch):
            raise ValueError("width 33 is not supported")
        return self.inner(images, return_tensors=return_tensors)


def test_processor_failure_in_a_batch_names_the_input(model, predictor):
    images = [random_image(64, 32, seed=0), random_image(64, 33, seed=1), random_image(64, 32, seed=2)]
    picky = PickyProcessor(predictor.image_processor)
    with pytest.raises(ImageInputError, match="input 1: width 33"):
        predict(model, images, processor=picky)
    results = predict(model, images, processor=picky, return_errors=True)
    assert isinstance(results[1], ImageInputError)
    torch.testing.assert_close(as_matrix([results[0], results[2]]), as_matrix(predictor.predict(images[::2])))


# ------------------------------------------------------------------ memory, NaN, top-k


def test_a_batch_holds_resized_tensors_not_decoded_images(model, monkeypatch, predictor):
    """Each image is resized right after decoding: when the batch reaches the model, none
    of its decoded (full-size) images is still alive."""
    import gc
    import importlib
    import weakref

    predict_module = importlib.import_module("par_prompt.inference.predict")

    decoded, alive_at_forward = [], []
    load, forward = predict_module.load_image, predict_module.predict_probabilities

    def tracking_load(*args, **kwargs):
        image = load(*args, **kwargs)
        decoded.append(weakref.ref(image))
        return image

    def counting_forward(*args, **kwargs):
        gc.collect()
        alive_at_forward.append(sum(ref() is not None for ref in decoded))
        return forward(*args, **kwargs)

    monkeypatch.setattr(predict_module, "load_image", tracking_load)
    monkeypatch.setattr(predict_module, "predict_probabilities", counting_forward)
    images = [np.asarray(random_image(400, 200, seed=i)) for i in range(6)]  # arrays: decoded into new PIL images
    results = predictor.predict(images, batch_size=3)
    assert len(results) == 6 and len(decoded) == 6
    assert alive_at_forward == [0, 0]


def test_nan_probability_is_an_error_not_no_attributes(model, predictor):
    from par_prompt.inference import NonFiniteOutputError

    weight = model.heads.weight.detach().clone()
    try:
        with torch.no_grad():
            model.heads.weight[2].fill_(float("nan"))  # one attribute's head
        for return_errors in (False, True):
            with pytest.raises(NonFiniteOutputError, match=r"NaN.*input 0"):
                predictor.predict([random_image(), random_image(seed=1)], return_errors=return_errors)
    finally:
        with torch.no_grad():
            model.heads.weight.copy_(weight)
    assert np.isfinite(as_matrix(predictor.predict(random_image())).numpy()).all()


def test_top_k_ranks_by_probability_whatever_the_threshold(model, predictor):
    (result,) = predictor.predict(random_image(seed=4), threshold=1.0)
    assert result.attributes == []
    top = result.top(3)
    values = sorted(result.probabilities.values(), reverse=True)
    assert [p for _, p in top] == values[:3] and all(result.probabilities[n] == p for n, p in top)
    assert result.top(0) == [] and len(result.top(100)) == len(ATTRIBUTES)
    with pytest.raises(ValueError, match="k must be"):
        result.top(-1)


# ------------------------------------------------------------------ URLs and base64


def encoded(path) -> str:
    import base64

    return base64.b64encode(path.read_bytes()).decode()


def test_base64_and_data_uri_inputs_give_the_file_answer(predictor, image_files):
    (from_file,) = predictor.predict(image_files["jpeg"])
    text = encoded(image_files["jpeg"])
    for value in (text, f"data:image/jpeg;base64,{text}"):
        (result,) = predictor.predict(value)
        assert result.probabilities == pytest.approx(from_file.probabilities, abs=1e-6)
        assert result.source is None  # never the encoded data itself


def test_url_input_goes_through_transformers_load_image(predictor, image_files, monkeypatch):
    """An http(s) URL is fetched by transformers' own load_image (its httpx call is
    stubbed: the tests have no network), with a timeout, and named in the result."""
    import transformers.image_utils as image_utils

    requested = []

    class Response:
        content = image_files["rgb"].read_bytes()

    def fake_get(url, timeout=None, follow_redirects=False):
        requested.append((url, timeout))
        return Response()

    monkeypatch.setattr(image_utils.httpx, "get", fake_get)
    url = "https://example.com/walker.png"
    (result,) = predictor.predict(url)
    (expected,) = predictor.predict(image_files["rgb"])
    assert requested == [(url, 30.0)] and result.source == url
    assert result.probabilities == pytest.approx(expected.probabilities, abs=1e-6)


def test_exif_orientation_is_applied_to_files_and_encoded_images(predictor, tmp_path):
    """A JPEG whose EXIF says "rotate 90°" is read upright, from a file and from base64 alike."""
    from PIL import ImageOps

    exif = Image.Exif()
    exif[0x0112] = 8  # orientation: the stored pixels must be turned 90° to be viewed
    path = tmp_path / "rotated.jpg"
    random_image(64, 32, seed=11).save(path, quality=95, exif=exif.tobytes())
    raw = Image.open(path)
    upright, unturned = np.asarray(ImageOps.exif_transpose(raw).convert("RGB")), np.asarray(raw.convert("RGB"))
    assert upright.shape == (32, 64, 3) and unturned.shape == (64, 32, 3)
    (expected,) = predictor.predict(upright)  # arrays carry no EXIF: taken as they are
    (wrong,) = predictor.predict(unturned)
    assert max(abs(expected.probabilities[n] - wrong.probabilities[n]) for n in ATTRIBUTES) > 1e-3
    for value in (path, encoded(path)):
        (result,) = predictor.predict(value)
        assert result.probabilities == pytest.approx(expected.probabilities, abs=1e-5)


@pytest.mark.parametrize("value, reason", [
    ("data:image/png;base64,bm90IGFuIGltYWdl", "the base64 data is not an image"),
    ("QUJD" * 20, "the base64 data is not an image"),
])
def test_bad_encoded_input_names_it(predictor, value, reason):
    with pytest.raises(ImageInputError, match=rf"input 1: {reason}"):
        predictor.predict([random_image(), value])


def test_a_missing_file_is_still_a_missing_file(predictor, image_files):
    with pytest.raises(ImageInputError, match="does not exist"):
        predictor.predict(str(image_files["missing"]))


def test_an_unreachable_url_names_it(predictor, monkeypatch):
    import transformers.image_utils as image_utils

    def unreachable(url, timeout=None, follow_redirects=False):
        raise image_utils.httpx.ConnectError("no route to host")

    monkeypatch.setattr(image_utils.httpx, "get", unreachable)
    url = "http://example.com/a.jpg"
    with pytest.raises(ImageInputError, match=r"input 0 \(http://example.com/a.jpg\): the image URL could not be read "
                                              r"\(ConnectError: no route to host\)"):
        predictor.predict(url)
