"""PromptPARConfig: fields, label maps, Auto registration, validation."""

import pytest
from transformers import AutoConfig, AutoModel

from par_prompt import PromptPARConfig, PromptPARModel, RegionPromptConfig


def test_defaults_and_label_maps():
    config = PromptPARConfig(attributes=["Hat", "Glasses"])
    assert config.model_type == "prompt_par"
    assert (config.fusion_layers, config.gl_alpha, config.gl_threshold, config.threshold) == (1, 0.5, 0.5, 0.5)
    assert config.id2label == {0: "Hat", 1: "Glasses"} and config.label2id == {"Hat": 0, "Glasses": 1}
    assert config.num_labels == 2


def test_round_trip_keeps_everything(tmp_path):
    config = PromptPARConfig(attributes=["a", "b", "c"], sentences=["A.", "B.", "C."], num_regions=2,
                             attribute_thresholds=[0.3, 0.5, 0.7], clip_name_or_path="org/clip", fusion_layers=0)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, PromptPARConfig)
    for name in ("attributes", "sentences", "num_regions", "attribute_thresholds", "clip_name_or_path",
                 "fusion_layers"):
        assert getattr(loaded, name) == getattr(config, name)
    assert loaded.id2label == {0: "a", 1: "b", 2: "c"}


def test_region_prompt_settings_reach_the_peft_config():
    config = PromptPARConfig(attributes=["a", "b"], num_regions=3, prompts_per_group=5, vision_depth=2,
                             text_prompts=4, text_prompt_per_sentence=True, prompt_init="zeros")
    peft_config = config.region_prompt_config()
    assert isinstance(peft_config, RegionPromptConfig)
    assert (peft_config.num_regions, peft_config.prompts_per_group, peft_config.vision_depth) == (3, 5, 2)
    assert (peft_config.text_prompts, peft_config.num_sentences, peft_config.prompt_init) == (4, 2, "zeros")


def test_auto_classes_are_registered():
    assert AutoConfig.for_model("prompt_par", attributes=["x"]).attributes == ["x"]
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    assert MODEL_MAPPING[PromptPARConfig] is PromptPARModel
    assert AutoModel  # the mapping above is what AutoModel.from_pretrained consults


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(attributes=["a", "a"]), "repeated"),
        (dict(attributes=["a", "b"], sentences=["only one"]), "1 sentences for 2 attributes"),
        (dict(attributes=["a"], threshold=1.5), "threshold must lie in"),
        (dict(attributes=["a"], attribute_thresholds=[0.1, 0.2]), "2 values for 1 attributes"),
        (dict(attributes=["a"], fusion_layers=-1), "fusion_layers"),
        (dict(attributes=["a", "b"], id2label={0: "b", 1: "a"}), "id2label disagrees"),
        (dict(attributes=["a"], num_regions=4, prompts_per_group=0), "prompts_per_group must be positive"),
        (dict(attributes=["a"], prompt_init="normal"), "prompt_init must be one of"),
    ],
)
def test_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PromptPARConfig(**kwargs)


def test_attributes_from_id2label_alone():
    assert PromptPARConfig(id2label={"0": "x", "1": "y"}).attributes == ["x", "y"]
