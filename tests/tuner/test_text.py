"""Deep text prompts on the CLIP text tower (docs/method.md §3)."""

import pytest
import torch
from peft import get_peft_model

from par_prompt import RegionPromptConfig
from par_prompt.tuner.text import TextPromptEmbeddingLayer, TextPromptEncoderLayer, trimmed_length

from .conftest import make_clip, padding_mask, text_ids


def prompted(model, **config):
    return get_peft_model(model, RegionPromptConfig(**config))


def prompt_tensors(peft_model):
    first = next(m for m in peft_model.modules() if isinstance(m, TextPromptEmbeddingLayer))
    deep = next(m for m in peft_model.modules() if isinstance(m, TextPromptEncoderLayer))
    return first.region_prompt_text["default"], deep.region_prompt_text_deep.get("default")


def reference_pooled(tower, ids, first, deep, depth):
    """The prompted sentence built literally: [SOT, T_1..T_n, tokens..., EOT, ...] in 77
    positions, run through the tower's layers under a plain causal mask, pooled at the
    end token, which has moved n places to the right."""
    n = first.shape[-2]
    batch, length = ids.shape
    emb = tower.embeddings.base_layer if hasattr(tower.embeddings, "base_layer") else tower.embeddings
    encoder = tower.encoder.base_layer if hasattr(tower.encoder, "base_layer") else tower.encoder
    tokens = emb.token_embedding(ids)
    sequence = torch.cat([tokens[:, :1], first.expand(batch, -1, -1), tokens[:, 1 : length - n]], dim=1)
    sequence = sequence + emb.position_embedding.weight[:length]
    causal = torch.full((length, length), torch.finfo(sequence.dtype).min).triu(1)[None, None]
    hidden = sequence
    for index, layer in enumerate(encoder.layers):
        if 0 < index < depth:
            hidden = torch.cat([hidden[:, :1], deep[index - 1].expand(batch, -1, -1), hidden[:, 1 + n :]], dim=1)
        hidden = layer(hidden, causal)
    hidden = tower.final_layer_norm(hidden)
    ends = (ids == tower.config.eos_token_id).int().argmax(dim=-1) + n
    return hidden[torch.arange(batch), ends]


@pytest.mark.parametrize("depth", [None, 1, 2])
def test_prompts_sit_right_after_the_start_token(depth):
    model = prompted(make_clip("text", text_layers=3), text_depth=depth)
    ids = text_ids(model.config)
    first, deep = prompt_tensors(model)
    with torch.no_grad():
        got = model(input_ids=ids).pooler_output
        expected = reference_pooled(model.get_base_model(), ids, first, deep, depth or 3)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    if depth == 1:
        assert deep is None


def test_last_hidden_state_keeps_the_input_positions():
    model = prompted(make_clip("text"))
    ids = text_ids(model.config)
    out = model(input_ids=ids)
    assert out.last_hidden_state.shape == (3, 77, 32)
    ends = (ids == model.config.eos_token_id).int().argmax(dim=-1)
    torch.testing.assert_close(out.pooler_output, out.last_hidden_state[torch.arange(3), ends])


def test_pooled_output_changes_with_the_prompts():
    model = prompted(make_clip("text"))
    ids = text_ids(model.config)
    first, deep = prompt_tensors(model)
    with torch.no_grad():
        before = model(input_ids=ids).pooler_output
        first.add_(torch.randn_like(first))
        after_first = model(input_ids=ids).pooler_output
        deep.add_(torch.randn_like(deep))
        after_deep = model(input_ids=ids).pooler_output
    assert (after_first - before).abs().max() > 1e-3
    assert (after_deep - after_first).abs().max() > 1e-3


def test_every_prompted_layer_gets_a_gradient_from_the_pooled_output():
    model = prompted(make_clip("text", text_layers=4))
    model.train()
    ids = text_ids(model.config)
    model(input_ids=ids).pooler_output.square().sum().backward()
    first, deep = prompt_tensors(model)
    assert first.grad is not None and first.grad.abs().sum() > 0
    assert deep.shape[0] == 3
    for layer in range(3):
        assert deep.grad[layer].abs().sum() > 0, f"no gradient reaches the prompts of layer {layer + 1}"


@pytest.mark.parametrize("padded", [False, True])
def test_eager_and_sdpa_agree(padded):
    outputs = []
    for attn in ("eager", "sdpa"):
        model = prompted(make_clip("text", attn=attn, seed=2))
        ids = text_ids(model.config)
        mask = padding_mask(ids, model.config.eos_token_id) if padded else None
        with torch.no_grad():
            outputs.append(model(input_ids=ids, attention_mask=mask))
    torch.testing.assert_close(outputs[0].pooler_output, outputs[1].pooler_output, rtol=1e-5, atol=1e-5)


def test_padding_mask_does_not_change_the_pooled_output():
    # Padding sits after the end token, so under the causal order it never reaches it.
    model = prompted(make_clip("text"))
    ids = text_ids(model.config)
    with torch.no_grad():
        plain = model(input_ids=ids).pooler_output
        masked = model(input_ids=ids, attention_mask=padding_mask(ids, model.config.eos_token_id)).pooler_output
    torch.testing.assert_close(plain, masked, rtol=1e-5, atol=1e-5)


def test_sentence_too_long_for_the_prompts():
    model = prompted(make_clip("text"), text_prompts=3)
    ids = text_ids(model.config, lengths=(5, 73, 2))  # row 1: end token at 74 > 77 - 1 - 3
    with pytest.raises(ValueError, match="row 1 is too long for 3 text prompts"):
        model(input_ids=ids)
    ok = text_ids(model.config, lengths=(72,))  # end token at 73: just fits
    model(input_ids=ok[:1])


def test_per_sentence_prompts():
    model = prompted(make_clip("text"), text_prompt_per_sentence=True, num_sentences=3)
    first, deep = prompt_tensors(model)
    assert first.shape == (3, 3, 32) and deep.shape == (1, 3, 3, 32)
    ids = text_ids(model.config)
    with torch.no_grad():
        before = model(input_ids=ids).pooler_output
        first[1].add_(torch.randn_like(first[1]))
        after = model(input_ids=ids).pooler_output
    torch.testing.assert_close(after[[0, 2]], before[[0, 2]])
    assert (after[1] - before[1]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="one set of text prompts per sentence"):
        model(input_ids=ids[:2])


def test_inputs_embeds_are_refused():
    model = prompted(make_clip("text"))
    layer = next(m for m in model.modules() if isinstance(m, TextPromptEmbeddingLayer))
    with pytest.raises(ValueError, match="plain input_ids"):
        layer(inputs_embeds=torch.zeros(1, 77, 32))


def test_causal_mask_built_under_inference_mode_serves_autograd():
    """The logical causal mask is cached; one first built under inference mode must not
    break a later forward with autograd ("Inference tensors cannot be saved for backward")."""
    model = prompted(make_clip("text"))
    ids = text_ids(model.config)
    with torch.inference_mode():
        expected = model(input_ids=ids).pooler_output.clone()
    model.train()
    out = model(input_ids=ids).pooler_output
    out.square().sum().backward()
    first, deep = prompt_tensors(model)
    assert first.grad is not None and deep.grad is not None
    torch.testing.assert_close(out.detach(), expected)


@pytest.mark.parametrize("record", [None, "hidden_states", "attentions"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_sentences_cut_after_the_longest_give_the_77_position_results(attn, record):
    """PromptPARModel runs the tower on trimmed_length positions: every kept position's
    state, attention row and the pooled output equal those of the full 77 positions."""
    model = prompted(make_clip("text", attn=attn, text_layers=3), text_depth=2)
    model.train()
    ids = text_ids(model.config)  # the longest sentence ends at position 10
    n, eos = 3, model.config.eos_token_id
    cut = trimmed_length(ids, n, eos)
    assert cut == 10 + 1 + n
    kept = list(range(cut - n)) + list(range(77 - n, 77))  # the cut keeps the prompt slots at its end
    flags = {f"output_{record}": True} if record else {}
    full, short = model(input_ids=ids, **flags), model(input_ids=ids[:, :cut], **flags)
    torch.testing.assert_close(short.pooler_output, full.pooler_output, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(short.last_hidden_state, full.last_hidden_state[:, kept], rtol=1e-5, atol=1e-5)
    if record == "hidden_states":
        for got, want in zip(short.hidden_states, full.hidden_states, strict=True):
            torch.testing.assert_close(got, want[:, kept], rtol=1e-5, atol=1e-5)
    if record == "attentions" and attn == "eager":
        for got, want in zip(short.attentions, full.attentions, strict=True):
            torch.testing.assert_close(got, want[:, :, kept][:, :, :, kept], rtol=1e-5, atol=1e-5)
    first, deep = prompt_tensors(model)
    grads = [torch.autograd.grad(out.pooler_output.square().sum(), [first, deep]) for out in (short, full)]
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
