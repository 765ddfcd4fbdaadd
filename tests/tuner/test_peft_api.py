"""PEFT's standard API on region prompts: save/load, disable, several adapters, unload, merge."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import CLIPModel

from par_prompt import RegionPromptConfig
from par_prompt.tuner.layer import RegionPromptLayer

from .conftest import make_clip, text_ids

CONFIG = dict(prompts_per_group=2)


def inputs(model_config):
    text_config = getattr(model_config, "text_config", model_config)
    torch.manual_seed(0)
    return {"pixel_values": torch.randn(2, 3, 32, 32), "input_ids": text_ids(text_config)}


def clip_outputs(model, batch):
    with torch.no_grad():
        out = model(**batch)
    return {"image": out.image_embeds, "text": out.text_embeds, "vision": out.vision_model_output.last_hidden_state}


def trained(model):
    """Give the prompts values that differ from any initialisation."""
    torch.manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_()
    return model


@pytest.mark.parametrize(
    "kind,expected",
    [
        ("vision", {"embeddings.region_prompt_class_tokens", "encoder.region_prompt_vision"}),
        ("text", {"embeddings.region_prompt_text", "encoder.region_prompt_text_deep"}),
        (
            "both",
            {
                "vision_model.embeddings.region_prompt_class_tokens", "vision_model.encoder.region_prompt_vision",
                "text_model.embeddings.region_prompt_text", "text_model.encoder.region_prompt_text_deep",
            },
        ),
    ],
)
def test_only_prompts_and_region_tokens_train(kind, expected):
    config = RegionPromptConfig() if kind == "text" else RegionPromptConfig(**CONFIG)
    model = get_peft_model(make_clip(kind), config)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"base_model.model.{name}.default" for name in expected}


def test_save_writes_safetensors_and_config_only(tmp_path):
    model = get_peft_model(make_clip(), RegionPromptConfig(**CONFIG))
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "README.md") == [
        "adapter_config.json", "adapter_model.safetensors",
    ]
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert set(saved) == {
        "base_model.model.vision_model.embeddings.region_prompt_class_tokens",
        "base_model.model.vision_model.encoder.region_prompt_vision",
        "base_model.model.text_model.embeddings.region_prompt_text",
        "base_model.model.text_model.encoder.region_prompt_text_deep",
    }
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == "REGION_PROMPT" and config["prompts_per_group"] == 2


FRESH_PROCESS = textwrap.dedent(
    """
    import sys, torch
    import par_prompt  # registers REGION_PROMPT
    from peft import AutoPeftModel, PeftConfig, PeftModel
    from safetensors.torch import load_file, save_file
    from transformers import CLIPModel

    base_dir, adapter_dir, batch_file, out_file = sys.argv[1:5]
    config = PeftConfig.from_pretrained(adapter_dir)
    assert type(config).__name__ == "RegionPromptConfig", type(config)
    batch = load_file(batch_file)
    outputs = {}
    for name, model in [
        ("peft", PeftModel.from_pretrained(CLIPModel.from_pretrained(base_dir), adapter_dir)),
        ("auto", AutoPeftModel.from_pretrained(adapter_dir)),
    ]:
        model.eval()
        with torch.no_grad():
            out = model(**batch)
        outputs[name + ".image"] = out.image_embeds
        outputs[name + ".text"] = out.text_embeds
    save_file(outputs, out_file)
    """
)


def test_reload_in_a_fresh_process_reproduces_outputs(tmp_path):
    base = make_clip()
    base_dir = tmp_path / "base"
    base.save_pretrained(base_dir)
    model = trained(get_peft_model(CLIPModel.from_pretrained(base_dir).eval(), RegionPromptConfig(**CONFIG)))
    model.peft_config["default"].base_model_name_or_path = str(base_dir)
    model.save_pretrained(tmp_path / "adapter")
    batch = inputs(base.config)
    expected = clip_outputs(model, batch)
    save_file(batch, tmp_path / "batch.safetensors")

    script = tmp_path / "reload.py"
    script.write_text(FRESH_PROCESS)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    subprocess.run(
        [sys.executable, str(script), str(base_dir), str(tmp_path / "adapter"), str(tmp_path / "batch.safetensors"),
         str(tmp_path / "out.safetensors")],
        check=True, env=env, capture_output=True, text=True,
    )
    got = load_file(tmp_path / "out.safetensors")
    for name in ("peft", "auto"):
        assert torch.equal(got[f"{name}.image"], expected["image"])
        assert torch.equal(got[f"{name}.text"], expected["text"])


def test_disable_adapter_gives_the_base_outputs_exactly():
    base = make_clip()
    batch = inputs(base.config)
    expected = clip_outputs(base, batch)
    model = trained(get_peft_model(base, RegionPromptConfig(**CONFIG)))
    prompted = clip_outputs(model, batch)
    assert not torch.equal(prompted["image"], expected["image"])
    with model.disable_adapter():
        disabled = clip_outputs(model, batch)
    for key in expected:
        assert torch.equal(disabled[key], expected[key])


def test_second_adapter_add_switch_delete():
    model = trained(get_peft_model(make_clip(), RegionPromptConfig(**CONFIG)))
    batch = inputs(model.config)
    first = clip_outputs(model, batch)
    model.add_adapter("plain_vpt", RegionPromptConfig(num_regions=0, prompts_per_group=4, text_prompts=0))
    assert clip_outputs(model, batch)["image"].equal(first["image"])  # adding does not activate
    model.set_adapter("plain_vpt")
    second = clip_outputs(model, batch)
    assert second["vision"].shape[1] == 5 + 64 and not second["image"].equal(first["image"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"base_model.model.vision_model.encoder.region_prompt_vision.plain_vpt"}
    model.set_adapter("default")
    assert clip_outputs(model, batch)["image"].equal(first["image"])
    model.delete_adapter("plain_vpt")
    assert "plain_vpt" not in model.peft_config
    assert not any("plain_vpt" in name for name in model.state_dict())
    assert clip_outputs(model, batch)["image"].equal(first["image"])


def test_two_active_adapters_are_refused():
    model = get_peft_model(make_clip("vision"), RegionPromptConfig(**CONFIG))
    model.add_adapter("other", RegionPromptConfig(**CONFIG))
    model.base_model.set_adapter(["default", "other"])
    with pytest.raises(ValueError, match="one adapter at a time"):
        model(pixel_values=torch.randn(1, 3, 32, 32))


def test_unload_returns_the_plain_base_model():
    base = make_clip()
    batch = inputs(base.config)
    expected = clip_outputs(base, batch)
    model = trained(get_peft_model(base, RegionPromptConfig(**CONFIG)))
    plain = model.unload()
    assert type(plain) is CLIPModel
    assert not any(isinstance(m, RegionPromptLayer) for m in plain.modules())
    assert not any("region_prompt" in name for name in plain.state_dict())
    assert not hasattr(plain, "peft_config")
    result = clip_outputs(plain, batch)
    for key in expected:
        assert torch.equal(result[key], expected[key])


def test_merging_is_refused_with_a_clear_error():
    model = get_peft_model(make_clip("vision"), RegionPromptConfig(**CONFIG))
    for call in (model.merge_and_unload, model.merge_adapter, model.base_model.merge_adapter):
        with pytest.raises(ValueError, match="cannot be merged"):
            call()


def test_peft_model_from_pretrained_on_a_vision_tower(tmp_path):
    model = trained(get_peft_model(make_clip("vision"), RegionPromptConfig(**CONFIG)))
    model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(make_clip("vision"), tmp_path)
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(reloaded(pixel_values=pixels).pooler_output, model(pixel_values=pixels).pooler_output)


def test_target_modules_restrict_the_towers():
    model = get_peft_model(make_clip(), RegionPromptConfig(target_modules=["vision_model"], **CONFIG))
    assert all(n.startswith("base_model.model.vision_model.") for n, p in model.named_parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="not CLIP towers"):
        get_peft_model(make_clip(), RegionPromptConfig(target_modules=["vision"]))
