"""Your own data (issue #13.3): ``convert csv``, ``convert rethinking``, the help text,
the progress bar, and the README's "Your own data" section run end to end."""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from par_prompt.data import ParDataError, convert, load
from par_prompt.data.csv_table import SPLIT_RATIOS, seeded_split
from par_prompt.sentences import expand_attributes

from . import builders
from .test_converters import stored

ROOT = Path(__file__).resolve().parents[2]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    from par_prompt.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:  # --help
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def photos(folder: Path, names) -> None:
    for i, name in enumerate(names):
        builders.write_image(folder / name, size=(16, 32), colour=(10 * i % 250, 40, 90))


# ----------------------------------------------------------------------------------- csv


def test_csv_with_a_split_column(tmp_path):
    photos(tmp_path / "img", ["a.jpg", "b.jpg", "sub/c.png", "d.jpg", "e.jpg"])
    table = tmp_path / "labels.csv"
    table.write_text(
        "\ufeffimage, Hat ,Backpack,split\n"  # a BOM and spaces, as spreadsheets write them
        "a.jpg,1,0,train\n"
        "b.jpg,0,2,TRAIN\n"
        "\n"
        "sub/c.png,1,1,val\n"
        "d.jpg,0,0,test\n"
        "e.jpg,1,0,query\n"
    )
    result = convert("csv", table, tmp_path / "out", images=tmp_path / "img")
    data = load(tmp_path / "out")
    assert data.attributes == ["Hat", "Backpack"] and data.name == "labels"
    assert data.sentences == expand_attributes(["Hat", "Backpack"])
    assert list(result) == ["train", "validation", "test", "query"]
    assert stored(data.splits, "train")[0] == ["a.jpg", "b.jpg"]
    np.testing.assert_array_equal(stored(data.splits, "train")[1], [[1, 0], [0, 2]])
    assert stored(data.splits, "validation")[0] == ["c.png"]  # datasets keeps base names
    np.testing.assert_array_equal(stored(data.splits, "test")[1], [[0, 0]])


def test_csv_seeded_split(tmp_path):
    names = [f"p{i:02d}.jpg" for i in range(30)]
    photos(tmp_path, names)
    table = tmp_path / "labels.csv"
    table.write_text("image,Hat\n" + "".join(f"{n},{i % 2}\n" for i, n in enumerate(names)))
    sizes = {k: len(v) for k, v in convert("csv", table, tmp_path / "a").items()}
    assert sizes == {"train": 24, "validation": 3, "test": 3}  # SPLIT_RATIOS of 30
    assert SPLIT_RATIOS == (0.8, 0.1, 0.1)
    convert("csv", table, tmp_path / "b")
    convert("csv", table, tmp_path / "c", seed=1)
    split_of = {
        key: {name: split for split in ("train", "validation", "test")
              for name in stored(load(tmp_path / key).splits, split)[0]}
        for key in "abc"
    }  # fmt: skip
    assert split_of["a"] == split_of["b"] and split_of["a"] != split_of["c"]
    assert seeded_split(3, 0).count("train") == 1  # the smallest table: one row per split
    with pytest.raises(ParDataError, match="at least 3 images"):
        seeded_split(2, 0)


def test_csv_sentences_file(tmp_path):
    photos(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    table = tmp_path / "labels.csv"
    table.write_text("image,Hat,glowingShoes\na.jpg,1,0\nb.jpg,0,1\nc.jpg,1,1\n")
    (tmp_path / "s.txt").write_text("A person with a hat\n\nA person in glowing shoes\n")
    convert("csv", table, tmp_path / "o1", sentences=tmp_path / "s.txt")
    assert load(tmp_path / "o1").sentences == ["A person with a hat", "A person in glowing shoes"]
    (tmp_path / "s.json").write_text(json.dumps({"glowingShoes": "Shoes that glow", "Hat": "A hat"}))
    convert("csv", table, tmp_path / "o2", sentences=tmp_path / "s.json")
    assert load(tmp_path / "o2").sentences == ["A hat", "Shoes that glow"]
    (tmp_path / "bad.json").write_text(json.dumps({"Hat": "A hat"}))
    with pytest.raises(ParDataError, match="missing \\['glowingShoes'\\]"):
        convert("csv", table, tmp_path / "o3", sentences=tmp_path / "bad.json")
    (tmp_path / "short.txt").write_text("only one\n")
    with pytest.raises(ParDataError, match="1 sentences for 2 attributes"):
        convert("csv", table, tmp_path / "o4", sentences=tmp_path / "short.txt")


@pytest.mark.parametrize(
    "body,needle",
    [
        ("image,Hat,Bag\na.jpg,1,0\nb.jpg,yes,0\n", "line 3, column 'Hat': 'yes' is not a label"),
        ("image,Hat,Bag\na.jpg,1,0\nb.jpg,0,\n", "line 3, column 'Bag': '' is not a label"),
        ("image,Hat,Bag\na.jpg,1,0\nb.jpg,0,1.0\n", "line 3, column 'Bag': '1.0' is not a label"),
        ("image,Hat,Bag\na.jpg,1,0\nb.jpg,3,0\n", "line 3, column 'Hat': '3'"),
        ("image,Hat,Bag\na.jpg,1,0\nb.jpg,0\n", "line 3: 2 cells, the header has 3"),
        ("image,Hat,Bag\na.jpg,1,0\na.jpg,0,0\n", "line 3: image 'a.jpg' is listed again (first on line 2)"),
        ("image,Hat,Bag\na.jpg,1,0\n./a.jpg,0,1\n", "line 3: image './a.jpg' is listed again (first on line 2)"),
        ("image,Hat,Bag\n,1,0\n", "line 2, column 'image': the image name is empty"),
        ("name,Hat\na.jpg,1\n", "no 'image' column"),
        ("image,Hat,Hat\na.jpg,1,0\n", "names 'Hat' twice"),
        ("image,split\na.jpg,train\n", "no attribute columns"),
        ("image,Hat\n", "lists no images"),
        ("", "is empty"),
        ("image,Hat,split\na.jpg,1,train\nb.jpg,0,test\n", "no row to ['validation']"),
    ],
)
def test_csv_errors_name_the_row_and_column(tmp_path, body, needle):
    photos(tmp_path, ["a.jpg", "b.jpg"])
    table = tmp_path / "labels.csv"
    table.write_text(body)
    code, _, err = run_cli(["convert", "csv", "--src", str(table), "--out", str(tmp_path / "out")])
    assert code == 2 and "Traceback" not in err
    assert needle in err and str(table) in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_csv_source_must_be_a_regular_file(tmp_path):
    with pytest.raises(ParDataError, match="is a directory"):
        convert("csv", tmp_path, tmp_path / "out")
    with pytest.raises(ParDataError, match="does not exist"):
        convert("csv", tmp_path / "missing.csv", tmp_path / "out")
    with pytest.raises(ParDataError, match="seed only applies to the csv converter"):
        convert("pa100k", tmp_path, tmp_path / "out", seed=3)


# ----------------------------------------------------------------------------- rethinking


@pytest.fixture
def easydict(monkeypatch):
    monkeypatch.setitem(sys.modules, "easydict", builders.fake_easydict_module())
    return sys.modules["easydict"].EasyDict


def _rethinking_rap(root: Path, EasyDict, n_rows: int = 30):
    """What Rethinking_of_PAR's RAPv1 preprocessing writes: all 92 columns, label_idx.eval
    (51, in group order), trainval / test lists of 5 partitions, an absolute root."""
    from par_prompt.sentences import DATASET_ATTRIBUTES

    rng = np.random.default_rng(7)
    raw_names = list(DATASET_ATTRIBUTES["rapv1"]) + [f"extra-{i}" for i in range(41)]
    labels = rng.integers(0, 3, size=(n_rows, len(raw_names))).astype(np.uint8)
    names = [f"CAM01_img_{i:04d}.png" for i in range(n_rows)]
    eval_idx = list(range(9, 51)) + list(range(9))
    blob = EasyDict()
    blob.description = "rap"
    blob.reorder = "group_order"
    blob.root = "/mnt/data1/jiajian/datasets/attribute/RAP/RAP_dataset"
    blob.image_name = names
    blob.label = labels
    blob.attr_name = raw_names
    blob.label_idx = EasyDict()
    blob.label_idx.eval = eval_idx
    blob.label_idx.color = list(range(63, 92))
    blob.label_idx.extra = range(51, 63)
    blob.partition = EasyDict()
    blob.partition.trainval, blob.partition.test = [], []
    for _ in range(5):
        order = rng.permutation(n_rows)
        blob.partition.trainval.append(order[:24])
        blob.partition.test.append(order[24:])
    blob.weight_trainval = [np.mean(labels[p], axis=0).astype(np.float32) for p in blob.partition.trainval]
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_all.pkl").write_bytes(pickle.dumps(blob, protocol=4))
    photos(root / "RAP_dataset", names)
    return blob, raw_names, eval_idx


def test_rethinking_rapv1_pickle(tmp_path, easydict):
    blob, raw_names, eval_idx = _rethinking_rap(tmp_path / "RAP", easydict)
    del sys.modules["easydict"]  # the converter must not need it
    code, out, err = run_cli(["convert", "Rethinking", "--src", str(tmp_path / "RAP" / "dataset_all.pkl"),
                              "--out", str(tmp_path / "out"), "--partition", "3"])
    assert code == 0, err
    data = load(tmp_path / "out")
    attributes = [raw_names[i] for i in eval_idx]
    assert data.attributes == attributes and data.name == "rapv1"
    assert data.sentences == expand_attributes(attributes, dataset="rapv1")
    names = blob.image_name
    assert stored(data.splits, "test")[0] == [names[i] for i in blob.partition.test[3]]
    trainval = {names[i] for i in blob.partition.trainval[3]}
    assert set(stored(data.splits, "train")[0]) | set(stored(data.splits, "validation")[0]) == trainval
    paths, labels = stored(data.splits, "train")
    rows = [names.index(p) for p in paths]
    np.testing.assert_array_equal(labels, blob.label[rows][:, eval_idx])
    assert "easydict" not in sys.modules


def test_rethinking_openpar_pickle_with_images_elsewhere(tmp_path, easydict):
    """OpenPAR's pad.pkl: single arrays, sentences and embeddings stored alongside."""
    names = [f"{i:06d}.jpg" for i in range(12)]
    blob = easydict()
    blob.description = "pa100k"
    blob.root = "/data/someone/PA100k/data"
    blob.image_name = names
    blob.label = np.random.default_rng(1).integers(0, 2, size=(12, 3)).astype(np.uint8)
    blob.attr_name = ["Female", "Hat", "Backpack"]
    blob.attributes = ["female", "hat", "backpack"]
    blob.attr_words = np.array(blob.attributes)
    blob.attr_vectors = np.zeros((3, 8), dtype=np.float32)
    blob.partition = easydict()
    blob.partition.train, blob.partition.val = np.arange(0, 8), np.arange(8, 10)
    blob.partition.test, blob.partition.trainval = np.arange(10, 12), np.arange(0, 10)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "pad.pkl").write_bytes(pickle.dumps(blob))
    photos(tmp_path / "pictures", names)
    with pytest.raises(ParDataError, match="does not exist"):  # no data/ next to the pickle
        convert("rethinking", tmp_path / "meta" / "pad.pkl", tmp_path / "out")
    convert("rethinking", tmp_path / "meta" / "pad.pkl", tmp_path / "out", images=tmp_path / "pictures")
    data = load(tmp_path / "out")
    assert data.name == "pa100k" and data.attributes == ["Female", "Hat", "Backpack"]
    assert stored(data.splits, "validation")[0] == names[8:10]
    with pytest.raises(ParDataError, match="single partition"):
        convert("rethinking", tmp_path / "meta" / "pad.pkl", tmp_path / "o2", partition=1,
                images=tmp_path / "pictures")
    blob.partition.validation = np.arange(9, 10)  # next to 'val': it would replace that split
    (tmp_path / "meta" / "pad.pkl").write_bytes(pickle.dumps(blob))
    with pytest.raises(ParDataError, match="partition.validation would replace the 'validation' split"):
        convert("rethinking", tmp_path / "meta" / "pad.pkl", tmp_path / "o3", images=tmp_path / "pictures")
    assert not (tmp_path / "o3").exists()


def test_rethinking_partition_out_of_range_and_bad_layouts(tmp_path, easydict):
    blob, _, _ = _rethinking_rap(tmp_path / "RAP", easydict)
    src = tmp_path / "RAP" / "dataset_all.pkl"
    with pytest.raises(ParDataError, match="partition 5 requested"):
        convert("rethinking", src, tmp_path / "out", partition=5)
    test = blob.partition.test
    blob.partition = easydict()
    blob.partition.test = test
    src.write_bytes(pickle.dumps(blob))
    with pytest.raises(ParDataError, match="should hold train, val and test"):
        convert("rethinking", src, tmp_path / "out")


# ------------------------------------------------------------------ help and progress


def test_convert_help_shows_every_layout():
    code, out, _ = run_cli(["convert", "--help"])
    assert code == 0
    for needle in ("annotation.mat", "PETA.mat", "RAP_annotation.mat", "dataset_zs_run", "wider_attribute_trainval.json",
                   "labels.csv", "dataset_all.pkl", "=== csv ===", "=== rethinking ===", "--images"):
        assert needle in out, needle
    assert "``" not in out and ":mod:" not in out


def test_conversion_shows_a_progress_bar_that_honours_the_switches(tmp_path, capsys):
    import datasets

    builders.make_pa100k(tmp_path / "src")
    convert("pa100k", tmp_path / "src", tmp_path / "a")
    err = capsys.readouterr().err
    assert "converting train" in err and "6/6" in err and "converting test" in err
    datasets.disable_progress_bars()
    try:
        convert("pa100k", tmp_path / "src", tmp_path / "b")
    finally:
        datasets.enable_progress_bars()
    assert "converting" not in capsys.readouterr().err


# ----------------------------------------------------------------- README, end to end


def _snippet_commands(script: str) -> list[tuple[str, object]]:
    """The snippet as ("write", (file, text)) and ("run", argv) steps (heredocs and
    backslash continuations resolved)."""
    import shlex

    steps, lines = [], iter(script.replace("\\\n", " ").splitlines())
    for line in lines:
        heredoc = re.fullmatch(r"cat > (\S+) <<'EOF'", line.strip())
        if heredoc:
            body = []
            for inner in lines:
                if inner == "EOF":
                    break
                body.append(inner)
            steps.append(("write", (heredoc.group(1), "\n".join(body) + "\n")))
        elif line.strip():
            steps.append(("run", shlex.split(line)))
    return steps


def test_readme_own_data_section_runs_end_to_end(tmp_path, monkeypatch):
    """The snippet's steps run as written, in this process: the CSV is written, ``par-prompt
    convert`` converts it, and the training command trains, with a tiny local backbone
    appended in place of the Hub one, for one short epoch."""
    from accelerate.state import AcceleratorState, GradientState

    from par_prompt.cli import main as par_prompt
    from par_prompt.tiny_backbones import write_tiny_backbones

    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- snippet: own-data -->\s*```bash\n(.*?)```", readme, re.S)
    assert match, "README has no bash block after '<!-- snippet: own-data -->'"
    steps = _snippet_commands(match.group(1))
    assert [kind for kind, _ in steps] == ["write", "run", "run"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    (name, text), convert_argv, train_argv = steps[0][1], steps[1][1], steps[2][1]
    Path(name).write_text(text)
    rows = [line.split(",") for line in text.splitlines()]
    photos(tmp_path / "photos", [row[0] for row in rows[1:]])
    assert convert_argv[0] == "par-prompt" and par_prompt(convert_argv[1:]) == 0
    data = load(tmp_path / "data" / "mine")
    assert data.attributes == rows[0][1:-1]
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 6, "validation": 2, "test": 2}

    assert train_argv[:2] == ["par-prompt", "train"]
    words = {w for s in data.sentences for w in re.findall(r"[a-z]+", s.lower())}
    tiny = write_tiny_backbones(tmp_path / "backbones", image_size=32, patch_size=8, vision_layers=1, text_layers=1,
                                fusion_width=32, extra_words=sorted(words))
    ours = {"--clip": str(tiny.clip), "--fusion": str(tiny.vit), "--prompts-per-group": "1", "--text-prompts": "1",
            "--epochs": "1", "--warmup-epochs": "0", "--batch-size": "2", "--eval-batch-size": "4",
            "--num-workers": "0", "--report-to": "jsonl"}
    argv = list(train_argv[1:])
    for option, value in ours.items():  # replace the README's value (an option may be given only once)
        if option in argv:
            argv[argv.index(option) + 1] = value
        else:
            argv += [option, value]
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    try:
        assert par_prompt(argv) == 0
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    assert (tmp_path / "runs" / "mine" / "best" / "config.json").is_file()
