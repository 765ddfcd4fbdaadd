"""from_pretrained by Hub id from the local cache (offline), its Hugging Face arguments
(subfolder, revision, cache_dir, local_files_only, dtype, device_map), and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from par_prompt import PromptPARModel, PromptPARPredictor, PromptPARProcessor
from par_prompt.modeling.loading import MissingBaseModelError
from par_prompt.tiny_backbones import write_tiny_backbones

from .conftest import (
    HUB_CLIP,
    HUB_MODEL,
    HUB_VIT,
    IMAGE_SIZE,
    PATCH_SIZE,
    add_to_hub_cache,
    build_tiny_model,
    remove_from_hub_cache,
    save_tiny_model,
)


def logits(model: PromptPARModel) -> torch.Tensor:
    pixels = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        return model(pixels).logits


def test_load_by_repo_id_offline_matches_load_by_path(hub_cache, model_dir, offline):
    by_id = PromptPARModel.from_pretrained(HUB_MODEL, cache_dir=str(hub_cache))
    by_path = PromptPARModel.from_pretrained(model_dir)
    assert by_id.config.clip_name_or_path == HUB_CLIP and by_id.config.fusion_name_or_path == HUB_VIT
    torch.testing.assert_close(logits(by_id), logits(by_path), rtol=0, atol=0)
    assert PromptPARProcessor.from_pretrained(HUB_MODEL, cache_dir=str(hub_cache)).image_processor.size == IMAGE_SIZE


def test_load_by_repo_id_with_hf_hub_cache_environment(hub_cache, model_dir, offline, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    by_id = PromptPARModel.from_pretrained(HUB_MODEL)
    torch.testing.assert_close(logits(by_id), logits(PromptPARModel.from_pretrained(model_dir)), rtol=0, atol=0)


def test_missing_base_names_it_and_says_how_to_fix(hub_cache, offline):
    remove_from_hub_cache(hub_cache, HUB_CLIP)
    with pytest.raises(MissingBaseModelError) as caught:
        PromptPARModel.from_pretrained(HUB_MODEL, cache_dir=str(hub_cache))
    message = str(caught.value)
    assert repr(HUB_CLIP) in message
    assert f"hf download {HUB_CLIP}" in message and "clip_name_or_path=" in message
    assert "local Hugging Face cache" in message  # says offline mode limited the search


def test_missing_base_can_be_replaced_by_a_local_path(hub_cache, backbones, model_dir, offline):
    remove_from_hub_cache(hub_cache, HUB_VIT)
    model = PromptPARModel.from_pretrained(HUB_MODEL, cache_dir=str(hub_cache), fusion_name_or_path=backbones.vit)
    torch.testing.assert_close(logits(model), logits(PromptPARModel.from_pretrained(model_dir)), rtol=0, atol=0)


def test_missing_model_repository(hub_cache, offline):
    with pytest.raises(FileNotFoundError, match="org/not-there"):
        PromptPARModel.from_pretrained("org/not-there", cache_dir=str(hub_cache))


def test_directory_without_promptpar_config(tmp_path, backbones):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        PromptPARModel.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a PromptPAR model"):
        PromptPARModel.from_pretrained(backbones.clip)  # a CLIP folder: config.json of another model type


def test_adapter_whose_base_has_another_backbone(tmp_path, hub_cache, offline):
    """The cached base repository now holds a CLIP of another width than the adapter's."""
    other = write_tiny_backbones(tmp_path / "other", image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, vision_width=48)
    remove_from_hub_cache(hub_cache, HUB_CLIP)
    add_to_hub_cache(hub_cache, HUB_CLIP, tmp_path / "other" / "clip")
    with pytest.raises(ValueError, match=r"different CLIP .*vision width 32 vs 48"):
        PromptPARModel.from_pretrained(HUB_MODEL, cache_dir=str(hub_cache))
    with pytest.raises(ValueError, match="different CLIP"):
        PromptPARModel.from_pretrained(HUB_MODEL, cache_dir=str(hub_cache), clip_name_or_path=other.clip)


def test_saved_config_names_hub_references(hub_cache):
    snapshot = next((hub_cache / "models--org--promptpar-tiny" / "snapshots").iterdir())
    config = json.loads((snapshot / "config.json").read_text())
    adapter = json.loads((snapshot / "clip_adapter" / "adapter_config.json").read_text())
    assert (snapshot / "config.json").is_symlink()
    assert config["clip_name_or_path"] == HUB_CLIP and adapter["base_model_name_or_path"] == HUB_CLIP


# ------------------------------------------------ transformers' loading arguments (issue 14.4)
@pytest.fixture(scope="module")
def other_model(backbones, tmp_path_factory):
    """A second saved model, with other head weights (so that loading the wrong one shows)."""
    return save_tiny_model(build_tiny_model(backbones, seed=7), tmp_path_factory.mktemp("other") / "model", backbones)


def nest(folder, directory, name):
    """``folder`` copied into ``directory/name`` (a model in a subfolder of a repository)."""
    import shutil

    shutil.copytree(folder, directory / name)
    return directory


def test_subfolder_of_a_local_folder(tmp_path, model_dir, other_model):
    """The root holds one model and a subfolder another: subfolder= loads the subfolder's,
    never silently the root's; the processor follows the same argument."""
    import shutil

    root = tmp_path / "repo"
    shutil.copytree(model_dir, root)
    nest(other_model, root, "variant")
    root_model, sub_model = PromptPARModel.from_pretrained(root), PromptPARModel.from_pretrained(root, subfolder="variant")
    torch.testing.assert_close(logits(sub_model), logits(PromptPARModel.from_pretrained(other_model)), rtol=0, atol=0)
    assert not torch.equal(logits(sub_model), logits(root_model))
    assert PromptPARProcessor.from_pretrained(root, subfolder="variant").image_processor.size == IMAGE_SIZE
    with pytest.raises(FileNotFoundError, match="has no subfolder 'missing'"):
        PromptPARModel.from_pretrained(root, subfolder="missing")
    with pytest.raises(ValueError, match="relative path inside the model folder"):
        PromptPARModel.from_pretrained(root, subfolder="../elsewhere")


def test_auto_classes_and_predictor_honour_subfolder(tmp_path, model_dir, other_model):
    from transformers import AutoModel, AutoModelForImageClassification, AutoProcessor

    root = nest(other_model, tmp_path, "variant")
    expected = logits(PromptPARModel.from_pretrained(other_model))
    for auto in (AutoModel, AutoModelForImageClassification):
        torch.testing.assert_close(logits(auto.from_pretrained(root, subfolder="variant")), expected, rtol=0, atol=0)
    assert type(AutoProcessor.from_pretrained(root, subfolder="variant")) is PromptPARProcessor
    predictor = PromptPARPredictor.from_pretrained(root, subfolder="variant")
    torch.testing.assert_close(logits(predictor.model), expected, rtol=0, atol=0)


def test_offline_cache_with_subfolder_and_revision(tmp_path, model_dir, other_model, backbones, offline):
    """A huggingface_hub cache built in the test: the main branch holds the model at the
    root, the tag v2 holds another in a subfolder; each argument picks its files."""
    import shutil

    cache = tmp_path / "hub"
    for folder, revision in ((model_dir, "main"), (other_model, "v2")):
        staged = tmp_path / f"staged-{revision}"
        if revision == "v2":
            nest(folder, staged, "variant")
        else:
            shutil.copytree(folder, staged)
        for name in ("config.json", "variant/config.json"):  # the bases, by Hub id
            path = staged / name
            if path.is_file():
                config = json.loads(path.read_text())
                config["clip_name_or_path"], config["fusion_name_or_path"] = HUB_CLIP, HUB_VIT
                path.write_text(json.dumps(config))
        add_to_hub_cache(cache, HUB_MODEL, staged, revision=revision)
    add_to_hub_cache(cache, HUB_CLIP, Path(backbones.clip))
    add_to_hub_cache(cache, HUB_VIT, Path(backbones.vit))

    main = PromptPARModel.from_pretrained(HUB_MODEL, cache_dir=str(cache))
    tagged = PromptPARModel.from_pretrained(HUB_MODEL, revision="v2", subfolder="variant", cache_dir=str(cache),
                                            local_files_only=True)
    torch.testing.assert_close(logits(main), logits(PromptPARModel.from_pretrained(model_dir)), rtol=0, atol=0)
    torch.testing.assert_close(logits(tagged), logits(PromptPARModel.from_pretrained(other_model)), rtol=0, atol=0)
    processor = PromptPARProcessor.from_pretrained(HUB_MODEL, revision="v2", subfolder="variant", cache_dir=str(cache))
    assert processor.image_processor.size == IMAGE_SIZE
    with pytest.raises(FileNotFoundError, match="has no subfolder 'variant'"):
        PromptPARModel.from_pretrained(HUB_MODEL, subfolder="variant", cache_dir=str(cache))  # main has none
    with pytest.raises(FileNotFoundError, match="revision v3"):
        PromptPARModel.from_pretrained(HUB_MODEL, revision="v3", cache_dir=str(cache))


@pytest.mark.parametrize("name", ["dtype", "torch_dtype"])
@pytest.mark.parametrize("value, expected", [(torch.bfloat16, torch.bfloat16), ("float16", torch.float16),
                                             ("auto", torch.float32), (None, torch.float32)])
def test_dtype(model_dir, name, value, expected):
    model = PromptPARModel.from_pretrained(model_dir, **{name: value})
    assert {p.dtype for p in model.parameters()} == {expected}


@pytest.mark.parametrize("value", ["int8", torch.int64, "fp17", 3])
def test_bad_dtype_is_refused(model_dir, value):
    with pytest.raises(ValueError, match="dtype must be a floating-point torch dtype"):
        PromptPARModel.from_pretrained(model_dir, dtype=value)


@pytest.mark.parametrize("device_map", ["auto", "cpu", torch.device("cpu"), {"": "cpu"}, {"": torch.device("cpu")}])
def test_device_map_onto_one_device(model_dir, device_map):
    model = PromptPARModel.from_pretrained(model_dir, device_map=device_map)
    expected = "cuda" if device_map == "auto" and torch.cuda.is_available() else "cpu"
    assert {p.device.type for p in model.parameters()} == {expected}


@pytest.mark.parametrize("device_map, message", [
    ({"peft_clip": "cpu", "heads": "cpu"}, "places modules on different devices"),
    ({"": "cpu", "heads": "cpu"}, "places modules on different devices"),
    ("balanced", "is not supported: a PromptPAR model loads onto one device"),
    ("sequential", "is not supported"),
    ("meta", "holds no weights"),
    ("not-a-device", "is not supported"),
    ([0, 1], "is not supported"),
])
def test_device_maps_that_would_split_the_model_are_refused(model_dir, device_map, message):
    with pytest.raises(ValueError, match=message):
        PromptPARModel.from_pretrained(model_dir, device_map=device_map)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
@pytest.mark.parametrize("device_map", ["cuda", "cuda:1", 0, {"": "cuda:0"}])
def test_a_gpu_device_map_without_a_gpu_says_so(model_dir, device_map):
    with pytest.raises(ValueError, match="CUDA is not available here"):
        PromptPARModel.from_pretrained(model_dir, device_map=device_map)


@pytest.mark.parametrize("kwargs, message", [
    ({"use_safetensors": False}, "safetensors only"),
    ({"output_loading_info": True}, "output_loading_info"),
    ({"state_dict": {"heads.weight": torch.zeros(1)}}, "cannot honour state_dict"),
    ({"quantization_config": {"load_in_8bit": True}}, "cannot honour quantization_config"),
    ({"max_memory": {0: "1GB"}}, "cannot honour max_memory"),
    ({"frobnicate": 1}, r"unexpected arguments: \['frobnicate'\]"),
    ({"device_map": "cpu", "device": "cpu"}, "not both"),
    ({"dtype": "float16", "torch_dtype": "float16"}, "not both"),
])
def test_arguments_that_cannot_be_honoured_are_errors(model_dir, kwargs, message):
    with pytest.raises((TypeError, ValueError), match=message):
        PromptPARModel.from_pretrained(model_dir, **kwargs)
    with pytest.raises(TypeError, match="no positional arguments"):
        PromptPARModel.from_pretrained(model_dir, "extra")


def test_arguments_that_change_nothing_are_accepted(model_dir):
    reference = logits(PromptPARModel.from_pretrained(model_dir))
    model = PromptPARModel.from_pretrained(model_dir, trust_remote_code=True, use_safetensors=True,
                                           low_cpu_mem_usage=True, force_download=False, _from_auto=True)
    torch.testing.assert_close(logits(model), reference, rtol=0, atol=0)
