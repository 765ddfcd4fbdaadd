"""Converters: splits, labels, attribute names and partitions from miniature real layouts."""

from __future__ import annotations

import argparse
import io
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from datasets import Image as ImageFeature
from PIL import Image

from par_prompt.data import KNOWN_DATASETS, ParDataError, convert, load
from par_prompt.sentences import expand_attributes

from . import builders


def stored(dataset_dict, split):
    """(paths, labels) of one split as stored."""
    raw = dataset_dict[split].cast_column("image", ImageFeature(decode=False))
    return [row["path"] for row in raw["image"]], np.array(raw["labels"], dtype=np.int8)


def assert_matches(out: Path, expected: builders.Expected, name: str, table: str | None):
    data = load(out)
    assert data.name == name
    assert data.attributes == expected.attributes
    if table is not None:
        assert data.sentences == expand_attributes(expected.attributes, dataset=table)
    assert list(data.splits) == list(expected.splits)
    for split, names in expected.splits.items():
        paths, labels = stored(data.splits, split)
        assert paths == names, split
        np.testing.assert_array_equal(labels, expected.labels[split], err_msg=split)
        assert data.splits[split].features["labels"].length == len(expected.attributes)
    return data


def assert_no_output(out: Path):
    assert not out.exists()
    leftovers = (
        [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
        if out.parent.exists()
        else []
    )
    assert leftovers == []


# ----------------------------------------------------------------------------- per dataset


def test_pa100k(tmp_path):
    expected = builders.make_pa100k(tmp_path / "src")
    result = convert("pa100k", tmp_path / "src", tmp_path / "out")
    assert {k: len(v) for k, v in result.items()} == {"train": 6, "validation": 3, "test": 3}
    assert_matches(tmp_path / "out", expected, "pa100k", "pa100k")
    image = result["train"][0]["image"]  # stored bytes decode to the original picture
    assert image.size == (12, 24)


def test_pa100k_has_a_single_partition(tmp_path):
    builders.make_pa100k(tmp_path / "src")
    with pytest.raises(ParDataError, match="single"):
        convert("pa100k", tmp_path / "src", tmp_path / "out", partition=1)
    assert_no_output(tmp_path / "out")


@pytest.mark.parametrize("partition", [0, 3])
def test_peta_partitions(tmp_path, partition):
    expected = builders.make_peta(tmp_path / "src")
    convert("peta", tmp_path / "src", tmp_path / "out", partition=partition)
    assert_matches(tmp_path / "out", expected[partition], "peta", "peta")
    assert expected[0].splits["train"] != expected[3].splits["train"]  # partitions really differ


def test_peta_accepts_partition_attribute_spelling(tmp_path):
    expected = builders.make_peta(tmp_path / "src", partition_field="partition_attribute")
    convert("peta", tmp_path / "src", tmp_path / "out", partition=1)
    assert_matches(tmp_path / "out", expected[1], "peta", "peta")


@pytest.mark.parametrize("selected", ["attributes", "absent"])
def test_peta_selected_attribute_variants(tmp_path, selected):
    if selected == "absent":
        expected = builders.make_peta(tmp_path / "src", drop="selected_attribute")
    else:
        expected = builders.make_peta(tmp_path / "src", selected=selected)
    convert("peta", tmp_path / "src", tmp_path / "out", partition=2)
    assert_matches(tmp_path / "out", expected[2], "peta", "peta")


def test_peta_partition_out_of_range(tmp_path):
    builders.make_peta(tmp_path / "src")
    with pytest.raises(ParDataError, match="partition 5 requested, the file has 5"):
        convert("peta", tmp_path / "src", tmp_path / "out", partition=5)


def test_rapv1_keeps_uncertain_and_derives_validation(tmp_path):
    attributes, labels, names, chosen = builders.make_rapv1(tmp_path / "src")
    assert (labels == 2).any()
    for partition in (0, 2):
        out = tmp_path / f"out{partition}"
        convert("rapv1", tmp_path / "src", out, partition=partition)
        data = load(out)
        assert data.attributes == attributes and len(attributes) == 51
        train_idx, test_idx = chosen[partition]
        paths = {split: stored(data.splits, split)[0] for split in data.splits}
        assert paths["test"] == [names[i] for i in test_idx]
        # validation: 10% of the train indices, disjoint, original order kept in both
        assert len(paths["validation"]) == round(0.1 * len(train_idx)) == 2
        assert set(paths["train"]) | set(paths["validation"]) == {names[i] for i in train_idx}
        assert not set(paths["train"]) & set(paths["validation"])
        order = [names[i] for i in train_idx]
        assert paths["train"] == [n for n in order if n in paths["train"]]
        for split in data.splits:
            split_paths, split_labels = stored(data.splits, split)
            np.testing.assert_array_equal(split_labels, labels[[names.index(p) for p in split_paths]])
        assert (np.concatenate([stored(data.splits, s)[1] for s in data.splits]) == 2).any()
    # the derivation is deterministic
    convert("rapv1", tmp_path / "src", tmp_path / "again", partition=2)
    assert (
        stored(load(tmp_path / "again").splits, "validation")[0]
        == stored(load(tmp_path / "out2").splits, "validation")[0]
    )


def test_rapv2_selected_attributes_and_partitions(tmp_path):
    attributes, labels, names, chosen = builders.make_rapv2(tmp_path / "src")
    for partition in (0, 4):
        out = tmp_path / f"out{partition}"
        convert("rapv2", tmp_path / "src", out, partition=partition)
        exp = builders.Expected(
            attributes,
            {s: [names[i] for i in idx] for s, idx in chosen[partition].items()},
            {s: labels[idx] for s, idx in chosen[partition].items()},
        )
        assert_matches(out, exp, "rapv2", "rapv2")
    assert list(chosen[0]["train"]) != list(chosen[4]["train"])


@pytest.mark.parametrize("name", ["peta_zs", "rap_zs"])
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_zero_shot(tmp_path, monkeypatch, name, protocol):
    monkeypatch.setitem(sys.modules, "easydict", builders.fake_easydict_module())
    expected = builders.make_zero_shot(tmp_path / "src", name, protocol=protocol)
    monkeypatch.delitem(sys.modules, "easydict")  # the converter must not need it
    convert(name, tmp_path / "src", tmp_path / "out")
    data = assert_matches(tmp_path / "out", expected, name, "peta" if name == "peta_zs" else "rapv2")
    assert len(data.attributes) == (35 if name == "peta_zs" else 53)
    assert "easydict" not in sys.modules


def test_zero_shot_numpy1_pickle_and_no_label_idx(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "easydict", builders.fake_easydict_module())
    expected = builders.make_zero_shot(
        tmp_path / "src", "peta_zs", protocol=2, numpy1_spelling=True, with_label_idx=False
    )
    assert b"numpy.core.multiarray" in (tmp_path / "src" / "dataset_zs_run0.pkl").read_bytes()
    with pytest.raises(ParDataError, match="evaluates 35 attributes, the file selects 105"):
        convert("peta_zs", tmp_path / "src", tmp_path / "out")
    assert_no_output(tmp_path / "out")
    # the same file with label_idx converts
    expected = builders.make_zero_shot(tmp_path / "src2", "peta_zs", protocol=2, numpy1_spelling=True)
    convert("peta_zs", tmp_path / "src2", tmp_path / "out")
    assert_matches(tmp_path / "out", expected, "peta_zs", "peta")


def test_zero_shot_partition_picks_the_run_file(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "easydict", builders.fake_easydict_module())
    builders.make_zero_shot(tmp_path / "src", "rap_zs", partition=0)
    with pytest.raises(ParDataError, match="dataset_zs_run3.pkl"):
        convert("rap_zs", tmp_path / "src", tmp_path / "out", partition=3)


def test_wider_crops_boxes_and_maps_labels(tmp_path):
    expected, crops = builders.make_wider(tmp_path / "src")
    result = convert("wider", tmp_path / "src", tmp_path / "out")
    data = assert_matches(tmp_path / "out", expected, "wider", None)
    assert len(data.attributes) == 14 and data.sentences[4] == "A person wearing a T-shirt"
    assert {k: len(v) for k, v in result.items()} == {"train": 3, "validation": 2, "test": 2}
    for split in result:
        raw = result[split].cast_column("image", ImageFeature(decode=False))
        for row in raw["image"]:
            image = Image.open(io.BytesIO(row["bytes"]))
            assert image.size == crops[row["path"]]
            assert np.abs(np.asarray(image.convert("RGB"), dtype=int) - (10, 200, 30)).max() < 12


def test_wider_box_outside_image_is_skipped(tmp_path, caplog):
    builders.make_wider(tmp_path / "src")
    path = tmp_path / "src" / "wider_attribute_trainval.json"
    text = path.read_text().replace('"bbox": [5, 4, 15, 40]', '"bbox": [500, 400, 15, 40]', 1)
    path.write_text(text)
    with caplog.at_level(logging.WARNING):
        result = convert("wider", tmp_path / "src", tmp_path / "out")
    assert len(result["train"]) == 2
    assert "1 box(es) with no area" in caplog.text


# ------------------------------------------------------------------------------- bad input


def test_unknown_name_lists_known_ones(tmp_path):
    with pytest.raises(ValueError) as info:
        convert("market1501", tmp_path, tmp_path / "out")
    for name in KNOWN_DATASETS:
        assert name in str(info.value)
    assert_no_output(tmp_path / "out")


@pytest.mark.parametrize("field", ["val_label", "train_images_name", "attributes"])
def test_missing_field_in_mat_is_named(tmp_path, field):
    builders.make_pa100k(tmp_path / "src", drop=field)
    out = tmp_path / "new" / "nested" / "out"
    with pytest.raises(ParDataError) as info:
        convert("pa100k", tmp_path / "src", out)
    assert repr(field) in str(info.value) and "annotation.mat" in str(info.value)
    assert not (tmp_path / "new").exists()


def test_missing_struct_field_is_named(tmp_path):
    builders.make_peta(tmp_path / "src", drop="partion_attribute")
    with pytest.raises(
        ParDataError,
        match=r"field 'partion_attribute' is missing from peta.*PETA\.mat|PETA\.mat.*'partion_attribute'",
    ):
        convert("peta", tmp_path / "src", tmp_path / "out")
    assert_no_output(tmp_path / "out")


def test_label_width_mismatch(tmp_path):
    builders.make_pa100k(tmp_path / "src", label_width=25)
    with pytest.raises(ParDataError, match="25 columns but the attribute list has 26 names"):
        convert("pa100k", tmp_path / "src", tmp_path / "out")
    assert_no_output(tmp_path / "out")


def test_label_width_mismatch_rapv2(tmp_path):
    builders.make_rapv2(tmp_path / "src", label_width=150)
    with pytest.raises(ParDataError, match="150 columns but attribute has 152 names"):
        convert("rapv2", tmp_path / "src", tmp_path / "out")


def test_label_rows_mismatch_rapv1(tmp_path):
    builders.make_rapv1(tmp_path / "src", n_rows=24, name_count=23)
    with pytest.raises(ParDataError, match="label has 24 rows but imagesname lists 23"):
        convert("rapv1", tmp_path / "src", tmp_path / "out")
    assert_no_output(tmp_path / "out")


def test_bad_label_values(tmp_path):
    import scipy.io

    builders.make_pa100k(tmp_path / "src")
    mat = scipy.io.loadmat(str(tmp_path / "src" / "annotation.mat"))
    mat["test_label"][0, 0] = 7
    scipy.io.savemat(
        str(tmp_path / "src" / "annotation.mat"), {k: v for k, v in mat.items() if not k.startswith("__")}
    )
    with pytest.raises(ParDataError, match=r"test_label.*found \[7.0\]"):
        convert("pa100k", tmp_path / "src", tmp_path / "out")


def test_missing_image_is_named_or_skipped(tmp_path, caplog):
    expected = builders.make_pa100k(tmp_path / "src")
    missing = expected.splits["validation"][1]
    (tmp_path / "src" / "data" / missing).unlink()
    with pytest.raises(ParDataError) as info:
        convert("pa100k", tmp_path / "src", tmp_path / "out")
    assert missing in str(info.value) and "skip_missing" in str(info.value)
    assert_no_output(tmp_path / "out")

    with caplog.at_level(logging.WARNING):
        result = convert("pa100k", tmp_path / "src", tmp_path / "out", skip_missing=True)
    assert "skipped 1 missing image(s) in total" in caplog.text
    paths, labels = stored(result, "validation")
    assert missing not in paths and len(paths) == 2
    keep = [i for i, n in enumerate(expected.splits["validation"]) if n != missing]
    np.testing.assert_array_equal(labels, expected.labels["validation"][keep])


@pytest.mark.parametrize("damage", [builders.corrupt_file, builders.truncated_jpeg])
def test_corrupt_image_is_named_or_skipped(tmp_path, caplog, damage):
    expected = builders.make_pa100k(tmp_path / "src")
    bad = expected.splits["test"][0]
    damage(tmp_path / "src" / "data" / bad)
    with pytest.raises(ParDataError) as info:
        convert("pa100k", tmp_path / "src", tmp_path / "out")
    assert bad in str(info.value) and "skip_corrupt" in str(info.value)
    assert_no_output(tmp_path / "out")

    with caplog.at_level(logging.WARNING):
        result = convert("pa100k", tmp_path / "src", tmp_path / "out", skip_corrupt=True)
    assert "test: skipped 1 unreadable image(s)" in caplog.text
    assert bad not in stored(result, "test")[0] and len(result["test"]) == 2


def test_empty_split(tmp_path):
    builders.make_pa100k(tmp_path / "src", sizes=(4, 0, 2))
    with pytest.raises(ParDataError, match="'validation' split is empty"):
        convert("pa100k", tmp_path / "src", tmp_path / "out")
    assert_no_output(tmp_path / "out")


def test_split_empty_after_skipping(tmp_path):
    expected = builders.make_pa100k(tmp_path / "src", sizes=(4, 1, 2))
    (tmp_path / "src" / "data" / expected.splits["validation"][0]).unlink()
    with pytest.raises(ParDataError, match="'validation' split is empty"):
        convert("pa100k", tmp_path / "src", tmp_path / "out", skip_missing=True)
    assert_no_output(tmp_path / "out")


def test_matlab_v73_is_explained(tmp_path):
    (tmp_path / "src").mkdir()
    header = (
        b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(116, b" ") + b"\0" * 8 + b"\0\2IM"
    )
    (tmp_path / "src" / "annotation.mat").write_bytes(header + b"\0" * 256)
    with pytest.raises(ParDataError, match="v7.3"):
        convert("pa100k", tmp_path / "src", tmp_path / "out")


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    builders.make_pa100k(tmp_path / "src")
    out = tmp_path / "out"
    convert("pa100k", tmp_path / "src", out)
    first = (out / "train" / "dataset_info.json").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert("pa100k", tmp_path / "src", out)
    assert (out / "train" / "dataset_info.json").stat().st_mtime_ns == first
    convert("pa100k", tmp_path / "src", out, overwrite=True)  # an earlier conversion: replaced
    assert (out / "dataset_dict.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_missing_source_directory(tmp_path):
    with pytest.raises(ParDataError, match="source directory not found"):
        convert("peta", tmp_path / "nope", tmp_path / "out")


# ------------------------------------------------------------------------------------ CLI


def parse(argv):
    from par_prompt.data.cli import register

    parser = argparse.ArgumentParser(prog="par-prompt")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_convert(tmp_path, capsys):
    expected = builders.make_pa100k(tmp_path / "src")
    args = parse(["convert", "pa100k", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "out")])
    assert args.func(args) == 0
    assert "train: 6" in capsys.readouterr().out
    assert_matches(tmp_path / "out", expected, "pa100k", "pa100k")


def test_cli_convert_errors(tmp_path, capsys):
    args = parse(["convert", "nope", "--src", str(tmp_path), "--out", str(tmp_path / "out")])
    assert args.func(args) == 2
    assert "known datasets: pa100k, peta" in capsys.readouterr().err

    expected = builders.make_pa100k(tmp_path / "src")
    (tmp_path / "src" / "data" / expected.splits["train"][2]).unlink()
    argv = [
        "convert",
        "pa100k",
        "--src",
        str(tmp_path / "src"),
        "--out",
        str(tmp_path / "out"),
        "--partition",
        "0",
    ]
    args = parse(argv)
    assert args.func(args) == 2
    assert expected.splits["train"][2] in capsys.readouterr().err
    assert_no_output(tmp_path / "out")
    args = parse([*argv, "--skip-missing"])
    assert args.skip_missing and not args.skip_corrupt
    assert args.func(args) == 0
    assert "train: 5" in capsys.readouterr().out
