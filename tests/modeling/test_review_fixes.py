"""Saving into shared folders, base precision, download arguments and processor call
arguments: each a way the model could lose a user's file or answer wrongly without a word."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from transformers import CLIPModel

from par_prompt import PromptPARModel, PromptPARProcessor
from par_prompt.modeling import loading

from .conftest import ATTRIBUTES, build

USER_FILES = {
    "vocab.json": '{"user": 1}',
    "merges.txt": "#version: user\n",
    "special_tokens_map.json": '{"user": true}',
    "preprocessor_config.json": json.dumps({"image_processor_type": "CLIPImageProcessor", "user": True}),
}


def _write(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


def _unchanged(folder, files):
    return {name: (folder / name).read_text() if (folder / name).exists() else None for name in files} == files


def test_saving_the_processor_after_the_model_keeps_another_tokenizer_s_files(backbones, tmp_path):
    folder = tmp_path / "shared"
    _write(folder, USER_FILES)
    build(backbones).save_pretrained(folder)
    processor = PromptPARProcessor.from_pretrained(backbones.clip)
    try:
        processor.save_pretrained(folder)
    except FileExistsError:
        pass  # refusing is fine; deleting or overwriting is not
    assert _unchanged(folder, USER_FILES)


def test_saving_the_model_after_the_processor_never_overwrites_a_foreign_config(backbones, tmp_path):
    folder = tmp_path / "shared"
    foreign = {"config.json": json.dumps({"model_type": "bert", "hidden_size": 8})}
    _write(folder, foreign)
    PromptPARProcessor.from_pretrained(backbones.clip).save_pretrained(folder)
    with pytest.raises(FileExistsError, match="config.json"):
        build(backbones).save_pretrained(folder)
    assert _unchanged(folder, foreign)


def test_resaving_model_and_processor_into_their_own_folder_still_works(backbones, tmp_path):
    folder = tmp_path / "model"
    processor = PromptPARProcessor.from_pretrained(backbones.clip)
    for _ in range(2):
        build(backbones).save_pretrained(folder)
        processor.save_pretrained(folder)
    assert PromptPARProcessor.from_pretrained(folder).sentence_token_ids(["a hat"])
    assert PromptPARModel.from_pretrained(folder).config.attributes == ATTRIBUTES


def test_a_half_precision_clip_base_loads_in_float32(backbones, tmp_path, pixels):
    half = tmp_path / "clip16"
    CLIPModel.from_pretrained(backbones.clip).half().save_pretrained(half)
    PromptPARProcessor.from_pretrained(backbones.clip).tokenizer.save_pretrained(half)
    torch.manual_seed(0)
    model = PromptPARModel.from_backbones(str(half), ATTRIBUTES, fusion_name_or_path=backbones.vit,
                                          prompts_per_group=2).eval()
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert model(pixel_values=pixels).logits.dtype == torch.float32
    model.save_pretrained(tmp_path / "model")
    again = PromptPARModel.from_pretrained(tmp_path / "model", dtype=torch.bfloat16)
    assert {p.dtype for p in again.parameters()} == {torch.bfloat16}


def test_download_arguments_reach_the_bases(backbones, tmp_path, monkeypatch):
    build(backbones).save_pretrained(tmp_path / "model")
    seen = []
    real = loading.load_clip

    def load_clip(*args, **kwargs):
        seen.append({key: kwargs.get(key) for key in ("force_download", "proxies")})
        return real(*args, **{k: v for k, v in kwargs.items() if k not in ("force_download", "proxies")})

    monkeypatch.setattr(loading, "load_clip", load_clip)
    PromptPARModel.from_pretrained(tmp_path / "model", force_download=True, proxies={"https": "http://proxy:1"})
    assert seen == [{"force_download": True, "proxies": {"https": "http://proxy:1"}}]


def test_an_image_setting_given_to_the_processor_call_is_refused(backbones):
    processor = PromptPARProcessor.from_pretrained(backbones.clip)
    image = Image.new("RGB", (20, 40), (200, 10, 10))
    for call in (dict(images=image, text="a hat", image_mean=[0, 0, 0]), dict(images=image, do_pad=False)):
        with pytest.raises(TypeError, match="image settings are not changed per call"):
            processor(**call)
    assert processor(images=image, text="a hat", max_length=8, truncation=True)["input_ids"].shape[1] <= 8
