"""from_pretrained by Hub id from the local cache (offline), and its errors."""

from __future__ import annotations

import json

import pytest
import torch

from par_prompt import PromptPARModel
from par_prompt.modeling.loading import MissingBaseModelError
from par_prompt.tiny_backbones import write_tiny_backbones

from .conftest import (
    HUB_CLIP,
    HUB_MODEL,
    HUB_VIT,
    IMAGE_SIZE,
    PATCH_SIZE,
    add_to_hub_cache,
    remove_from_hub_cache,
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
    assert by_id.image_processor.size == IMAGE_SIZE


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
