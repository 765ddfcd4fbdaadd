"""ParData: metadata round trips (disk, parquet + card), load/save, positive ratios."""

from __future__ import annotations

import json
import subprocess
import sys

import datasets
import numpy as np
import pytest

from par_prompt.data import ParData, ParDataError, load, make_synthetic, positive_ratios, save
from par_prompt.data.common import METADATA_KEY
from par_prompt.data.pardata import card_with_metadata


@pytest.fixture(scope="module")
def small():
    return make_synthetic(8, 3, 3, seed=0)


def test_save_and_load_from_disk(tmp_path, small):
    save(small, tmp_path / "ds")
    info = json.loads((tmp_path / "ds" / "train" / "dataset_info.json").read_text())
    assert json.loads(info["description"])[METADATA_KEY]["attributes"][0] == "hat"
    data = load(tmp_path / "ds")
    assert isinstance(data, ParData) and data.name == "synthetic"
    assert data.attributes == load(small).attributes and data.sentences == load(small).sentences
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 8, "validation": 3, "test": 3}
    # plain datasets API keeps it too
    reloaded = datasets.load_from_disk(str(tmp_path / "ds"))
    assert load(reloaded).attributes == data.attributes
    only_test = load(tmp_path / "ds", split="test")
    assert list(only_test.splits) == ["test"] and only_test.attributes == data.attributes
    with pytest.raises(KeyError, match="available"):
        load(tmp_path / "ds", split="dev")
    with pytest.raises(FileExistsError):
        save(data, tmp_path / "ds")
    data.save(tmp_path / "ds", overwrite=True)


def test_single_saved_split_and_overrides(tmp_path, small):
    small["validation"].save_to_disk(str(tmp_path / "one"))
    data = load(tmp_path / "one", name="renamed")
    assert list(data.splits) == ["train"] and len(data["train"]) == 3 and data.name == "renamed"
    custom = load(small, attributes=[f"a{i}" for i in range(18)], sentences=[f"s{i}" for i in range(18)])
    assert custom.attributes[3] == "a3" and custom.sentences[3] == "s3"


def test_parquet_folder_with_card_like_the_hub(tmp_path, small):
    # what push_to_hub leaves behind: data/<split>-*.parquet and a README whose YAML holds the metadata
    folder = tmp_path / "hub_repo"
    (folder / "data").mkdir(parents=True)
    for split, dataset in small.items():
        dataset.to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    meta = load(small).metadata()
    (folder / "README.md").write_text(card_with_metadata("# Synthetic PAR\n", meta))
    plain = datasets.load_dataset(str(folder))
    assert all(not ds.info.description for ds in plain.values())  # description does not survive parquet
    data = load(str(folder))
    assert (
        data.attributes == meta["attributes"]
        and data.sentences == meta["sentences"]
        and data.name == "synthetic"
    )
    assert len(data["train"]) == 8 and data["train"][0]["image"].size == (64, 128)
    assert "# Synthetic PAR" in (folder / "README.md").read_text()


def test_card_update_keeps_existing_yaml():
    text = card_with_metadata(
        "---\nlicense: mit\n---\nbody\n", {"attributes": ["a"], "sentences": ["A a"], "name": None}
    )
    assert "license: mit" in text and "par_prompt:" in text and text.rstrip().endswith("body")


def test_plain_dataset_needs_attributes(small):
    bare = datasets.DatasetDict(
        {k: datasets.Dataset.from_dict(v.to_dict(), features=v.features) for k, v in small.items()}
    )
    with pytest.raises(ParDataError, match="attributes="):
        load(bare)
    with pytest.warns(UserWarning, match="template"):
        data = load(bare, attributes=[f"attr{i}" for i in range(18)])
    assert len(data.sentences) == 18
    with pytest.raises(ParDataError, match="18 values per example but there are 2"):
        load(bare, attributes=["a", "b"], sentences=["A a", "A b"])
    with pytest.raises(ParDataError, match="lacks the column"):
        load(
            datasets.DatasetDict({"train": datasets.Dataset.from_dict({"x": [1]})}),
            attributes=["a"],
            sentences=["A a"],
        )


def test_with_image_transforms_only_augments_train(small):
    import torch

    splits = load(small).with_image_transforms(size=32)
    torch.manual_seed(0)
    a = splits["validation"][0:3]["pixel_values"]
    b = splits["validation"][0:3]["pixel_values"]
    assert torch.equal(a, b)
    c = splits["train"][0:8]["pixel_values"]
    d = splits["train"][0:8]["pixel_values"]
    assert not torch.equal(c, d)


def test_positive_ratios_ignore_uncertain(small):
    labels = np.array([[1, 0, 2, 2], [0, 0, 2, 1], [1, 1, 1, 2]], dtype=np.int8)
    np.testing.assert_allclose(positive_ratios(labels), [2 / 3, 1 / 3, 1.0, 1.0])
    features = datasets.Features({"labels": datasets.List(datasets.Value("int8"), length=4)})
    dataset = datasets.Dataset.from_dict({"labels": labels.tolist()}, features=features)
    ratios = positive_ratios(dataset)
    assert ratios.dtype == np.float64 and ratios.shape == (4,)
    np.testing.assert_allclose(ratios, [2 / 3, 1 / 3, 1.0, 1.0])
    np.testing.assert_allclose(positive_ratios(small), positive_ratios(np.array(small["train"]["labels"])))
    np.testing.assert_allclose(positive_ratios(np.array([[2, 1]])), [0.5, 1.0])  # no certain entry -> 0.5
    with pytest.raises(ParDataError):
        positive_ratios(np.array([[3]]))


def test_failed_save_leaves_nothing(tmp_path, small, monkeypatch):
    def boom(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(datasets.DatasetDict, "save_to_disk", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save(small, tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []


def test_importing_the_data_package_is_cheap():
    code = (
        "import sys, par_prompt; before = set(sys.modules); import par_prompt.data; "
        "new = set(sys.modules) - before; "
        "heavy = ('datasets', 'scipy', 'PIL', 'torch', 'transformers'); "
        "print(sorted(m for m in new if m.split('.')[0] in heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def _strip_descriptions(dataset_dict):
    """What load_dataset gives back from the Hub: the same data, no description."""
    out = datasets.DatasetDict({k: v.select(range(len(v))) for k, v in dataset_dict.items()})
    for split in out.values():
        split.info.description = ""
    return out


def test_push_to_hub_writes_the_card_and_load_reads_it(small, monkeypatch):
    # no network here: the two Hub calls are replaced by an in-memory "repo"
    import huggingface_hub

    repo = {"card": "---\nlicense: mit\ndataset_info:\n  features: []\n---\n# Card\n", "pushed": None}

    def fake_push(self, repo_id, **kwargs):
        repo["pushed"] = (repo_id, sorted(self))

    def fake_card_load(repo_id, **kwargs):
        assert repo_id == "someone/synthetic-par"
        return huggingface_hub.DatasetCard(repo["card"])

    def fake_card_push(self, repo_id, **kwargs):
        repo["card"] = self.content

    monkeypatch.setattr(datasets.DatasetDict, "push_to_hub", fake_push)
    monkeypatch.setattr(huggingface_hub.DatasetCard, "load", staticmethod(fake_card_load))
    monkeypatch.setattr(huggingface_hub.DatasetCard, "push_to_hub", fake_card_push)
    monkeypatch.setattr(datasets, "load_dataset", lambda path, **kwargs: _strip_descriptions(small))

    data = load(small)
    data.push_to_hub("someone/synthetic-par", private=True)
    assert repo["pushed"] == ("someone/synthetic-par", ["test", "train", "validation"])
    assert "license: mit" in repo["card"] and "par_prompt:" in repo["card"] and "# Card" in repo["card"]

    loaded = load("someone/synthetic-par")
    assert loaded.attributes == data.attributes and loaded.sentences == data.sentences
    assert loaded.name == "synthetic"
