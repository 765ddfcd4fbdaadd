"""PromptPARModel's text features: the tower runs on the sentences cut to the longest one,
which gives the features (and gradients) of CLIP's 77 positions; and when the cached
features may be reused."""

import pytest
import torch

from par_prompt import PromptPARConfig, PromptPARModel
from par_prompt.tiny_backbones import tiny_clip_config, tiny_clip_tokenizer, tiny_vit_config

from .conftest import ATTRIBUTES, tokenize

SENTENCES = ["A pedestrian wearing a hat", "A pedestrian with glasses", "A pedestrian carrying a backpack",
             "A pedestrian whose upper clothing has short sleeves", "A pedestrian wearing trousers"]


def make_model(text_depth=None, attn="sdpa", text_prompts=2, per_sentence=False, seed=0):
    """A tiny PromptPARModel (3 text layers) with its prompts moved away from their init."""
    config = PromptPARConfig(attributes=ATTRIBUTES, sentences=SENTENCES, clip_config=tiny_clip_config(text_layers=3),
                             fusion_config=tiny_vit_config(), prompts_per_group=2, text_depth=text_depth,
                             text_prompts=text_prompts, text_prompt_per_sentence=per_sentence)
    torch.manual_seed(seed)
    model = PromptPARModel(config)
    tokenize(model)
    model.set_positive_ratios(torch.full((len(ATTRIBUTES),), 0.3))
    model.clip_model.set_attn_implementation(attn)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in model.prompt_parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return model.eval()


def text_prompts(model):
    text = model.clip_model.text_model
    first = text.embeddings.region_prompt_text["default"]  # (S, n, w)
    deep = text.encoder.region_prompt_text_deep.get("default")  # (depth - 1, S, n, w) or None
    return first, deep


def reference_features(model):
    """docs/method.md §3 literally: [SOT, T_1..T_n, tokens..., EOT, pad...] in all 77
    positions, every position through every layer under a plain causal mask, pooled at the
    end token (moved n places right), projected."""
    text = model.clip_model.text_model
    ids = model.sentence_ids  # (N, 77)
    first, deep = text_prompts(model)
    settings = text.encoder.prompt_settings["default"]
    n, depth = settings.num_prompts, settings.depth
    batch, length = ids.shape
    embeddings = text.embeddings.base_layer
    tokens = embeddings.token_embedding(ids)
    hidden = torch.cat([tokens[:, :1], first.expand(batch, -1, -1), tokens[:, 1 : length - n]], dim=1)
    hidden = hidden + embeddings.position_embedding.weight[:length]
    causal = torch.full((length, length), torch.finfo(hidden.dtype).min).triu(1)[None, None]
    for index, layer in enumerate(text.encoder.base_layer.layers):
        if 0 < index < depth:
            hidden = torch.cat([hidden[:, :1], deep[index - 1].expand(batch, -1, -1), hidden[:, 1 + n :]], dim=1)
        hidden = layer(hidden, causal)
    hidden = text.final_layer_norm(hidden)
    ends = (ids == text.config.eos_token_id).int().argmax(dim=-1) + n
    return model.clip_model.text_projection(hidden[torch.arange(batch), ends])


class TowerInputs:
    """Records the input_ids length of each text tower call."""

    def __init__(self, model):
        self.lengths = []
        model.clip_model.text_model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        self.lengths.append(kwargs["input_ids"].shape[1])


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("text_depth,per_sentence", [(1, False), (2, False), (None, False), (None, True)])
def test_features_and_gradients_equal_the_77_position_reference(text_depth, per_sentence, attn):
    model = make_model(text_depth, attn, per_sentence=per_sentence).train()
    inputs = TowerInputs(model)
    features = model.text_features()
    expected = reference_features(model)
    longest = max(len(tiny_clip_tokenizer()(s)["input_ids"]) for s in SENTENCES)
    assert inputs.lengths == [longest + 2]  # the longest sentence and the 2 prompt slots, not 77
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-5)
    weights = torch.randn(features.shape, generator=torch.Generator().manual_seed(5))
    prompts = [p for p in text_prompts(model) if p is not None]
    got = torch.autograd.grad((features * weights).sum(), prompts)
    want = torch.autograd.grad((expected * weights).sum(), prompts)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
        assert w.abs().sum() > 0


def test_without_text_prompts_the_features_are_plain_clip_at_77_positions():
    model = make_model(text_prompts=0)
    text = model.clip_model
    with torch.no_grad():
        expected = text.text_projection(text.text_model(input_ids=model.sentence_ids).pooler_output)
        torch.testing.assert_close(model.text_features(), expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------- the cache


def counting(model):
    calls = []
    model.clip_model.text_model.register_forward_hook(lambda *args: calls.append(1))
    return calls


def test_no_grad_features_carry_no_graph_and_are_no_inference_tensors():
    model = make_model()
    with torch.inference_mode():
        first = model.text_features()
    assert not first.is_inference() and not first.requires_grad
    with torch.no_grad():
        assert model.text_features() is first


def test_eval_mode_with_autograd_gets_a_fresh_graph_every_time():
    """Two forward-backward passes in eval mode with autograd on: the second must not
    reuse the first's (freed) graph."""
    model = make_model()
    pixels = torch.randn(2, 3, 32, 32)
    for _ in range(2):
        model(pixels).logits.sum().backward()
    assert all(p.grad is not None for p in model.prompt_parameters())


def test_a_gradient_forward_after_predict_works():
    """predict runs under inference mode; the caches it fills must not break a later
    forward with autograd (masks, causal masks, text features)."""
    from par_prompt.inference.predict import predict_probabilities

    model = make_model()
    pixels = torch.randn(2, 3, 32, 32)
    predict_probabilities(model, pixels)
    model.train()
    model(pixels, labels=torch.ones(2, len(ATTRIBUTES)).long()).logits.sum().backward()
    model.eval()
    model(pixels).logits.sum().backward()


@pytest.mark.parametrize("change", [
    "prompt_in_place", "prompt_through_data", "prompt_layers_swapped_through_data", "deep_prompt_through_data",
    "projection_in_place", "projection_load_state_dict", "projection_replaced", "projection_data_assigned",
    "unfrozen_projection_through_data", "tower_weight_in_place", "tower_layer_norm_in_place", "tower_load_state_dict",
    "token_embedding_in_place", "sentence_ids_through_data",
])
def test_cached_features_follow_every_change(change):
    model = make_model()
    clip = model.clip_model
    first, deep = text_prompts(model)
    with torch.no_grad():
        before = model.text_features().clone()
    generator = torch.Generator().manual_seed(3)

    def noise(tensor):
        return torch.randn(tensor.shape, generator=generator) * 0.5

    if change == "prompt_in_place":
        with torch.no_grad():
            first.add_(noise(first))
    elif change == "prompt_through_data":
        first.data.add_(noise(first))
    elif change == "prompt_layers_swapped_through_data":  # keeps the tensor's norm
        model = make_model(text_prompts=2, text_depth=3)
        with torch.no_grad():
            before = model.text_features().clone()
        deep = text_prompts(model)[1]
        deep.data.copy_(deep.data.flip(0))
    elif change == "deep_prompt_through_data":
        deep.data.mul_(-1.0)  # keeps the norm too
    elif change == "projection_in_place":
        clip.text_projection.weight.add_(noise(clip.text_projection.weight))  # frozen: no autograd in the way
    elif change == "projection_data_assigned":
        clip.text_projection.weight.data = clip.text_projection.weight + noise(clip.text_projection.weight)
    elif change == "unfrozen_projection_through_data":
        clip.text_projection.weight.requires_grad_(True)
        with torch.no_grad():
            before = model.text_features().clone()
        clip.text_projection.weight.data.add_(noise(clip.text_projection.weight))
    elif change == "projection_load_state_dict":
        clip.text_projection.load_state_dict({"weight": noise(clip.text_projection.weight)})
    elif change == "projection_replaced":
        clip.text_projection = torch.nn.Linear(32, 32, bias=False)
    elif change == "tower_weight_in_place":
        fc = clip.text_model.encoder.base_layer.layers[1].mlp.fc1
        fc.weight.add_(noise(fc.weight))
    elif change == "tower_layer_norm_in_place":
        clip.text_model.final_layer_norm.weight.mul_(2.0)
    elif change == "tower_load_state_dict":
        layer = clip.text_model.encoder.base_layer.layers[0]
        layer.load_state_dict({k: v + noise(v) for k, v in layer.state_dict().items()})
    elif change == "token_embedding_in_place":
        clip.text_model.embeddings.base_layer.token_embedding.weight.mul_(1.5)
    elif change == "sentence_ids_through_data":
        model.sentence_ids.data[0, 1:3] = model.sentence_ids[0, 1:3].flip(0)
    with torch.no_grad():
        after = model.text_features()
        expected = reference_features(model)
    torch.testing.assert_close(after, expected, rtol=1e-5, atol=1e-5)
    assert (after - before).abs().max() > 1e-4


def test_adapter_switch_and_disable_change_the_features():
    model = make_model()
    with torch.no_grad():
        prompted = model.text_features().clone()
        with model.peft_clip.disable_adapter():
            plain = model.text_features().clone()
            clip = model.clip_model
            expected = clip.text_projection(clip.text_model(input_ids=model.sentence_ids).pooler_output)
        again = model.text_features()
    torch.testing.assert_close(plain, expected, rtol=1e-5, atol=1e-5)
    assert (plain - prompted).abs().max() > 1e-4
    torch.testing.assert_close(again, prompted)
