"""The tiny-adapter contract: what save_pretrained writes, round trips, atomicity, bad files."""

import json
import math
import os
import re
import shutil

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModel, AutoProcessor, CLIPModel

import par_prompt.modeling.serialization as serialization
from par_prompt import PromptPARConfig, PromptPARModel, PromptPARProcessor
from par_prompt.modeling.loading import MissingBaseModelError
from par_prompt.backbone_sizes import CLIP_VIT_L14_SIZES, VIT_B16_SIZES, clip_config_from_sizes, vit_config_from_sizes
from par_prompt.tiny_backbones import write_tiny_backbones

from .conftest import ATTRIBUTES, build, tokenize, trained


def logits(model, pixels):
    with torch.no_grad():
        out = model.eval()(pixels)
    return out.logits, out.gl_logits


@pytest.fixture
def saved(backbones, tmp_path, pixels):
    """A trained model saved with its processor (the CLIP base's), as a training run exports it."""
    model = trained(build(backbones))
    model.save_pretrained(tmp_path / "model")
    PromptPARProcessor.from_pretrained(backbones.clip).save_pretrained(tmp_path / "model")
    return tmp_path / "model", logits(model, pixels)


def test_the_model_saves_only_its_own_files(backbones, tmp_path):
    build(backbones).save_pretrained(tmp_path / "model")
    files = sorted(p.relative_to(tmp_path / "model").as_posix() for p in (tmp_path / "model").rglob("*") if p.is_file())
    assert files == ["clip_adapter/adapter_config.json", "clip_adapter/adapter_model.safetensors", "config.json",
                     "promptpar_head.safetensors"]


def test_saved_files(saved):
    directory, _ = saved
    files = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
    assert "config.json" in files and "promptpar_head.safetensors" in files
    assert "clip_adapter/adapter_config.json" in files and "clip_adapter/adapter_model.safetensors" in files
    assert "processor_config.json" in files and "tokenizer_config.json" in files  # the processor's
    assert not any(f.endswith((".bin", ".pt", ".pth", ".pkl")) for f in files)
    processor = json.loads((directory / "processor_config.json").read_text())
    assert processor["processor_class"] == "PromptPARProcessor"
    assert processor["image_processor"]["image_processor_type"] == "PromptPARImageProcessor"
    assert "clip_base.safetensors" not in files  # the CLIP has a reference: not bundled
    head = load_file(directory / "promptpar_head.safetensors")
    assert not any(k.startswith(("clip.", "fusion.layers.")) for k in head)
    for key in ("positive_ratios", "heads.batch_norm.running_mean", "aggregator.temperature", "fusion.norm.weight"):
        assert key in head
    config = json.loads((directory / "config.json").read_text())
    assert config["model_type"] == "prompt_par" and config["sentences"][0] == "A pedestrian wearing a hat"
    assert config["architectures"] == ["PromptPARModel"] and config["problem_type"] == "multi_label_classification"
    assert config["id2label"] == {str(i): name for i, name in enumerate(ATTRIBUTES)}
    assert config["clip_config"]["vision_config"]["image_size"] == 32  # the architectures, written in full


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
    for name, tensor in reloaded.peft_clip.state_dict().items():
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
             "sentences": None, "sentence_token_ids": None, "id2label": None}))


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
    from par_prompt.tiny_backbones import tiny_clip_config, tiny_vit_config

    config = PromptPARConfig(attributes=ATTRIBUTES, clip_config=tiny_clip_config(), fusion_config=tiny_vit_config(),
                             prompts_per_group=2)
    model = PromptPARModel(config)
    tokenize(model)
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


# ----------------------------------------------------------- saving into a folder (issue 11.1)
import stat
import subprocess
import sys

from safetensors.torch import save_file


def files_in(directory):
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


USER_FILES = {"dataset_dict.json", "train/data.arrow", "notes.txt", "README.md", "clip_adapter/my_notes.md"}


def plant_user_files(directory):
    directory.mkdir(parents=True, exist_ok=True)
    for name in USER_FILES:
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(f"user data: {name}")


def test_save_into_a_folder_keeps_every_other_file(backbones, tmp_path, pixels):
    directory = tmp_path / "data"
    plant_user_files(directory)
    model = trained(build(backbones))
    model.save_pretrained(directory)
    model.save_pretrained(directory)  # and again, over the model
    for name in USER_FILES:
        assert (directory / name).read_text() == f"user data: {name}"
    assert torch.equal(logits(PromptPARModel.from_pretrained(directory), pixels)[0], logits(model, pixels)[0])


def test_save_into_a_data_set_and_into_the_working_directory_loses_nothing(backbones, tmp_path, monkeypatch):
    from par_prompt.data import load, make_synthetic, save

    data_dir = tmp_path / "data"
    save(load(make_synthetic(4, 2, 2, image_size=(64, 32))), data_dir)
    before = files_in(data_dir)
    model = build(backbones)
    from par_prompt.evaluation.evaluate import save_with_thresholds

    save_with_thresholds(model, [0.4] * len(ATTRIBUTES), data_dir)  # evaluate --save-calibrated DIR
    after = files_in(data_dir)
    assert all(after[name] == content for name, content in before.items())
    assert len(load(data_dir).splits["train"]) == 4
    assert PromptPARModel.from_pretrained(data_dir).config.attribute_thresholds == [0.4] * len(ATTRIBUTES)

    monkeypatch.chdir(data_dir)
    model.save_pretrained(".")
    assert all(files_in(data_dir)[name] == content for name, content in before.items())


def test_stale_files_of_an_earlier_model_are_removed(tmp_path, pixels):

    local = write_tiny_backbones(tmp_path / "bases")
    directory = tmp_path / "model"
    plant_user_files(directory)
    model = trained(build(local))
    model.save_pretrained(directory, bundle_base_weights=True)
    assert (directory / "clip_base.safetensors").is_file()
    (directory / "vocab.json").write_text("{}")  # a tokenizer file an older save wrote
    (directory / "preprocessor_config.json").write_text(json.dumps(  # the image processor as older saves wrote it
        {"image_processor_type": "PromptPARImageProcessor", "size": 48}))
    model.save_pretrained(directory)  # no longer bundled
    assert not (directory / "clip_base.safetensors").exists()
    assert (directory / "vocab.json").exists()  # the processor's files are not the model's to remove
    PromptPARProcessor.from_pretrained(local.clip).save_pretrained(directory)
    assert not (directory / "vocab.json").exists() and not (directory / "preprocessor_config.json").exists()
    assert all((directory / name).is_file() for name in USER_FILES)
    loaded = PromptPARModel.from_pretrained(directory)
    assert torch.equal(logits(loaded, pixels)[0], logits(model, pixels)[0])
    assert PromptPARProcessor.from_pretrained(directory).image_processor.size == 32


@pytest.mark.parametrize("foreign", ["clip", "file"])
def test_files_of_something_else_are_never_overwritten(backbones, tmp_path, foreign):
    model, processor = build(backbones), PromptPARProcessor.from_pretrained(backbones.clip)
    if foreign == "clip":  # the folder of another model: its config.json and tokenizer would be replaced
        directory = tmp_path / "clip"
        shutil.copytree(backbones.clip, directory)
    else:  # a folder that happens to hold a tokenizer.json
        directory = tmp_path / "folder"
        directory.mkdir()
        (directory / "tokenizer.json").write_text("mine")
    before = files_in(directory)
    if foreign == "clip":
        with pytest.raises(FileExistsError, match="do not belong to a PromptPAR model"):
            model.save_pretrained(directory)
    with pytest.raises(FileExistsError, match="do not belong to a PromptPAR processor"):
        processor.save_pretrained(directory)
    assert files_in(directory) == before
    assert [p.name for p in directory.iterdir() if p.name.startswith(".")] == []


def test_saved_files_have_the_permissions_of_other_files(saved):
    directory, _ = saved
    modes = {name: stat.S_IMODE((directory / name).stat().st_mode) for name in files_in(directory)}
    expected = 0o666 & ~_umask()
    assert modes["promptpar_head.safetensors"] == expected, modes  # safetensors creates 0600
    assert set(modes.values()) == {expected}


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_partial_files_of_a_killed_save_are_removed_by_the_next_save(saved, backbones):
    from par_prompt.fileio import partial_prefix

    directory, _ = saved
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    leftover = directory / (partial_prefix("promptpar-save").replace(f"-{os.getpid()}-", f"-{child.pid}-") + "x1")
    (leftover / "clip_adapter").mkdir(parents=True)
    (leftover / "promptpar_head.safetensors").write_bytes(b"half")
    build(backbones).save_pretrained(directory)
    assert not leftover.exists()
    assert [p.name for p in directory.iterdir() if p.name.startswith(".")] == []


def test_a_half_updated_folder_is_refused(saved, backbones, tmp_path, monkeypatch, pixels):
    directory, expected = saved
    other = build(backbones)  # untrained: other weights, same shapes
    other.save_pretrained(tmp_path / "other")
    # A save that stopped before config.json (killed, or still running for a reader):
    real = serialization.publish_files

    def stop_before_config(staging, target, names):
        if names == ["config.json"]:
            raise KeyboardInterrupt
        return real(staging, target, names)

    monkeypatch.setattr(serialization, "publish_files", stop_before_config)
    with pytest.raises(KeyboardInterrupt):
        other.save_pretrained(directory)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="mixes files of different saves.*interrupted or is still running"):
        PromptPARModel.from_pretrained(directory)
    # Copying one file of another save into the folder is caught the same way.
    trained(build(backbones)).save_pretrained(directory)
    shutil.copy(tmp_path / "other" / "promptpar_head.safetensors", directory / "promptpar_head.safetensors")
    with pytest.raises(ValueError, match="promptpar_head.safetensors was written by save"):
        PromptPARModel.from_pretrained(directory)


def test_save_refuses_an_invalid_config_before_writing(model, tmp_path):
    model.config.attribute_thresholds = [0.5, "high", 0.5, 0.5, 0.5]
    with pytest.raises(ValueError, match="attribute_thresholds"):
        model.save_pretrained(tmp_path / "model")
    assert not (tmp_path / "model").exists()


# ------------------------------------------------------------ base references (issue 11.5)
def test_relative_base_paths_are_resolved_against_the_model_folder(tmp_path, monkeypatch, pixels):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    write_tiny_backbones(project / "bases")
    write_tiny_backbones(elsewhere / "bases", seed=1)  # same shapes, other weights, same relative path
    monkeypatch.chdir(project)
    torch.manual_seed(0)
    model = PromptPARModel.from_backbones("bases/clip", ATTRIBUTES, fusion_name_or_path="bases/vit",
                                          prompts_per_group=2)
    model.save_pretrained("models/m")
    expected = logits(model, pixels)
    config = json.loads((project / "models" / "m" / "config.json").read_text())
    assert (config["clip_name_or_path"], config["fusion_name_or_path"]) == ("../../bases/clip", "../../bases/vit")
    monkeypatch.chdir(elsewhere)
    loaded = PromptPARModel.from_pretrained(project / "models" / "m")
    assert torch.equal(logits(loaded, pixels)[0], expected[0])
    # moved together with its bases, the model still finds them
    shutil.move(str(project), str(tmp_path / "moved"))
    loaded = PromptPARModel.from_pretrained(tmp_path / "moved" / "models" / "m")
    assert torch.equal(logits(loaded, pixels)[0], expected[0])


@pytest.mark.parametrize("base", ["clip", "vit"])
def test_other_weights_of_the_same_shape_are_refused(saved, tmp_path, base):
    directory, _ = saved
    other = write_tiny_backbones(tmp_path / "other", seed=7)
    override = {"clip": dict(clip_name_or_path=other.clip), "vit": dict(fusion_name_or_path=other.vit)}[base]
    kind = {"clip": "CLIP", "vit": "fusion ViT"}[base]
    with pytest.raises(ValueError, match=f"The {kind} base .* does not hold the weights this model was trained on"):
        PromptPARModel.from_pretrained(directory, **override)


def test_a_base_changed_in_place_is_refused(saved, backbones, tmp_path):
    directory, _ = saved
    copy = tmp_path / "clip_copy"
    shutil.copytree(backbones.clip, copy)
    clip = CLIPModel.from_pretrained(copy)
    with torch.no_grad():
        clip.text_model.final_layer_norm.weight.add_(0.01)  # a slightly fine-tuned base
    clip.save_pretrained(copy)
    with pytest.raises(ValueError, match="does not hold the weights"):
        PromptPARModel.from_pretrained(directory, clip_name_or_path=str(copy))


def test_fingerprint_survives_half_precision(backbones, tmp_path, pixels):
    from par_prompt.modeling.loading import weights_fingerprint

    weights = [torch.randn(300, 7), torch.randn(5), torch.arange(4)]
    as_fp16 = [w.half() if w.is_floating_point() else w for w in weights]
    assert weights_fingerprint(weights) == weights_fingerprint(as_fp16) == weights_fingerprint(
        [w.float() if w.is_floating_point() else w for w in as_fp16])
    assert weights_fingerprint([w.bfloat16() if w.is_floating_point() else w for w in weights]).startswith("bf16:")
    assert weights_fingerprint(weights) != weights_fingerprint([weights[0] + 1e-2, weights[1], weights[2]])
    assert weights_fingerprint(weights) == weights_fingerprint(weights[::-1])  # names and order do not matter
    # A model whose CLIP holds the fp16-rounded base (as imported official checkpoints do)
    # loads onto the fp32 base; a model saved in bf16 loads onto the fp32 base too.
    model = trained(build(backbones))
    with torch.no_grad():
        for param in model.clip_model.parameters():
            param.copy_(param.half().float())
    model.save_pretrained(tmp_path / "rounded")
    PromptPARModel.from_pretrained(tmp_path / "rounded")
    model = trained(build(backbones)).to(torch.bfloat16)
    model.save_pretrained(tmp_path / "bf16")
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["base_fingerprints"]["clip"].startswith("bf16:")
    PromptPARModel.from_pretrained(tmp_path / "bf16")


def _strip_save_records(directory):
    config = json.loads((directory / "config.json").read_text())
    for key in ("save_id", "base_fingerprints", "sentence_token_ids"):
        config.pop(key, None)
    (directory / "config.json").write_text(json.dumps(config))
    for name in ("promptpar_head.safetensors", "clip_adapter/adapter_model.safetensors"):
        save_file(load_file(directory / name), str(directory / name), metadata={"format": "pt"})


def test_models_saved_before_the_checks_still_load(saved, tmp_path, pixels):
    directory, expected = saved
    _strip_save_records(directory)
    loaded = PromptPARModel.from_pretrained(directory)
    assert torch.equal(logits(loaded, pixels)[0], expected[0])


# ------------------------------------------------------------------- tokenizer (issue 11.7)
def test_missing_tokenizer_json_is_refused(saved):
    directory, _ = saved
    (directory / "tokenizer.json").unlink()  # a partial download
    with pytest.raises(ValueError, match="sentence 0 'A pedestrian wearing a hat'.*has no tokenizer.json"):
        PromptPARProcessor.from_pretrained(directory)


def test_a_tokenizer_that_differs_is_refused(saved, tmp_path):
    directory, _ = saved
    config = json.loads((directory / "config.json").read_text())
    config["sentence_token_ids"][2][1] += 1
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="sentence 2 .*instead of.*do not belong to this model"):
        PromptPARProcessor.from_pretrained(directory)
    with pytest.raises(ValueError, match="sentence 2 .*instead of"):
        AutoProcessor.from_pretrained(directory)


def test_a_base_tokenizer_that_differs_is_refused(saved, tmp_path):
    directory, _ = saved
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (directory / name).unlink()
    assert PromptPARProcessor.from_pretrained(directory).tokenizer is not None  # the base's, which is the same
    other = write_tiny_backbones(tmp_path / "other", extra_words=["ahat"])
    with pytest.raises(ValueError, match="tokenizer of the CLIP base .* is not the one the model was saved with"):
        PromptPARProcessor.from_pretrained(directory, clip_name_or_path=other.clip)


def test_the_model_needs_no_tokenizer(saved, pixels, monkeypatch):
    """The model loads from its token ids alone: no tokenizer file is read, not even the base's."""
    import transformers

    directory, expected = saved
    for name in ("tokenizer.json", "tokenizer_config.json", "processor_config.json"):
        (directory / name).unlink()

    def no_tokenizer(*args, **kwargs):
        raise AssertionError("a tokenizer was loaded")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_tokenizer)
    loaded = PromptPARModel.from_pretrained(directory)
    assert torch.equal(logits(loaded, pixels)[0], expected[0])
    assert not hasattr(loaded, "tokenizer") and not hasattr(loaded, "image_processor")


# ------------------------------------------------------------ weights at load (issue 11.9)
@pytest.mark.parametrize(
    "file,key,value,message",
    [
        ("promptpar_head.safetensors", "heads.weight", math.nan, "non-finite"),
        ("promptpar_head.safetensors", "heads.batch_norm.running_var", math.inf, "non-finite"),
        ("promptpar_head.safetensors", "aggregator.batch_norm.running_var", -1.0, "negative variance"),
        ("promptpar_head.safetensors", "aggregator.batch_norm.running_mean", math.nan, "non-finite"),
        ("promptpar_head.safetensors", "aggregator.temperature", 0.0, "zero temperature"),
        ("promptpar_head.safetensors", "positive_ratios", 1.5, "outside \\[0, 1\\]"),
        ("promptpar_head.safetensors", "positive_ratios", math.nan, "outside \\[0, 1\\]"),  # one NaN, others set
        ("clip_adapter/adapter_model.safetensors", None, math.nan, "non-finite"),
    ],
)
def test_damaged_weights_are_refused(saved, file, key, value, message):
    directory, _ = saved
    path = directory / file
    state = load_file(path)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    key = key or sorted(state)[0]
    state[key] = state[key].clone()
    state[key].view(-1)[0] = value
    save_file(state, str(path), metadata=metadata)
    with pytest.raises(ValueError, match=f"{re.escape(path.name)} holds .*{message}.* in {re.escape(key)}"):
        PromptPARModel.from_pretrained(directory)


def test_unset_positive_ratios_load(backbones, tmp_path):
    model = build(backbones)
    model.positive_ratios.fill_(math.nan)  # never set: inference-only models
    model.save_pretrained(tmp_path / "m")
    assert torch.isnan(PromptPARModel.from_pretrained(tmp_path / "m").positive_ratios).all()


# ----------------------------------------------- config.json at load (issues 11.9, 16, 19)
def edit_config(directory, **changes):
    config = json.loads((directory / "config.json").read_text())
    for key, value in changes.items():
        if value is DELETE:
            config.pop(key)
        else:
            config[key] = value
    (directory / "config.json").write_text(json.dumps(config))


DELETE = object()


@pytest.mark.parametrize(
    "changes,message",
    [
        (dict(threshold="0.5"), "threshold must be a number"),
        (dict(threshold=float("nan")), "threshold must lie in"),
        (dict(gl_alpha=float("inf")), "gl_alpha must be a finite"),
        (dict(attributes="Hat"), "attributes must be a list"),
        (dict(attributes={"0": "Hat"}), "attributes must be a list"),
        (dict(sentences=[1, 2, 3, 4, 5]), "sentences must be a list"),
        (dict(clip_config=DELETE), "has no clip_config"),
        (dict(fusion_config=DELETE), "has no fusion_config"),
        (dict(clip_config="openai"), "clip_config must be"),
        (dict(fusion_config={"hidden_size": -4}), "fusion_config"),
        (dict(fusion_layers=10**6), "fusion_layers=1000000 exceeds the 1 layers"),
        (dict(num_regions=100), "num_regions=100 does not fit"),
        (dict(prompts_per_group=10**7), "visual sequence of"),
        (dict(text_prompts=76), "text_prompts=76 leaves no room"),
        (dict(id2label=["Hat"]), "id2label must be an object"),
        (dict(base_fingerprints=["fp16:0"]), "base_fingerprints must be"),
    ],
)
def test_bad_config_json_is_one_clear_error(saved, monkeypatch, changes, message):
    directory, _ = saved
    edit_config(directory, **changes)
    from par_prompt.modeling import fusion

    def no_allocation(*args, **kwargs):
        raise AssertionError("the fusion layers were allocated before the config was checked")

    monkeypatch.setattr(fusion.MMFormer, "__init__", no_allocation)
    with pytest.raises(ValueError, match=message) as info:
        PromptPARModel.from_pretrained(directory)
    assert "\n" not in str(info.value) and "config.json" in str(info.value)


@pytest.mark.parametrize("content", ["[1, 2, 3]", '"prompt_par"', "{"])
def test_config_json_that_is_not_an_object(saved, content):
    directory, _ = saved
    (directory / "config.json").write_text(content)
    with pytest.raises(ValueError, match="config.json"):
        PromptPARModel.from_pretrained(directory)


def test_bad_config_json_gives_one_line_and_exit_2_on_the_cli(saved, tmp_path, capsys):
    from par_prompt.cli import main

    directory, _ = saved
    edit_config(directory, threshold="high")
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (16, 32)).save(image)
    assert main(["predict", "--model", str(directory), str(image)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "threshold must be a number" in err


def test_preprocessor_size_that_does_not_fit_the_clip(saved):
    directory, _ = saved
    path = directory / "processor_config.json"
    processor = json.loads(path.read_text())
    for size, message in ((64, "resizes images to 64x64 pixels, but the CLIP takes 32x32.*processor_config.json"),
                          (20000, "size must lie in 1..2048 pixels, got 20000")):  # refused before any allocation
        processor["image_processor"]["size"] = size
        path.write_text(json.dumps(processor))
        with pytest.raises(ValueError, match=message):
            PromptPARProcessor.from_pretrained(directory)


def test_a_processor_saved_before_processor_config_json_loads(saved):
    """Folders saved before the processor existed hold the image processor in
    preprocessor_config.json; they load, and are checked the same way."""
    directory, _ = saved
    settings = json.loads((directory / "processor_config.json").read_text())["image_processor"]
    (directory / "processor_config.json").unlink()
    path = directory / "preprocessor_config.json"
    path.write_text(json.dumps({**settings, "do_pad": False}))
    processor = PromptPARProcessor.from_pretrained(directory)
    assert processor.image_processor.do_pad is False and processor.image_processor.size == 32
    assert type(AutoProcessor.from_pretrained(directory)) is PromptPARProcessor
    path.write_text(json.dumps({**settings, "size": 64}))
    with pytest.raises(ValueError, match="resizes images to 64x64.*preprocessor_config.json"):
        PromptPARProcessor.from_pretrained(directory)


def test_bundled_weights_are_checked_before_allocation(tmp_path, monkeypatch):
    from par_prompt.tiny_backbones import tiny_clip_config, tiny_vit_config

    config = PromptPARConfig(attributes=ATTRIBUTES, clip_config=tiny_clip_config(), fusion_config=tiny_vit_config(),
                             prompts_per_group=2)
    model = PromptPARModel(config)
    tokenize(model)
    model.save_pretrained(tmp_path / "random")
    saved = json.loads((tmp_path / "random" / "config.json").read_text())
    clip = saved["clip_config"]
    clip["vision_config"]["num_hidden_layers"] = 2000
    edit_config(tmp_path / "random", clip_config=clip)
    with pytest.raises(ValueError, match="holds 2 vision layers, but config.json describes 2000"):
        PromptPARModel.from_pretrained(tmp_path / "random")
    clip["vision_config"]["num_hidden_layers"] = 2
    clip["vision_config"]["intermediate_size"] = 10**6
    edit_config(tmp_path / "random", clip_config=clip)
    with pytest.raises(ValueError, match="bundled CLIP.*shape mismatch"):
        PromptPARModel.from_pretrained(tmp_path / "random")
    edit_config(tmp_path / "random", clip_config=saved["clip_config"] | {"vision_config": {
        **saved["clip_config"]["vision_config"], "num_hidden_layers": 2, "intermediate_size": 128}},
        fusion_config={**saved["fusion_config"], "intermediate_size": 10**6})
    with pytest.raises(ValueError, match="bundled fusion layers.*shape mismatch"):
        PromptPARModel.from_pretrained(tmp_path / "random")


def test_an_upload_of_a_shared_folder_takes_only_the_model_files(backbones, tmp_path):
    from par_prompt.hub import model_files

    directory = tmp_path / "data"
    plant_user_files(directory)
    build(backbones).save_pretrained(directory)
    written = {name for name in files_in(directory) if name not in USER_FILES}
    assert set(model_files(directory)) == written | {"README.md"}  # a README.md there is taken as the card
