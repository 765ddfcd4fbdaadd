"""``par-prompt import-official``: bad input gets one line and exit code 2, and nothing is written."""

from __future__ import annotations

import datetime

import pytest
import torch

from par_prompt.cli import main

from .builders import Sizes, official_classifier_state, official_clip_state, save_official


def run(capsys, *args):
    code = main(["import-official", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, pattern):
    import re

    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("par-prompt import-official: error: "), err
    assert re.search(pattern, lines[0]), lines[0]


@pytest.fixture(scope="module")
def seven_heads(tmp_path_factory, sizes):
    small = Sizes(vocab=sizes.vocab, attributes=7)
    mp = pytest.MonkeyPatch()
    try:
        return save_official(tmp_path_factory.mktemp("seven") / "custom.pth", mp, official_clip_state(small),
                             official_classifier_state(small))
    finally:
        mp.undo()


def _variant(tmp_path, monkeypatch, sizes, case):
    clip, classifier = official_clip_state(sizes), official_classifier_state(sizes)
    result = True
    if case == "missing":
        del classifier["norm.weight"]
    elif case == "unknown":
        clip["visual.extra"] = torch.zeros(2)
    elif case == "global":
        result = {"saved": datetime.datetime(2024, 5, 23)}
    return save_official(tmp_path / f"{case}.pth", monkeypatch, clip, classifier, result=result)


@pytest.mark.parametrize("case, pattern", [
    ("missing", r"no 'norm\.weight'"),
    ("unknown", r"visual\.extra \(2,\)"),
    ("global", r"'datetime\.datetime'.*refusing"),
])
def test_bad_checkpoints(case, pattern, tmp_path, monkeypatch, sizes, bpe_file, capsys):
    path = _variant(tmp_path, monkeypatch, sizes, case)
    out = tmp_path / "out"
    code, _, err = run(capsys, path, "--out", out, "--clip-tokenizer", bpe_file)
    assert_one_line_error(code, err, pattern)
    assert not out.exists() and list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("args, pattern", [
    (["--dataset", "market1501"], r"unknown dataset 'market1501'"),
    (["--dataset", "peta"], r"26 attribute heads but peta has 35.*--attributes"),
    (["--dataset", "rap"], r"26 attribute heads but rap has 51 \(rapv1\) or 54 \(rapv2\)"),
])
def test_bad_dataset(args, pattern, official, bpe_file, tmp_path, capsys):
    code, _, err = run(capsys, official.path, "--out", tmp_path / "out", "--clip-tokenizer", bpe_file, *args)
    assert_one_line_error(code, err, pattern)
    assert not (tmp_path / "out").exists()


def test_head_count_matching_no_table(seven_heads, bpe_file, tmp_path, capsys):
    code, _, err = run(capsys, seven_heads, "--out", tmp_path / "out", "--clip-tokenizer", bpe_file)
    assert_one_line_error(code, err, r"7 attribute heads, which matches no official data set.*--attributes FILE")


def test_attributes_file_for_other_data(seven_heads, bpe_file, tmp_path, capsys):
    names = ["Hat", "Glasses", "Backpack", "Skirt", "Boots", "Female", "Umbrella"]
    attributes = tmp_path / "attributes.tsv"
    attributes.write_text("".join(f"{n}\tA pedestrian with {n.lower()}\n" for n in names), encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, err = run(capsys, seven_heads, "--out", out, "--attributes", attributes, "--clip-tokenizer",
                            bpe_file)
    assert code == 0, err
    assert "7 attributes (given)" in stdout
    from par_prompt import PromptPARModel

    model = PromptPARModel.from_pretrained(out)
    assert model.config.attributes == names and model.config.sentences[-1] == "A pedestrian with umbrella"
    assert model.config.imported_from["attributes_from"] == "given"
    assert "given by the user at import" in (out / "README.md").read_text()


@pytest.mark.parametrize("text, pattern", [
    ("Hat A pedestrian wearing a hat\n", r"line 1: expected NAME<TAB>SENTENCE"),
    ("Hat\tA pedestrian wearing a hat\n", r"1 attributes were given for the checkpoint's 26 heads"),
])
def test_bad_attribute_files(text, pattern, official, bpe_file, tmp_path, capsys):
    attributes = tmp_path / "attributes.tsv"
    attributes.write_text(text, encoding="utf-8")
    code, _, err = run(capsys, official.path, "--out", tmp_path / "out", "--attributes", attributes,
                       "--clip-tokenizer", bpe_file)
    assert_one_line_error(code, err, pattern)


def test_out_exists(official, bpe_file, tmp_path, capsys):
    existing = tmp_path / "model"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    code, _, err = run(capsys, official.path, "--out", existing, "--clip-tokenizer", bpe_file)
    assert_one_line_error(code, err, r"already exists \(a directory\)")
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]

    a_file = tmp_path / "model.txt"
    a_file.write_text("mine")
    code, _, err = run(capsys, official.path, "--out", a_file, "--clip-tokenizer", bpe_file)
    assert_one_line_error(code, err, r"already exists \(a file\)")
    assert a_file.read_text() == "mine"


def test_missing_checkpoint_and_tokenizer(official, tmp_path, capsys):
    code, _, err = run(capsys, tmp_path / "nope.pth", "--out", tmp_path / "out")
    assert_one_line_error(code, err, r"nope\.pth is not a file")
    code, _, err = run(capsys, official.path, "--out", tmp_path / "out", "--clip-tokenizer", tmp_path / "no" / "tok")
    assert_one_line_error(code, err, r"cannot load a CLIP tokenizer")
    assert not (tmp_path / "out").exists()
