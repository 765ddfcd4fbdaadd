"""Tests for par_prompt.tiny_backbones (tiny offline backbones written with save_pretrained)
and par_prompt.backbone_sizes (the published architecture numbers)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import time

import pytest
import torch
from safetensors.torch import load_file

from par_prompt import backbone_sizes as S
from par_prompt import tiny_backbones as T

SENTENCE = "A pedestrian wearing a hat"


def _go_offline(mp: pytest.MonkeyPatch) -> None:
    """HF offline mode (env + the constant huggingface_hub read at import) and no sockets."""
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    import huggingface_hub.constants

    mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    def _no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    mp.setattr(socket.socket, "connect", _no_network)
    mp.setattr(socket.socket, "connect_ex", _no_network)
    mp.setattr(socket, "create_connection", _no_network)


@pytest.fixture
def offline(monkeypatch):
    _go_offline(monkeypatch)


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        _go_offline(mp)
        return T.write_tiny_backbones(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tokenizer(backbones):
    from transformers import AutoTokenizer

    with pytest.MonkeyPatch.context() as mp:
        _go_offline(mp)
        return AutoTokenizer.from_pretrained(backbones.clip)


def test_files_exist(backbones):
    assert os.path.isabs(backbones.clip) and os.path.isabs(backbones.vit)
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
        "merges.txt",
        "preprocessor_config.json",
        "processor_config.json",
    ):
        assert os.path.isfile(os.path.join(backbones.clip, name)), name
    for name in ("config.json", "model.safetensors"):
        assert os.path.isfile(os.path.join(backbones.vit, name)), name
    with pytest.raises(dataclasses.FrozenInstanceError):
        backbones.clip = "elsewhere"  # frozen dataclass


def test_clip_reloads_with_consistent_special_ids(backbones, tokenizer, offline):
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(backbones.clip)
    text = model.config.text_config
    assert text.max_position_embeddings == S.CLIP_CONTEXT_LENGTH == 77
    assert tokenizer.model_max_length == 77
    assert text.vocab_size == len(tokenizer)
    assert text.bos_token_id == tokenizer.bos_token_id == tokenizer.convert_tokens_to_ids("<|startoftext|>")
    assert text.eos_token_id == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert text.pad_token_id == tokenizer.pad_token_id == text.eos_token_id
    assert text.eos_token_id != 2  # avoid transformers' legacy argmax pooling path
    assert text.eos_token_id == len(tokenizer) - 1 == max(tokenizer.get_vocab().values())
    assert model.config.vision_config.image_size == 32
    assert model.config.vision_config.patch_size == 4
    assert model.config.projection_dim == 32


def test_sentence_tokenizes_one_token_per_word(tokenizer):
    enc = tokenizer(SENTENCE, padding="max_length", max_length=77)
    ids = enc["input_ids"]
    words = SENTENCE.lower().split()
    assert len(ids) == 77
    assert ids[0] == tokenizer.bos_token_id
    assert ids[1 : 1 + len(words)] == tokenizer.convert_tokens_to_ids([w + "</w>" for w in words])
    assert ids[1 + len(words)] == tokenizer.eos_token_id
    assert ids[2 + len(words) :] == [tokenizer.pad_token_id] * (75 - len(words))
    assert enc["attention_mask"] == [1] * (len(words) + 2) + [0] * (75 - len(words))


def test_every_builtin_word_is_one_token(tokenizer):
    assert len(T.PAR_WORDS) >= 300
    for word in ("pedestrian", "sunglasses", "backpack", "trousers", "whose", "clothing", "purple"):
        assert word in T.PAR_WORDS
    encoded = tokenizer(list(T.PAR_WORDS), add_special_tokens=False)["input_ids"]
    not_single = [w for w, ids in zip(T.PAR_WORDS, encoded) if len(ids) != 1]
    assert not_single == []


def test_it_is_a_real_clip_tokenizer_loaded_by_from_pretrained(backbones, tokenizer, offline):
    from transformers import CLIPTokenizer

    assert isinstance(tokenizer, CLIPTokenizer)  # what AutoTokenizer picks for a CLIP folder
    again = CLIPTokenizer.from_pretrained(backbones.clip)
    assert again.get_vocab() == tokenizer.get_vocab() == T.tiny_clip_tokenizer().get_vocab()
    assert again(SENTENCE)["input_ids"] == tokenizer(SENTENCE)["input_ids"]


def test_every_word_of_the_demo_sentences_is_one_token(offline):
    from par_prompt.data.synthetic import SENTENCES
    from par_prompt.demo import demo_words

    tokenizer = T.tiny_clip_tokenizer(demo_words())
    for sentence in SENTENCES:
        ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
        assert len(ids) == len(sentence.split()), sentence


def test_the_trained_tokenizer_is_the_same_in_every_process():
    """The BPE trainer numbers new symbols in hash order, which differs between processes;
    the tiny tokenizer must not (the demo's figures and caches depend on its ids)."""
    import subprocess
    import sys

    code = ("import hashlib, json; from par_prompt.tiny_backbones import _clip_bpe; "
            "print(hashlib.sha256(json.dumps(_clip_bpe(('xylophone',))).encode()).hexdigest())")
    here = __import__("hashlib").sha256(json.dumps(T._clip_bpe(("xylophone",))).encode()).hexdigest()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(T.__file__)),
                                                                      os.environ.get("PYTHONPATH")]))}
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        assert out.stdout.strip() == here


def test_unknown_word_falls_back_and_round_trips(tokenizer):
    ids = tokenizer("xylophone", add_special_tokens=False)["input_ids"]
    assert len(ids) > 1
    assert tokenizer.decode(ids) == "xylophone"
    text = "a pedestrian holding a xylophone"
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text
    # non-ASCII text goes through byte fallback, never to <unk>
    ids = tokenizer("schön 日本", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == "schön 日本"


def test_numbers_split_into_digits_like_clip(tokenizer):
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("age 16", add_special_tokens=False)["input_ids"])
    assert tokens == ["age</w>", "1</w>", "6</w>"]


def test_vocab_and_merges_files_alone_reproduce_tokenizer(backbones, tokenizer, tmp_path, offline):
    from transformers import CLIPTokenizer

    for name in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(backbones.clip, name), tmp_path)
    with open(tmp_path / "merges.txt", encoding="utf-8") as f:
        assert f.readline() == "#version: 0.2\n"
    with open(tmp_path / "vocab.json", encoding="utf-8") as f:
        vocab = json.load(f)
    assert sorted(vocab.values()) == list(range(len(vocab)))
    assert vocab["!"] == 0 and vocab["!</w>"] == 256  # CLIP's byte-level layout
    assert vocab["<|startoftext|>"] == len(vocab) - 2 and vocab["<|endoftext|>"] == len(vocab) - 1

    from_files = CLIPTokenizer.from_pretrained(tmp_path)
    assert from_files.get_vocab() == tokenizer.get_vocab()
    text = "A pedestrian wearing a T-shirt, 45 years old, holding a xylophone"
    assert from_files(text)["input_ids"] == tokenizer(text)["input_ids"]


def test_image_processor_and_processor_reload(backbones, offline):
    from transformers import AutoImageProcessor, AutoProcessor

    image_processor = AutoImageProcessor.from_pretrained(backbones.clip)
    assert list(image_processor.image_mean) == [0.48145466, 0.4578275, 0.40821073]
    assert list(image_processor.image_std) == [0.26862954, 0.26130258, 0.27577711]
    assert image_processor.size["shortest_edge"] == 32
    assert (image_processor.crop_size["height"], image_processor.crop_size["width"]) == (32, 32)
    processor = AutoProcessor.from_pretrained(backbones.clip)
    assert type(processor).__name__ == "CLIPProcessor"
    with open(os.path.join(backbones.clip, "preprocessor_config.json")) as f:
        assert json.load(f)["image_processor_type"] == "CLIPImageProcessor"


def test_clip_forward_on_text_and_image(backbones, offline):
    import numpy as np
    from PIL import Image
    from transformers import AutoProcessor, CLIPModel

    model = CLIPModel.from_pretrained(backbones.clip).eval()
    processor = AutoProcessor.from_pretrained(backbones.clip)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, size=(48, 40, 3), dtype=np.uint8))
    inputs = processor(
        text=[SENTENCE, "a female pedestrian with a xylophone"],
        images=[image],
        padding="max_length",
        max_length=77,
        return_tensors="pt",
    )
    assert inputs["pixel_values"].shape == (1, 3, 32, 32)
    with torch.no_grad():
        out = model(**inputs)
    assert out.logits_per_image.shape == (1, 2)
    assert out.text_embeds.shape == (2, 32) and out.image_embeds.shape == (1, 32)
    assert torch.isfinite(out.logits_per_image).all()
    # The text tower pools at the first <|endoftext|>, not at a padding position.
    # (Use model.text_model: in transformers 5.x CLIPModel's text_model_output
    # and get_text_features() carry the *projected* feature as pooler_output.)
    eos_pos = (inputs["input_ids"] == model.config.text_config.eos_token_id).int().argmax(-1)
    assert eos_pos.tolist() == (inputs["attention_mask"].sum(-1) - 1).tolist()
    assert eos_pos[0].item() == 1 + len(SENTENCE.split())
    with torch.no_grad():
        text_out = model.text_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    expected = text_out.last_hidden_state[torch.arange(2), eos_pos]
    torch.testing.assert_close(text_out.pooler_output, expected)
    projected = model.text_projection(text_out.pooler_output)
    torch.testing.assert_close(out.text_embeds, projected / projected.norm(dim=-1, keepdim=True))


def test_same_seed_same_weights_and_rng_untouched(backbones, tmp_path, offline):
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    again = T.write_tiny_backbones(tmp_path / "same", seed=0)
    assert torch.equal(torch.get_rng_state(), before)
    other = T.write_tiny_backbones(tmp_path / "other", seed=1)
    for sub in ("clip", "vit"):
        ref = load_file(os.path.join(getattr(backbones, sub), "model.safetensors"))
        same = load_file(os.path.join(getattr(again, sub), "model.safetensors"))
        diff = load_file(os.path.join(getattr(other, sub), "model.safetensors"))
        assert ref.keys() == same.keys() == diff.keys()
        assert all(torch.equal(ref[k], same[k]) for k in ref)
        assert not all(torch.equal(ref[k], diff[k]) for k in ref)


def test_write_is_fast(tmp_path, offline):
    start = time.perf_counter()
    T.write_tiny_backbones(tmp_path)
    assert time.perf_counter() - start < 5.0


def test_extra_words_become_single_tokens(tmp_path, offline):
    from transformers import AutoTokenizer, CLIPModel

    paths = T.write_tiny_backbones(tmp_path, extra_words=["xylophone", "Raincoat"])
    tok = AutoTokenizer.from_pretrained(paths.clip)
    assert tok.convert_ids_to_tokens(tok("xylophone raincoat", add_special_tokens=False)["input_ids"]) == [
        "xylophone</w>",
        "raincoat</w>",
    ]
    base = T.tiny_clip_tokenizer()
    assert len(tok) > len(base)
    config = CLIPModel.from_pretrained(paths.clip).config.text_config
    assert config.vocab_size == len(tok) and config.eos_token_id == len(tok) - 1


def _vit_blocks(vit):
    """``layers`` in transformers >= 5.x refactor, ``encoder.layer`` before."""
    return vit.layers if hasattr(vit, "layers") else vit.encoder.layer


def test_vit_has_hub_layout_and_reloads(backbones, offline):
    from safetensors import safe_open
    from transformers import ViTForImageClassification, ViTModel

    with safe_open(os.path.join(backbones.vit, "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    # key names of google/vit-base-patch16-224's checkpoint
    assert "vit.encoder.layer.0.attention.attention.query.weight" in keys
    assert "vit.encoder.layer.0.output.dense.weight" in keys
    assert {"vit.layernorm.weight", "classifier.weight", "vit.embeddings.cls_token"} <= keys
    assert not any("pooler" in k for k in keys)

    vit, info = ViTModel.from_pretrained(backbones.vit, add_pooling_layer=False, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"]
    assert set(info["unexpected_keys"]) <= {"classifier.weight", "classifier.bias"}
    assert vit.dtype == torch.float32
    assert vit.config.hidden_size == 48
    assert vit.config.num_hidden_layers == len(_vit_blocks(vit)) == 1
    assert vit.config.num_attention_heads == 2
    assert vit.layernorm.normalized_shape == (48,)

    head, info = ViTForImageClassification.from_pretrained(backbones.vit, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    for name, tensor in vit.state_dict().items():
        torch.testing.assert_close(tensor, head.vit.state_dict()[name], rtol=0, atol=0)

    with torch.no_grad():
        out = vit(pixel_values=torch.randn(2, 3, 32, 32))
    assert out.last_hidden_state.shape == (2, 1 + (32 // 4) ** 2, 48)
    tokens = torch.randn(2, 5, 48)
    with torch.no_grad():
        block_out = _vit_blocks(vit)[-1](tokens)
        block_out = block_out[0] if isinstance(block_out, tuple) else block_out
        fused = vit.layernorm(block_out)
    assert fused.shape == (2, 5, 48)


def test_in_memory_configs_match_written(backbones):
    with open(os.path.join(backbones.clip, "config.json")) as f:
        written = json.load(f)
    config = T.tiny_clip_config()
    assert config.text_config.vocab_size == len(T.tiny_clip_tokenizer()) == written["text_config"]["vocab_size"]
    assert config.text_config.eos_token_id == written["text_config"]["eos_token_id"]
    assert config.text_config.hidden_size == 32 and config.text_config.intermediate_size == 128
    assert config.vision_config.num_hidden_layers == 2
    vit = T.tiny_vit_config()
    assert (vit.hidden_size, vit.num_hidden_layers, vit.intermediate_size) == (48, 1, 192)
    bigger = T.tiny_clip_config(text_width=64, text_heads=4, vocab_size=1000)
    assert bigger.text_config.bos_token_id == 998 and bigger.text_config.eos_token_id == 999


def test_full_size_configs_match_published_parameter_counts():
    from transformers import CLIPModel, ViTModel

    def count(model):
        return sum(p.numel() for p in model.parameters())

    with torch.device("meta"):
        l14 = CLIPModel(S.clip_config_from_sizes(S.CLIP_VIT_L14_SIZES))
        b16 = CLIPModel(S.clip_config_from_sizes(S.CLIP_VIT_B16_SIZES))
        vit = ViTModel(S.vit_config_from_sizes(S.VIT_B16_SIZES))
    # Published totals of openai/clip-vit-large-patch14, openai/clip-vit-base-patch16
    # and google/vit-base-patch16-224's ViTModel (with pooler).
    assert count(l14) == 427_616_513
    assert count(b16) == 149_620_737
    assert count(vit) == 86_389_248
    assert l14.config.text_config.eos_token_id == 49407 and l14.config.text_config.bos_token_id == 49406
    assert S.CLIP_VIT_L14_SIZES["text"]["vocab_size"] == 49408  # the dicts were not mutated
