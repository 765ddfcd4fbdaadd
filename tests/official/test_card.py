"""The model card of an imported official checkpoint: the shared template with a provenance section."""

from __future__ import annotations

import pytest
from huggingface_hub import ModelCard

from par_prompt.official import OFFICIAL_TABLES, load_official_checkpoint, save_official_model
from par_prompt.official.card import PAPER_RESULTS, render_official_card

SECTIONS = ("## Imported from an official PromptPAR checkpoint", "### The official prediction pipeline",
            "### Not carried over, and why", "## How to use", "## Results", "## Attributes", "## Training",
            "## Limitations", "## License", "## Citation")


@pytest.fixture(scope="module")
def imported(official, bpe_file):
    return load_official_checkpoint(official.path, dataset="pa100k", clip_tokenizer=bpe_file)


def test_saved_official_model_has_the_card(imported, official, tmp_path):
    model, processor = imported
    folder = save_official_model(model, processor, tmp_path / "model")
    text = (folder / "README.md").read_text()
    card = ModelCard.load(folder / "README.md")
    assert ModelCard(str(card)).data.to_dict() == card.data.to_dict()
    data = card.data
    # the official weights are not par-prompt's to license: "other", pointing to OpenPAR's licence
    assert (data.license, data.license_name) == ("other", "openpar")
    assert data.license_link == "https://github.com/Event-AHU/OpenPAR/blob/main/LICENSE"
    assert "official-checkpoint" in data.tags and data.pipeline_tag == "image-classification"
    # tiny test sizes match no OpenAI CLIP: the weights are bundled and there is no Hub base
    assert "base_model" not in data.to_dict()
    for heading in SECTIONS:
        assert heading in text, heading
    assert text.index("## Imported from") < text.index("## How to use")
    source = model.config.imported_from
    assert f"| file | `{official.path.name}` |" in text and f"| SHA-256 | `{source['sha256']}` |" in text
    assert f"| epoch | {source['epoch']} |" in text
    table = OFFICIAL_TABLES["pa100k"]
    assert f"the `attr_words` of the official `dataset/preprocess/{table.script}`" in text
    assert f"| {table.title} | " + " | ".join(f"{v:.2f}" for v in PAPER_RESULTS["pa100k"]) + " |" in text
    assert "| mA | Acc | Prec | Rec | F1 |\n|---|---|---|---|---|\n| 81.23 |" in text  # the stored result
    for name in source["dropped_tensors"]:
        assert f"`{name}`" in text
    assert "bundled (`clip_base.safetensors`)" in text
    assert str(official.path.parent) not in text and str(tmp_path) not in text
    assert "{{" not in text and "{%" not in text


def test_official_card_names_its_hub_clip(imported):
    config = imported[0].config.to_dict()
    config["clip_name_or_path"] = "openai/clip-vit-large-patch14"
    text = render_official_card(config, bundled=False)
    data = ModelCard(text).data
    assert data.base_model == ["openai/clip-vit-large-patch14"] and data.base_model_relation == "adapter"
    assert "The CLIP weights are loaded from `openai/clip-vit-large-patch14`" in text
    # a checkpoint of unknown data: no paper numbers, and the user's sentences
    config["imported_from"] = dict(config["imported_from"], dataset=None, attributes_from="given",
                                   stored_result=None, file="/home/alice/checkpoints/epoch3.pth")
    config["dataset"] = None
    text = render_official_card(config)
    assert "No published numbers are known for this data set." in text
    assert "given by the user at import" in text
    assert "| file | `epoch3.pth` |" in text and "/home/alice" not in text
