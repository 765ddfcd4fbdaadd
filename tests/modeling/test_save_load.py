"""The tiny-adapter contract: what save_pretrained writes, round trips, atomicity, bad files."""

import json
import os
import shutil

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModel, CLIPModel

import par_prompt.modeling.serialization as serialization
from par_prompt import PromptPARConfig, PromptPARModel
from par_prompt.modeling.loading import MissingBaseModelError
from par_prompt.testing import CLIP_VIT_L14_SIZES, VIT_B16_SIZES, clip_config_from_sizes, vit_config_from_sizes
from par_prompt.testing import write_tiny_backbones

from .conftest import ATTRIBUTES, build, trained


def logits(model, pixels):
    with torch.no_grad():
        out = model.eval()(pixels)
    return out.logits, out.gl_logits


@pytest.fixture
def saved(backbones, tmp_path, pixels):
    model = trained(build(backbones))
    model.save_pretrained(tmp_path / "model")
    return tmp_path / "model", logits(model, pixels)


def test_saved_files(saved):
    directory, _ = saved
    files = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
    assert "config.json" in files and "promptpar_head.safetensors" in files
    assert "clip_adapter/adapter_config.json" in files and "clip_adapter/adapter_model.safetensors" in files
    assert "preprocessor_config.json" in files and "tokenizer_config.json" in files
    assert not any(f.endswith((".bin", ".pt", ".pth", ".pkl")) for f in files)
    assert "clip_base.safetensors" not in files  # the CLIP has a reference: not bundled
    head = load_file(directory / "promptpar_head.safetensors")
    assert not any(k.startswith(("clip.", "fusion.layers.")) for k in head)
    for key in ("positive_ratios", "heads.batch_norm.running_mean", "aggregator.temperature", "fusion.norm.weight"):
        assert key in head
    config = json.loads((directory / "config.json").read_text())
    assert config["model_type"] == "prompt_par" and config["sentences"][0] == "A pedestrian wearing a hat"


def test_round_trip_gives_identical_logits(saved, pixels):
    directory, expected = saved
    loaded = PromptPARModel.from_pretrained(directory)
    got = logits(loaded, pixels)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert not loaded.training
    auto = AutoModel.from_pretrained(directory)
    assert torch.equal(logits(auto, pixels)[0], expected[0])


def test_loaded_model_trains_what_a_new_one_trains(saved, backbones):
    directory, _ = saved
    loaded = PromptPARModel.from_pretrained(directory)
    fresh = build(backbones)
    assert {n for n, p in loaded.named_parameters() if p.requires_grad} == {
        n for n, p in fresh.named_parameters() if p.requires_grad
    }
    # from_pretrained re-enables requires_grad on loaded weights; the bases must stay frozen.
    assert not any(p.requires_grad for p in loaded.clip_model.vision_model.encoder.base_layer.parameters())
    assert not any(p.requires_grad for p in loaded.clip_model.text_model.encoder.base_layer.parameters())
    assert not any(p.requires_grad for p in loaded.fusion.layers.parameters())


def test_clip_adapter_loads_on_its_own_with_peft(saved, backbones):
    directory, _ = saved
    clip = CLIPModel.from_pretrained(backbones.clip)
    peft_model = PeftModel.from_pretrained(clip, directory / "clip_adapter")
    reloaded = PromptPARModel.from_pretrained(directory)
    for name, tensor in reloaded.clip.state_dict().items():
        if "region_prompt_" in name:
            assert torch.equal(peft_model.state_dict()[name], tensor)


def test_size_arithmetic_matches_the_files(saved):
    directory, _ = saved
    model = PromptPARModel.from_pretrained(directory)
    tensor_bytes = 0
    for path in directory.rglob("*.safetensors"):
        tensor_bytes += sum(t.numel() * t.element_size() for t in load_file(path).values())
    assert tensor_bytes == model.saved_weight_bytes()


def test_vit_l14_adapter_files_are_at_most_15_mb():
    attributes = [f"attribute{i}" for i in range(51)]
    config = PromptPARConfig(attributes=attributes, sentences=[f"A pedestrian with {a}." for a in attributes],
                             clip_name_or_path="openai/clip-vit-large-patch14",
                             clip_config=clip_config_from_sizes(CLIP_VIT_L14_SIZES),
                             fusion_name_or_path="google/vit-base-patch16-224",
                             fusion_config=vit_config_from_sizes(VIT_B16_SIZES))
    with torch.device("meta"):
        model = PromptPARModel(config)
    assert model.saved_weight_bytes() <= 15e6
    assert model.saved_weight_bytes(bundle_base_weights=True) > 400 * 4e6  # the bases would dominate


def test_save_is_atomic(saved, backbones, monkeypatch, pixels):
    directory, expected = saved
    before = sorted(p.name for p in directory.rglob("*"))
    model = build(backbones)
    calls = []

    def failing_save_file(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(tensors, path, metadata=metadata)

    real = serialization.save_file
    monkeypatch.setattr(serialization, "save_file", failing_save_file)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(directory)
    monkeypatch.undo()
    assert sorted(p.name for p in directory.rglob("*")) == before
    assert not [p for p in directory.parent.iterdir() if p.name.startswith(".model")]
    got = logits(PromptPARModel.from_pretrained(directory), pixels)
    assert torch.equal(got[0], expected[0])


@pytest.mark.parametrize("target", ["clip_adapter/adapter_model.safetensors", "promptpar_head.safetensors"])
def test_truncated_files_are_named(saved, target):
    directory, _ = saved
    path = directory / target
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"{path.name}.*corrupt or truncated"):
        PromptPARModel.from_pretrained(directory)


def test_garbage_file_is_named(saved):
    directory, _ = saved
    (directory / "promptpar_head.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        PromptPARModel.from_pretrained(directory)


def test_adapter_for_another_backbone(saved, tmp_path):
    directory, _ = saved
    other = write_tiny_backbones(tmp_path / "wider", vision_width=48, vision_heads=2)
    with pytest.raises(ValueError, match="different CLIP.*vision width 32 vs 48"):
        PromptPARModel.from_pretrained(directory, clip_name_or_path=other.clip)


def test_attribute_count_mismatch_in_the_head_file(saved):
    directory, _ = saved
    with pytest.raises(ValueError, match="does not fit this model"):
        PromptPARModel.from_pretrained(directory, config=PromptPARConfig.from_dict(
            {**json.loads((directory / "config.json").read_text()), "attributes": ATTRIBUTES[:3],
             "sentences": None, "id2label": None}))


def test_missing_base_names_the_reference_offline(saved, monkeypatch):
    directory, _ = saved
    config = json.loads((directory / "config.json").read_text())
    config["clip_name_or_path"] = "someorg/not-downloaded-clip"
    (directory / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(MissingBaseModelError) as info:
        PromptPARModel.from_pretrained(directory)
    message = str(info.value)
    assert "someorg/not-downloaded-clip" in message and "hf download" in message
    assert "clip_name_or_path=" in message and "Only the local Hugging Face cache" in message


def test_bundled_bases_load_without_references(backbones, tmp_path, pixels):
    local = write_tiny_backbones(tmp_path / "bases")
    model = trained(build(local))
    model.save_pretrained(tmp_path / "bundled", bundle_base_weights=True)
    expected = logits(model, pixels)
    shutil.rmtree(tmp_path / "bases")  # the references now point nowhere
    loaded = PromptPARModel.from_pretrained(tmp_path / "bundled")
    got = logits(loaded, pixels)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_random_bases_are_bundled_automatically(tmp_path, pixels):
    from par_prompt.testing import tiny_clip_config, tiny_clip_tokenizer, tiny_vit_config

    config = PromptPARConfig(attributes=ATTRIBUTES, clip_config=tiny_clip_config(), fusion_config=tiny_vit_config(),
                             prompts_per_group=2)
    model = PromptPARModel(config)
    model.attach_tokenizer(tiny_clip_tokenizer())
    model.save_pretrained(tmp_path / "random")
    assert (tmp_path / "random" / "clip_base.safetensors").is_file()
    assert any(k.startswith("fusion.layers.") for k in load_file(tmp_path / "random" / "promptpar_head.safetensors"))
    loaded = PromptPARModel.from_pretrained(tmp_path / "random")
    assert torch.equal(logits(loaded, pixels)[0], logits(model, pixels)[0])


def test_not_a_promptpar_directory(tmp_path, backbones):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        PromptPARModel.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="holds a 'clip' model, not a PromptPAR model"):
        PromptPARModel.from_pretrained(backbones.clip)
    with pytest.raises(FileNotFoundError, match="no directory"):
        PromptPARModel.from_pretrained(os.path.join(str(tmp_path), "missing", "model"))
