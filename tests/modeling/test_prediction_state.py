"""Prediction leaves the model as it was, also from several threads and on a model in
training mode; the GL aggregator reads the class tokens of the layout that actually ran."""

import threading

import pytest
import torch

from par_prompt import RegionPromptConfig
from par_prompt.inference.predict import predict_probabilities

from .conftest import build, trained


def state_of(model):
    """Every tensor of the state dict (BatchNorm statistics included) and every module's mode."""
    tensors = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    return tensors, {name: module.training for name, module in model.named_modules()}


def assert_same_state(model, before):
    tensors, modes = state_of(model)
    assert modes == before[1]
    for name, tensor in before[0].items():
        assert torch.equal(tensors[name], tensor), f"{name} changed"


def test_predict_from_threads_on_a_model_in_training_mode(backbones):
    model = trained(build(backbones))
    pixels = torch.randn(24, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    model.eval()
    with torch.no_grad():
        expected = torch.sigmoid(model(pixels).logits)
    model.train()
    before = state_of(model)
    results, errors = {}, []
    start = threading.Barrier(6)

    def work(worker):
        try:
            start.wait()
            rows = slice(4 * worker, 4 * worker + 4)
            for _ in range(3):
                results.setdefault(worker, []).append(predict_probabilities(model, pixels[rows], batch_size=2))
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for worker, outputs in results.items():
        for probabilities in outputs:
            torch.testing.assert_close(probabilities, expected[4 * worker : 4 * worker + 4], rtol=1e-5, atol=1e-6)
    assert model.training
    assert_same_state(model, before)


def test_predict_on_images_leaves_a_training_model_untouched(backbones):
    from PIL import Image

    from par_prompt import PromptPARProcessor
    from par_prompt.inference import predict

    model = trained(build(backbones))
    processor = PromptPARProcessor.from_pretrained(backbones.clip)
    image = Image.new("RGB", (40, 80), (120, 30, 200))
    reference = predict(model.eval(), image, processor=processor)[0].probabilities
    model.train()
    before = state_of(model)
    got = predict(model, [image, image], batch_size=1, processor=processor)
    for prediction in got:
        assert prediction.probabilities == pytest.approx(reference, rel=1e-5, abs=1e-6)
    assert_same_state(model, before)


def test_a_prediction_finishing_does_not_switch_another_ones_mode(backbones):
    """Two predictions overlap: the second is still running when the first returns. The
    first must not leave the second computing in training mode (batch statistics, and
    BatchNorm running statistics updated)."""
    model = trained(build(backbones))
    pixels = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = torch.sigmoid(model.eval()(pixels).logits)
    model.train()
    before = state_of(model)
    first_inside, second_inside, first_done = threading.Event(), threading.Event(), threading.Event()
    roles = {}

    def pause(module, args):
        role = roles.get(threading.get_ident())
        if role == "first":
            first_inside.set()
            assert second_inside.wait(10)
        elif role == "second":
            second_inside.set()
            assert first_done.wait(10)

    model.heads.register_forward_pre_hook(pause)
    results = {}

    def run(role, rows):
        roles[threading.get_ident()] = role
        results[role] = predict_probabilities(model, pixels[rows])
        if role == "first":
            first_done.set()

    first = threading.Thread(target=run, args=("first", slice(0, 2)))
    second = threading.Thread(target=run, args=("second", slice(2, 4)))
    first.start()
    assert first_inside.wait(10)
    second.start()
    first.join(20)
    second.join(20)
    torch.testing.assert_close(results["first"], expected[:2], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results["second"], expected[2:], rtol=1e-5, atol=1e-6)
    assert_same_state(model, before)


def test_forward_training_false_is_eval_mode_without_changing_it(backbones, pixels):
    model = trained(build(backbones))
    with torch.no_grad():
        expected = model.eval()(pixels)
        model.train()
        before = state_of(model)
        got = model(pixels[:1], training=False)  # a single image is fine: no batch statistics
        again = model(pixels, training=False)
    torch.testing.assert_close(got.logits, expected.logits[:1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(again.gl_logits, expected.gl_logits, rtol=1e-5, atol=1e-6)
    assert_same_state(model, before)


def test_forward_mode_argument_is_checked(backbones, pixels):
    model = build(backbones)
    with pytest.raises(ValueError, match="needs the model in training mode"):
        model.eval()(pixels, training=True)
    model.train()
    model.fusion.layers[0].attention.attention_dropout = 0.1
    with pytest.raises(ValueError, match="apply dropout in training mode; call model.eval"):
        model(pixels, training=False)
    with torch.no_grad():
        model.eval()(pixels, training=False)  # in eval mode dropout is off: fine


@pytest.mark.parametrize("how", ["disabled", "other_adapter"])
def test_gl_aggregator_reads_the_class_tokens_of_the_layout_that_ran(backbones, pixels, how):
    model = trained(build(backbones)).eval()
    if how == "other_adapter":  # plain VPT: no region class tokens, 4 prompts after CLS
        model.peft_clip.add_adapter("vpt", RegionPromptConfig(num_regions=0, prompts_per_group=4, text_prompts=0))
        model.peft_clip.set_adapter("vpt")
    with torch.no_grad():
        if how == "disabled":
            with model.peft_clip.disable_adapter():
                out = model(pixels, output_features=True)
        else:
            out = model(pixels, output_features=True)
        expected = model.aggregator(out.visual_tokens[:, :1], out.text_features, model.clip_model.logit_scale)
    assert out.visual_tokens.shape[1] == (1 + 64 if how == "disabled" else 5 + 64)
    torch.testing.assert_close(out.gl_logits, expected)
