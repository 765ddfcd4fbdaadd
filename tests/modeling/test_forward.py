"""PromptPARModel forward: outputs, loss, text-feature cache, per-sample GL scores, bad input."""

import pytest
import torch

from par_prompt.losses import weighted_bce_with_logits
from par_prompt.modeling.heads import GlobalLocalAggregator

from .conftest import ATTRIBUTES, build, trained


def test_outputs_and_loss(model, pixels, labels):
    model.train()
    out = model(pixels, labels=labels)
    assert out.logits.shape == out.gl_logits.shape == (3, len(ATTRIBUTES))
    expected = weighted_bce_with_logits(out.logits, labels, model.positive_ratios)
    expected = expected + 0.5 * weighted_bce_with_logits(out.gl_logits, labels, model.positive_ratios)
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)


def test_gl_alpha_scales_the_second_loss(backbones, pixels, labels):
    losses = {}
    for alpha in (0.0, 2.0):
        model = build(backbones, gl_alpha=alpha).train()
        out = model(pixels, labels=labels)
        losses[alpha] = (out.loss, weighted_bce_with_logits(out.gl_logits, labels, model.positive_ratios))
    torch.testing.assert_close(losses[2.0][0] - losses[0.0][0], 2.0 * losses[2.0][1])


class TextCalls:
    def __init__(self, model):
        self.count = 0
        model.clip_model.text_model.register_forward_hook(self)

    def __call__(self, *args):
        self.count += 1


def test_text_features_are_cached_without_autograd(model, pixels):
    calls = TextCalls(model)
    model.eval()
    with torch.no_grad():
        first = model(pixels).logits
        second = model(pixels[:2]).logits
    assert calls.count == 1
    torch.testing.assert_close(first[:2], second)
    with torch.inference_mode():  # the same entry serves inference mode
        model(pixels)
        model(pixels)
    with torch.no_grad():  # and no_grad again after it
        model(pixels)
    assert calls.count == 1


def test_prompt_changes_invalidate_the_cache_and_training_forwards_bypass_it(model, pixels):
    calls = TextCalls(model)
    model.eval()
    with torch.no_grad():
        before = model(pixels).logits
        text_prompts = model.clip_model.text_model.embeddings.region_prompt_text["default"]
        text_prompts.add_(torch.randn_like(text_prompts))  # in place, like an optimizer step
        after = model(pixels).logits
    assert calls.count == 2 and not torch.allclose(before, after)
    model.train()
    model(pixels)
    model(pixels)
    assert calls.count == 4  # every forward with autograd runs the text tower
    model.eval()
    with torch.no_grad():
        model(pixels)
    assert calls.count == 4  # nothing changed since the cached value was computed


def test_an_optimizer_step_invalidates_the_cache(model, pixels, labels):
    optimizer = torch.optim.SGD(model.prompt_parameters(), lr=1.0)
    model.eval()
    with torch.no_grad():
        before = model.text_features().clone()
    model.train()
    model(pixels, labels=labels).loss.backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        assert not torch.allclose(model.text_features(), before)


def test_gl_scores_are_per_sample(backbones, pixels):
    model = trained(build(backbones)).eval()
    with torch.no_grad():
        out = model(pixels)
        permutation = torch.tensor([2, 0, 1])
        permuted = model(pixels[permutation])
        torch.testing.assert_close(permuted.gl_logits, out.gl_logits[permutation])
        for i in range(3):
            alone = model(pixels[i : i + 1])
            torch.testing.assert_close(alone.gl_logits[0], out.gl_logits[i], rtol=1e-5, atol=1e-5)


def test_aggregator_rule_by_hand():
    """Two samples, two regions, two attributes; BatchNorm at its initial identity in eval mode."""
    aggregator = GlobalLocalAggregator(2, threshold=0.5).eval()
    text = torch.eye(2)
    # Unit class tokens and sentences, and a logit scale whose exp() is 10.
    scale = torch.tensor(10.0).log()
    tokens = torch.tensor([
        [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]],  # sample 0: CLS, region 1, region 2
        [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]],
    ])
    got = aggregator(tokens, text, scale)
    p_hi = torch.softmax(torch.tensor([10.0, 0.0]), 0)  # (0.99995, 0.0000454)
    hi, lo = p_hi[0], p_hi[1]
    # sample 0, attribute 0: regions give (hi, lo) -> max hi > 0.5 -> local hi; global hi
    # sample 0, attribute 1: regions give (lo, hi) -> max hi -> local hi; global lo
    # sample 1, attribute 0: regions give (lo, lo) -> max lo < 0.5 -> local = min lo; global lo
    # sample 1, attribute 1: regions (hi, hi) -> hi; global hi
    expected = torch.stack([torch.stack([hi, (hi + lo) / 2]), torch.stack([lo, hi])])
    eps = aggregator.batch_norm.eps
    torch.testing.assert_close(got, expected / (1 + eps) ** 0.5)


def test_bad_labels(model, pixels):
    with pytest.raises(ValueError, match="5"):
        model(pixels, labels=torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="3"):
        model(pixels, labels=torch.full((3, 5), 3))


def test_loss_needs_positive_ratios(backbones, pixels, labels):
    from par_prompt import PromptPARModel

    model = PromptPARModel.from_backbones(backbones.clip, ATTRIBUTES, fusion_name_or_path=backbones.vit,
                                          prompts_per_group=2)
    with pytest.raises(ValueError, match="set_positive_ratios"):
        model.train()(pixels, labels=labels)
    with pytest.raises(ValueError, match="Expected 5 positive ratios"):
        model.set_positive_ratios([0.5, 0.5])


def test_training_batch_of_one_is_refused(model, pixels):
    with pytest.raises(ValueError, match="at least 2"):
        model.train()(pixels[:1])


def test_sentence_too_long_names_it(backbones):
    long_sentence = "A pedestrian " + " ".join(["wearing a hat"] * 30)
    with pytest.raises(ValueError, match="leaves no room .* for the sentence 'A pedestrian wearing a hat wearing"):
        build(backbones, sentences=[long_sentence] + ["A pedestrian."] * (len(ATTRIBUTES) - 1))


def test_bf16_autocast_forward(model, pixels, labels):
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(pixels, labels=labels)
    assert torch.isfinite(out.loss)
    out.loss.backward()




def test_bf16_weights(model, pixels):
    model = model.to(torch.bfloat16).eval()
    with torch.inference_mode():
        out = model(pixels.to(torch.bfloat16))
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.gl_logits.float()).all()


def test_gl_logits_can_be_skipped_for_prediction(model, pixels, labels):
    model.eval()
    with torch.no_grad():
        full = model(pixels)
        fast = model(pixels, compute_gl_logits=False)
        with_labels = model(pixels, labels=labels, compute_gl_logits=False)
    assert fast.gl_logits is None and torch.equal(fast.logits, full.logits)
    assert with_labels.gl_logits is not None  # the loss needs them
