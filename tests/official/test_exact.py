"""An imported official checkpoint predicts what the official code predicts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from par_prompt import PromptPARModel, PromptPARProcessor
from par_prompt.cli import main
from par_prompt.official import load_official_checkpoint, save_official_model

from .builders import Sizes, official_classifier_state, official_clip_state, official_token_ids, save_official
from .reference import official_pixels, official_probabilities

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def expected(official, tokenizer, pa100k_sentences, images):
    ids = official_token_ids(tokenizer, pa100k_sentences)
    pixels = official_pixels(images, official.sizes.image)
    return official_probabilities(official.clip, official.classifier, ids, pixels, official.sizes)


@pytest.fixture(scope="module")
def imported_pair(official, bpe_file):
    """(model, processor) of the imported checkpoint."""
    return load_official_checkpoint(official.path, dataset="pa100k", clip_tokenizer=bpe_file)


@pytest.fixture(scope="module")
def imported(imported_pair):
    return imported_pair[0]


@pytest.fixture(scope="module")
def imported_processor(imported_pair):
    return imported_pair[1]


def probabilities(model, images, processor) -> torch.Tensor:
    inputs = processor(images=images)
    with torch.inference_mode():
        return torch.sigmoid(model(**inputs).logits).double()


def test_reference_is_not_trivial(expected):
    # Probabilities spread over (0, 1) and differ between images, so a 1e-4 match means something.
    assert expected.std() > 0.1
    assert all((expected[i] - expected[j]).abs().max() > 0.05 for i in range(len(expected)) for j in range(i))


def test_imported_model_reproduces_official_probabilities(imported, imported_processor, images, expected):
    assert (probabilities(imported, images, imported_processor) - expected).abs().max() <= TOLERANCE


def test_imported_model_records_the_official_pipeline(imported, imported_processor, official):
    config, processor = imported.config, imported_processor.image_processor
    assert config.threshold == 0.45 and config.visual_post_layernorm is False and config.text_prompts == 0
    assert (processor.do_pad, processor.resample, processor.size) == (False, 2, official.sizes.image)
    assert processor.image_mean == [0.5] * 3 and processor.image_std == [0.5] * 3
    assert config.fusion_config.layer_norm_eps == 1e-6
    source = config.imported_from
    assert source["file"] == "epoch21.pth" and source["epoch"] == 21 and source["dataset"] == "pa100k"
    assert len(source["sha256"]) == 64 and source["clip_weights_key"] == "clip_model"
    assert source["stored_result"]["mA"] == pytest.approx(0.8123)
    assert source["dropped_tensors"] == {"transformer.prompt_text_deep": [2, 3, 26, 128]}


def test_each_recorded_setting_matters(imported, imported_processor, images, expected):
    """Switching any one official setting back to par-prompt's default moves the output."""
    processor = imported_processor.image_processor
    for change in ("post_layernorm", "pad", "statistics"):
        try:
            if change == "post_layernorm":
                imported.config.visual_post_layernorm = True
            elif change == "pad":
                processor.do_pad = True
            else:
                processor.image_mean, processor.image_std = [0.48, 0.46, 0.41], [0.27, 0.26, 0.28]
            assert (probabilities(imported, images, imported_processor) - expected).abs().max() > 1e-3, change
        finally:
            imported.config.visual_post_layernorm = False
            processor.do_pad, processor.image_mean, processor.image_std = False, [0.5] * 3, [0.5] * 3


def test_gl_aggregator_comes_from_the_checkpoint(imported, official):
    assert imported.aggregator.temperature.item() == pytest.approx(0.8)
    assert torch.equal(imported.aggregator.batch_norm.running_var, official.clip["agg_bn.running_var"])
    assert imported.aggregator.batch_norm.num_batches_tracked.item() == 1234


def test_saved_folder_reproduces_official_probabilities(imported, imported_processor, images, expected, tmp_path):
    folder = save_official_model(imported, imported_processor, tmp_path / "model", bundle_base=True)
    assert (folder / "clip_base.safetensors").is_file() and (folder / "README.md").is_file()
    loaded, processor = PromptPARModel.from_pretrained(folder), PromptPARProcessor.from_pretrained(folder)
    assert loaded.config.imported_from == imported.config.imported_from
    assert processor.image_processor.do_pad is False
    assert (probabilities(loaded, images, processor) - expected).abs().max() <= TOLERANCE


def test_folder_naming_its_base_loads_that_base(imported, imported_processor, images, expected, official, bpe_file,
                                                tmp_path):
    base = tmp_path / "clip-base"
    from transformers import CLIPModel

    from par_prompt.modeling.serialization import plain_clip_state_dict

    clip = CLIPModel(imported.clip_model.config)
    clip.load_state_dict(plain_clip_state_dict(imported.clip_model))
    clip.save_pretrained(base)
    imported_processor.tokenizer.save_pretrained(base)
    model, processor = load_official_checkpoint(official.path, "PA100k", clip_tokenizer=bpe_file,
                                                clip_name_or_path=str(base))
    folder = save_official_model(model, processor, tmp_path / "model")
    assert not (folder / "clip_base.safetensors").exists()
    assert json.loads((folder / "config.json").read_text())["clip_name_or_path"] == str(base)
    loaded = PromptPARModel.from_pretrained(folder)
    assert (probabilities(loaded, images, PromptPARProcessor.from_pretrained(folder)) - expected).abs().max() <= TOLERANCE


def test_cli_import_then_offline_prediction(official, bpe_file, images, expected, tmp_path):
    out = tmp_path / "cli-model"
    code = main(["import-official", str(official.path), "--dataset", "PA100K", "--out", str(out), "--bundle-base",
                 "--clip-tokenizer", str(bpe_file)])
    assert code == 0
    for i, image in enumerate(images):
        image.save(tmp_path / f"{i}.png")
    script = (
        "import sys, torch\n"
        "from PIL import Image\n"
        "from par_prompt import PromptPARModel, PromptPARProcessor\n"
        "model = PromptPARModel.from_pretrained(sys.argv[1])\n"
        "processor = PromptPARProcessor.from_pretrained(sys.argv[1])\n"
        "images = [Image.open(p) for p in sys.argv[2:]]\n"
        "with torch.inference_mode():\n"
        "    probs = torch.sigmoid(model(**processor(images=images)).logits)\n"
        "print(repr(probs.double().tolist()))\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(tmp_path / "empty-hf-home"))
    run = subprocess.run([sys.executable, "-c", script, str(out), *[str(tmp_path / f"{i}.png") for i in
                          range(len(images))]], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    probs = torch.tensor(eval(run.stdout.strip().splitlines()[-1]), dtype=torch.float64)
    assert (probs - expected).abs().max() <= TOLERANCE


def test_predict_uses_the_official_threshold(imported, imported_processor, images, expected):
    from par_prompt.inference.predict import predict

    names = imported.config.attributes
    for prediction, row in zip(predict(imported, images, processor=imported_processor), expected):
        assert prediction.threshold == 0.45
        assert prediction.attributes == [name for name, p in zip(names, row.tolist()) if p > 0.45]


def test_variant_flags_are_reproduced(sizes, tokenizer, bpe_file, pa100k_sentences, images, tmp_path, monkeypatch):
    """Without --use_div (no regions), without --use_GL (no aggregator), --mm_layers 2, prompts in every layer."""
    variant = Sizes(vocab=sizes.vocab, regions=0, prompts_per_group=6, aggregator=False, fusion_blocks=2, depth=3)
    clip, classifier = official_clip_state(variant, seed=5), official_classifier_state(variant, seed=6)
    path = save_official(tmp_path / "variant.pth", monkeypatch, clip, classifier, clip_key="ViT_model")
    model, processor = load_official_checkpoint(path, clip_tokenizer=bpe_file)  # 26 heads: PA100K, by the head count
    assert (model.config.num_regions, model.config.vision_depth, model.config.fusion_layers) == (0, None, 2)
    assert model.config.dataset == "pa100k" and model.aggregator.temperature.item() == 1.0  # fresh: not in the file
    expected = official_probabilities(clip, classifier, official_token_ids(tokenizer, pa100k_sentences),
                                      official_pixels(images, variant.image), variant)
    assert (probabilities(model, images, processor) - expected).abs().max() <= TOLERANCE


def test_attribute_order_of_converted_data(official, bpe_file, images, expected, tmp_path, capsys):
    """Reordered heads give the official probabilities, reordered; --attribute-order reads a converted data set."""
    import datasets

    from par_prompt.data import ParData, save
    from par_prompt.official import OFFICIAL_TABLES

    names = list(OFFICIAL_TABLES["pa100k"].attributes)
    order = list(reversed(range(len(names))))
    wanted = [names[i] for i in order]
    split = datasets.Dataset.from_dict({"image": [images[0]], "labels": [[0] * len(names)]})
    save(ParData(datasets.DatasetDict({"test": split}), wanted, [f"s{i}" for i in range(len(names))], "pa100k"),
         tmp_path / "data")
    out = tmp_path / "model"
    code = main(["import-official", str(official.path), "--out", str(out), "--bundle-base",
                 "--clip-tokenizer", str(bpe_file), "--attribute-order", str(tmp_path / "data")])
    assert code == 0, capsys.readouterr().err
    model = PromptPARModel.from_pretrained(out)
    assert model.config.attributes == wanted and model.config.imported_from["head_order"] == order
    official_sentences = OFFICIAL_TABLES["pa100k"].sentences
    assert model.config.sentences == [official_sentences[i] for i in order]
    processor = PromptPARProcessor.from_pretrained(out)
    assert (probabilities(model, images, processor) - expected[:, order]).abs().max() <= TOLERANCE
    assert "reordered at import" in (out / "README.md").read_text()

    with pytest.raises(ValueError, match=r"lacks \['Female'\]; the checkpoint has no \['Male'\]"):
        load_official_checkpoint(official.path, attribute_order=["Male", *names[1:]], clip_tokenizer=bpe_file)


def test_from_official_checkpoint_on_the_model_class(official, bpe_file, imported_processor, images, expected):
    model = PromptPARModel.from_official_checkpoint(official.path, dataset="pa100k", clip_tokenizer=bpe_file)
    assert isinstance(model, PromptPARModel) and not model.training
    assert (probabilities(model, images, imported_processor) - expected).abs().max() <= TOLERANCE


def test_a_folder_saved_without_its_processor_keeps_the_official_image_pipeline(
        imported, imported_processor, images, expected, tmp_path):
    """model.save_pretrained alone writes no image processor; loading the processor must not
    fall back to the CLIP's padding and statistics, which would change every prediction."""
    imported.save_pretrained(tmp_path / "model")
    imported_processor.tokenizer.save_pretrained(tmp_path / "model")
    processor = PromptPARProcessor.from_pretrained(tmp_path / "model")
    settings = processor.image_processor
    assert (settings.do_pad, settings.image_mean, settings.image_std) == (False, [0.5] * 3, [0.5] * 3)
    model = PromptPARModel.from_pretrained(tmp_path / "model")
    assert (probabilities(model, images, processor) - expected).abs().max() <= TOLERANCE


def test_no_tokenizer_is_refused_before_the_checkpoint_is_read(official, monkeypatch):
    from par_prompt.official import OfficialCheckpointError, importer

    def read_checkpoint(path):
        raise AssertionError("the checkpoint was read before the arguments were checked")

    monkeypatch.setattr(importer, "read_checkpoint", read_checkpoint)
    with pytest.raises(OfficialCheckpointError, match="clip_tokenizer is needed"):
        load_official_checkpoint(official.path, dataset="pa100k", clip_tokenizer=None)
