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
        (dict(attributes=["a"], attribute_thresholds=[0.1, 0.2]), "attribute_thresholds: got 2 thresholds for 1 attributes"),
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


# ------------------------------------------------------------- types and sizes (issue 11)
import math

from par_prompt.tiny_backbones import tiny_clip_config, tiny_vit_config


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(attributes="abc"), "attributes must be a list"),
        (dict(attributes=["a", 2]), "attributes must be a list"),
        (dict(attributes=[["a"]]), "attributes must be a list"),
        (dict(attributes=["a"], sentences=[3]), "sentences must be a list"),
        (dict(attributes=["a"], threshold="0.5"), "threshold must be a number"),
        (dict(attributes=["a"], threshold=None), "threshold must be a number"),
        (dict(attributes=["a"], gl_alpha=[1]), "gl_alpha must be a number"),
        (dict(attributes=["a"], fusion_layers=True), "fusion_layers must be an integer"),
        (dict(attributes=["a"], fusion_layers=1.0), "fusion_layers must be an integer"),
        (dict(attributes=["a"], text_prompt_per_sentence="yes"), "text_prompt_per_sentence must be true or false"),
        (dict(attributes=["a"], attribute_thresholds={"a": 0.5}), "attribute_thresholds must be a list"),
        (dict(attributes=["a"], clip_name_or_path=5), "clip_name_or_path must be a string"),
        (dict(attributes=["a"], clip_config=["x"]), "clip_config must be"),
        (dict(attributes=["a"], clip_config={"vision_config": "x"}), "clip_config is not a valid CLIPConfig"),
        (dict(attributes=["a"], fusion_config={"hidden_size": "wide"}), "fusion_config is not a valid ViTConfig"),
        (dict(attributes=["a"], id2label=["a"]), "id2label must be an object"),
        (dict(attributes=["a"], base_fingerprints={"clip": "md5:00"}), "base_fingerprints must map"),
        (dict(attributes=["a"], sentence_token_ids=[[1, 2], [3]]), "sentence_token_ids has 2 entries"),
        (dict(attributes=["a"], sentence_token_ids=["12"]), "sentence_token_ids must be a list"),
        (dict(attributes=["a"], save_id="../x"), "save_id must be"),
    ],
)
def test_wrong_types_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        PromptPARConfig(**kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["threshold", "gl_threshold", "gl_alpha", "initializer_range"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_numbers_are_refused(name, value):
    with pytest.raises(ValueError, match=name):
        PromptPARConfig(attributes=["a"], **{name: value})


def test_non_finite_attribute_threshold_is_refused():
    with pytest.raises(ValueError, match="attribute_thresholds"):
        PromptPARConfig(attributes=["a", "b"], attribute_thresholds=[0.5, math.nan])


def tiny(**kwargs):
    """A config on the tiny backbones: 32-pixel images in 4-pixel patches (8 rows), CLIP
    towers of 2 layers, a 1-layer fusion ViT, 77 text positions."""
    kwargs.setdefault("attributes", ["a", "b"])
    return PromptPARConfig(clip_config=tiny_clip_config(), fusion_config=tiny_vit_config(), **kwargs)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(fusion_layers=10**6), "fusion_layers=1000000 exceeds the 1 layers of the fusion ViT"),
        (dict(fusion_layers=2), "fusion_layers=2 exceeds"),
        (dict(num_regions=9), "num_regions=9 does not fit a grid of 8 patch rows"),
        (dict(overlap_rows=10**9), "overlap_rows=1000000000 exceeds the 8 patch rows"),
        (dict(prompts_per_group=10**6), "visual sequence of 5000069 tokens"),
        (dict(vision_depth=3), "vision_depth=3 exceeds the 2 layers"),
        (dict(text_depth=10**6), "text_depth=1000000 exceeds the 2 layers"),
        (dict(text_prompts=75), "text_prompts=75 leaves no room"),
        (dict(text_prompts=70, sentence_token_ids=[[1] * 8, [1, 2, 3]]), "sentence of 8 tokens; use at most 69"),
        (dict(sentence_token_ids=[[1, 10**6], [1, 2]]), "beyond the CLIP vocabulary"),
        (dict(attributes=[f"a{i}" for i in range(5000)]), "at most 4096"),
        (dict(attributes=["a"], sentences=["x" * 5000]), "5000 characters"),
        (dict(clip_config={"vision_config": {"image_size": 2, "patch_size": 4}}), "image_size 2 is smaller"),
        (dict(clip_config={"text_config": {"max_position_embeddings": 0}}), "positive integer sizes"),
    ],
)
def test_sizes_are_checked_against_the_backbones(kwargs, message):
    if "clip_config" in kwargs:  # a broken CLIP architecture instead of the tiny one
        override = kwargs.pop("clip_config")
        base = tiny_clip_config().to_dict()
        for tower, values in override.items():
            base[tower].update(values)
        kwargs["clip_config"] = base
        with pytest.raises(ValueError, match=message):
            PromptPARConfig(attributes=["a"], fusion_config=tiny_vit_config(), **kwargs)
        return
    with pytest.raises(ValueError, match=message):
        tiny(**kwargs)


def test_paper_sizes_fit():
    config = tiny(num_regions=8, prompts_per_group=200, text_prompts=70, sentence_token_ids=[[1] * 7, [1, 2]])
    assert config.prompts_per_group == 200


def test_check_catches_values_set_after_construction():
    config = tiny()
    config.threshold = "0.3"
    with pytest.raises(ValueError, match="threshold must be a number"):
        config.check()


# ------------------------------------------------ sub-configs, label maps, problem type (issue 14.3)
def test_backbone_configs_are_declared_sub_configs_kept_as_objects(tmp_path):
    from transformers import CLIPConfig, ViTConfig

    assert PromptPARConfig.sub_configs == {"clip_config": CLIPConfig, "fusion_config": ViTConfig}
    clip, vit = tiny_clip_config(), tiny_vit_config()
    given_objects = PromptPARConfig(attributes=["a", "b"], clip_config=clip, fusion_config=vit)
    given_dicts = PromptPARConfig(attributes=["a", "b"], clip_config=clip.to_dict(), fusion_config=vit.to_dict())
    for config in (given_objects, given_dicts):
        assert type(config.clip_config) is CLIPConfig and type(config.fusion_config) is ViTConfig
        assert config.get_clip_config() is config.clip_config  # not rebuilt on use
    assert given_objects.clip_config is clip  # an object is kept, as transformers' composite configs keep them
    assert given_dicts.clip_config.vision_config.image_size == clip.vision_config.image_size
    given_dicts.save_pretrained(tmp_path)
    loaded = PromptPARConfig.from_pretrained(tmp_path)
    assert type(loaded.clip_config) is CLIPConfig and loaded.clip_config.to_dict() == given_dicts.clip_config.to_dict()


def test_a_shared_backbone_config_keeps_its_attention_setting():
    """PreTrainedConfig's own set-up hands its attention setting down to its sub-configs;
    a backbone's config shared with the live backbone must not be reset by it."""
    clip = tiny_clip_config()
    clip._attn_implementation = "sdpa"
    PromptPARConfig(attributes=["a"], clip_config=clip, fusion_config=tiny_vit_config())
    assert clip._attn_implementation == "sdpa"


def test_a_dict_assigned_after_construction_becomes_an_object_at_check():
    from transformers import CLIPConfig

    config = tiny()
    config.clip_config = tiny_clip_config().to_dict()
    config.check()
    assert type(config.clip_config) is CLIPConfig
    config.clip_config = {"vision_config": {"image_size": "big"}}
    with pytest.raises(ValueError, match="clip_config"):
        config.check()


def test_problem_type_is_multi_label_and_labels_follow_the_attributes():
    config = PromptPARConfig(attributes=["Hat", "Glasses", "Boots"])
    assert config.problem_type == "multi_label_classification" and config.num_labels == 3
    assert config.to_dict()["problem_type"] == "multi_label_classification"
    assert PromptPARConfig(attributes=["a"], problem_type="multi_label_classification").problem_type == \
        "multi_label_classification"
    for other in ("single_label_classification", "regression"):
        with pytest.raises(ValueError, match="problem_type must be 'multi_label_classification'"):
            PromptPARConfig(attributes=["a", "b"], problem_type=other)


def test_an_old_config_json_without_architectures_or_problem_type_loads(tmp_path):
    import json

    from transformers import CLIPConfig

    config = tiny()
    config.save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    for key in ("architectures", "problem_type", "label2id", "transformers_version"):
        raw.pop(key, None)
    (tmp_path / "config.json").write_text(json.dumps(raw))
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert loaded.problem_type == "multi_label_classification" and type(loaded.clip_config) is CLIPConfig
    assert loaded.label2id == {"a": 0, "b": 1}


def test_image_classification_auto_class_is_registered():
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING

    from par_prompt import PromptPARProcessor

    assert MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING[PromptPARConfig] is PromptPARModel
    assert PROCESSOR_MAPPING[PromptPARConfig] is PromptPARProcessor
