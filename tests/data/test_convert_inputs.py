"""Bad or hostile data files: nothing escapes the named folders, every error is one clear line.

Issue #11 items 3 (split names), 4 (image names), 14 (WIDER labels, zero-shot overlap),
15 (RAPv1 / PETA partitions by position) and 19 (bad files on the command line).
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from par_prompt.data import ParDataError, convert, load

from . import builders
from .test_converters import stored


def run_cli(argv: list[str]) -> tuple[int, str]:
    """(exit code, stderr) of ``par-prompt ARGV`` run in-process."""
    import contextlib
    import io

    from par_prompt.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


def assert_one_line(code: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("par-prompt convert: error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def easydict(monkeypatch):
    monkeypatch.setitem(sys.modules, "easydict", builders.fake_easydict_module())


def write_zero_shot(root: Path, edit=None) -> builders.Expected:
    """A peta_zs split file (``edit(blob)`` may change it) with its images."""
    blob, expected = builders.zero_shot_blob("peta_zs")
    names = list(blob.image_name)
    if edit is not None:
        edit(blob)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_zs_run0.pkl").write_bytes(pickle.dumps(blob, protocol=4))
    for name in names:
        builders.write_image(root / "images" / name)
    return expected


# ------------------------------------------------------------------------ #11.3 split names


@pytest.mark.parametrize("key", ["../escaped", "ABSOLUTE", "a/b", "..", "", "x y"])
def test_split_names_from_a_pickle_must_be_plain(tmp_path, easydict, key):
    if key == "ABSOLUTE":
        key = str(tmp_path / "absolute_split")
    write_zero_shot(tmp_path / "src", lambda blob: blob.partition.__setitem__(key, np.arange(3)))
    out = tmp_path / "work" / "out"
    with pytest.raises(ParDataError, match="plain name"):
        convert("peta_zs", tmp_path / "src", out)
    assert not (tmp_path / "work").exists() and not (tmp_path / "escaped").exists()
    assert not (tmp_path / "absolute_split").exists()


def test_a_plain_extra_split_is_kept(tmp_path, easydict):
    write_zero_shot(tmp_path / "src", lambda blob: blob.partition.__setitem__("query_2", np.arange(3)))
    data = load(convert("peta_zs", tmp_path / "src", tmp_path / "out"))
    assert list(data.splits) == ["train", "validation", "test", "query_2"]


def test_split_column_of_a_csv_must_be_plain(tmp_path):
    builders.write_image(tmp_path / "img" / "a.png")
    table = tmp_path / "labels.csv"
    table.write_text("image,hat,split\na.png,1,../evil\n")
    with pytest.raises(ParDataError, match=r"line 2, column 'split'.*plain name"):
        convert("csv", table, tmp_path / "out", images=tmp_path / "img")


# ------------------------------------------------------------------------ #11.4 image names


def _pa100k_with_name(root: Path, name: str) -> builders.Expected:
    """PA100K whose first train image is listed as ``name`` (the file itself is absent)."""
    import scipy.io

    expected = builders.make_pa100k(root)
    mat = scipy.io.loadmat(str(root / "annotation.mat"))
    names = mat["train_images_name"]
    names[0, 0] = np.array([name])
    scipy.io.savemat(str(root / "annotation.mat"), {k: v for k, v in mat.items() if not k.startswith("__")})
    return expected


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlinked_file", "symlinked_folder"])
def test_image_names_must_stay_inside_src(tmp_path, capsys, kind):
    secret = tmp_path / "elsewhere" / "secret.jpg"
    builders.write_image(secret)
    src = tmp_path / "downloads" / "PA100k"
    if kind == "dotdot":
        name = "../../../elsewhere/secret.jpg"
    elif kind == "absolute":
        name = str(secret)
    elif kind == "symlinked_file":
        name = "leak.jpg"
    else:
        name = "sub/secret.jpg"
    _pa100k_with_name(src, name)
    if kind == "symlinked_file":
        (src / "data" / "leak.jpg").symlink_to(secret)
    if kind == "symlinked_folder":
        (src / "data" / "sub").symlink_to(secret.parent, target_is_directory=True)
    out = tmp_path / "out"
    with pytest.raises(ParDataError, match="outside the image folder") as info:
        convert("pa100k", src, out)
    assert name in str(info.value) and str(secret.parent) in str(info.value)
    code, err = run_cli(["convert", "pa100k", "--src", str(src), "--out", str(out)])
    assert_one_line(code, err, "outside the image folder", name)
    assert not out.exists()


def test_images_elsewhere_are_fine_when_their_folder_is_named(tmp_path):
    """A data folder that is a symbolic link to a big disk: name it with --images."""
    src = tmp_path / "PA100k"
    expected = builders.make_pa100k(src)
    real = tmp_path / "bigdisk" / "pa100k_images"
    real.parent.mkdir()
    (src / "data").rename(real)
    (src / "data").symlink_to(real, target_is_directory=True)
    with pytest.raises(ParDataError, match="--images"):
        convert("pa100k", src, tmp_path / "out")
    convert("pa100k", src, tmp_path / "out", images=real)
    assert stored(load(tmp_path / "out").splits, "train")[0] == expected.splits["train"]


def test_wider_file_names_cannot_climb_out(tmp_path):
    builders.make_wider(tmp_path / "src")
    path = tmp_path / "src" / "wider_attribute_test.json"
    path.write_text(path.read_text().replace('"test/2--Demonstration/', '"test/../../../../etc/'))
    with pytest.raises(ParDataError, match="outside the image folder"):
        convert("wider", tmp_path / "src", tmp_path / "out")


# ------------------------------------------------------------------- #11.14 WIDER labels


def _wider_with(tmp_path: Path, edit) -> Path:
    builders.make_wider(tmp_path / "src")
    path = tmp_path / "src" / "wider_attribute_trainval.json"
    blob = json.loads(path.read_text())
    edit(blob)
    path.write_text(json.dumps(blob))
    return tmp_path / "src"


@pytest.mark.parametrize("value", [0.5, 1.0, True, False, "1", None, 2, -2, [1]])
def test_wider_labels_must_be_exactly_1_minus1_or_0(tmp_path, value):
    src = _wider_with(tmp_path, lambda blob: blob["images"][1]["targets"][0]["attribute"].__setitem__(3, value))
    with pytest.raises(ParDataError) as info:
        convert("wider", src, tmp_path / "out")
    message = str(info.value)
    assert "images[1].targets[0]" in message and "attribute[3]" in message
    assert "1_Handshaking_1_2.jpg" in message and "wider_attribute_trainval.json" in message
    code, err = run_cli(["convert", "wider", "--src", str(src), "--out", str(tmp_path / "out")])
    assert_one_line(code, err, "attribute[3]")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "edit,needle",
    [
        (lambda b: b.__setitem__("images", {"a": 1}), "images should be a list"),
        (lambda b: b["images"].__setitem__(0, ["x"]), "images[0] should be an object"),
        (lambda b: b["images"][0].__setitem__("file_name", 7), "file_name should be a string"),
        (lambda b: b["images"][0].__setitem__("targets", "none"), "targets should be a list"),
        (lambda b: b["images"][0]["targets"].__setitem__(0, 3), "should be an object"),
        (lambda b: b["images"][0]["targets"][0].__setitem__("attribute", "1,1"), "attribute should be a list"),
        (lambda b: b["images"][0]["targets"][0].__setitem__("bbox", ["1", 2, 3, 4]), "bbox should be"),
        (lambda b: b["images"][0]["targets"][0].__setitem__("bbox", [1, 2, 3]), "bbox should be"),
        (lambda b: b.__setitem__("attribute_id_map", [1, 2]), "attribute_id_map should be an object"),
        (lambda b: b["attribute_id_map"].__setitem__("0", 5), "attribute_id_map should map"),
    ],
)
def test_wider_fields_of_the_wrong_json_type(tmp_path, edit, needle):
    src = _wider_with(tmp_path, edit)
    code, err = run_cli(["convert", "wider", "--src", str(src), "--out", str(tmp_path / "out")])
    assert_one_line(code, err, needle, "wider_attribute_trainval.json")


# ----------------------------------------------------------- #11.14 zero-shot overlap


@pytest.mark.parametrize("leak", ["row", "file"])
def test_zero_shot_train_and_test_must_not_overlap(tmp_path, easydict, leak):
    def edit(blob):
        train, test = blob.partition.train, blob.partition.test
        if leak == "row":
            blob.partition.test = np.concatenate([test, train[:1]])
        else:  # the same image file under another row
            blob.image_name[int(test[0])] = blob.image_name[int(train[0])]

    write_zero_shot(tmp_path / "src", edit)
    with pytest.raises(ParDataError, match="both the 'train' and the 'test' split"):
        convert("peta_zs", tmp_path / "src", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_validation_overlapping_train_is_an_error_too(tmp_path, easydict):
    write_zero_shot(
        tmp_path / "src",
        lambda blob: setattr(blob.partition, "val", np.concatenate([blob.partition.val, blob.partition.train[:2]])),
    )
    with pytest.raises(ParDataError, match="'train' and the 'validation'"):
        convert("peta_zs", tmp_path / "src", tmp_path / "out")


# ------------------------------------------------------- #11.15 partitions by position


def test_rapv1_partitions_are_read_by_position(tmp_path):
    attributes, labels, names, chosen = builders.make_rapv1(tmp_path / "src", partition_fields=("trn", "tst"))
    data = load(convert("rapv1", tmp_path / "src", tmp_path / "out", partition=1))
    train, test = chosen[1]
    assert stored(data.splits, "test")[0] == [names[i] for i in test]
    assert set(stored(data.splits, "train")[0]) | set(stored(data.splits, "validation")[0]) == {
        names[i] for i in train
    }


def test_rapv1_known_names_win_over_position(tmp_path):
    # the file lists test first: by name it is still read right
    attributes, labels, names, chosen = builders.make_rapv1(
        tmp_path / "src", partition_fields=("train_index", "test_index")
    )
    import scipy.io

    path = tmp_path / "src" / "RAP_annotation" / "RAP_annotation.mat"
    mat = scipy.io.loadmat(str(path), squeeze_me=False, struct_as_record=True)
    rap = mat["RAP_annotation"][0, 0]
    parts = rap["partion"]
    for p in range(parts.shape[0]):
        old = parts[p, 0][0, 0]
        parts[p, 0] = {"test_index": old["test_index"], "train_index": old["train_index"]}
    content = {name: rap[name] for name in rap.dtype.names}
    content["partion"] = parts
    scipy.io.savemat(str(path), {"RAP_annotation": content})
    data = load(convert("rapv1", tmp_path / "src", tmp_path / "out"))
    assert stored(data.splits, "test")[0] == [names[i] for i in chosen[0][1]]


def test_rapv1_partition_with_the_wrong_field_count(tmp_path):
    builders.make_rapv1(tmp_path / "src", partition_fields=("a", "b", "c"))
    with pytest.raises(ParDataError, match=r"should hold 2 index vectors \(train, test"):
        convert("rapv1", tmp_path / "src", tmp_path / "out")


def test_rapv1_top_level_fields_by_position(tmp_path):
    attributes, labels, names, chosen = builders.make_rapv1(
        tmp_path / "src", rename={"partion": "p", "label": "l", "attribute_eng": "ae", "imagesname": "n"}
    )
    data = load(convert("rapv1", tmp_path / "src", tmp_path / "out"))
    assert data.attributes == attributes
    assert stored(data.splits, "test")[0] == [names[i] for i in chosen[0][1]]


def test_peta_partitions_are_read_by_position(tmp_path):
    import scipy.io

    expected = builders.make_peta(tmp_path / "src")
    path = tmp_path / "src" / "PETA.mat"
    mat = scipy.io.loadmat(str(path), squeeze_me=False, struct_as_record=True)
    peta = mat["peta"][0, 0]
    parts = peta["partion_attribute"]
    for p in range(parts.shape[0]):
        old = parts[p, 0][0, 0]
        parts[p, 0] = {"trn": old["train"], "vl": old["val"], "tst": old["test"]}
    content = {name: peta[name] for name in peta.dtype.names}
    content["partion_attribute"] = parts
    scipy.io.savemat(str(path), {"peta": content})
    data = load(convert("peta", tmp_path / "src", tmp_path / "out", partition=2))
    for split in ("train", "validation", "test"):
        assert stored(data.splits, split)[0] == expected[2].splits[split]


# ---------------------------------------------------------- #11.19 bad files, one line


@pytest.mark.parametrize(
    "content,needle",
    [
        (b"", "annotation.mat"),
        (b"MATLAB 5.0 MAT-file" + b" " * 97 + b"\x00\x01IM", "annotation.mat"),
        (b"\x00" * 300, "annotation.mat"),
        (b"garbage that is not a mat file at all" * 10, "annotation.mat"),
    ],
)
def test_empty_or_malformed_mat_is_one_line(tmp_path, content, needle):
    src = tmp_path / "src"
    builders.make_pa100k(src)
    (src / "annotation.mat").write_bytes(content)
    code, err = run_cli(["convert", "pa100k", "--src", str(src), "--out", str(tmp_path / "out")])
    assert_one_line(code, err, needle)


def test_truncated_mat_is_one_line(tmp_path):
    src = tmp_path / "src"
    builders.make_pa100k(src)
    data = (src / "annotation.mat").read_bytes()
    (src / "annotation.mat").write_bytes(data[: len(data) // 2])
    code, err = run_cli(["convert", "pa100k", "--src", str(src), "--out", str(tmp_path / "out")])
    assert_one_line(code, err, "annotation.mat")


def test_refused_and_broken_pickles_are_one_line(tmp_path, easydict):
    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    src = tmp_path / "src"
    src.mkdir()
    (src / "dataset_zs_run0.pkl").write_bytes(pickle.dumps({"image_name": Payload()}))
    code, err = run_cli(["convert", "peta_zs", "--src", str(src), "--out", str(tmp_path / "out")])
    assert_one_line(code, err, "refused", "dataset_zs_run0.pkl")
    write_zero_shot(src)
    data = (src / "dataset_zs_run0.pkl").read_bytes()
    for broken in (data[: len(data) // 2], b"", b"not a pickle"):
        (src / "dataset_zs_run0.pkl").write_bytes(broken)
        code, err = run_cli(["convert", "peta_zs", "--src", str(src), "--out", str(tmp_path / "out")])
        assert_one_line(code, err, "dataset_zs_run0.pkl")
    (src / "dataset_zs_run0.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    code, err = run_cli(["convert", "peta_zs", "--src", str(src), "--out", str(tmp_path / "out")])
    assert_one_line(code, err, "dataset_zs_run0.pkl", "dict-like")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")
def test_fifos_in_place_of_input_files_never_block(tmp_path, easydict):
    src = tmp_path / "src"
    builders.make_pa100k(src)
    image = next((src / "data").glob("*.jpg"))
    image.unlink()
    os.mkfifo(image)
    code, err = run_cli(["convert", "pa100k", "--src", str(src), "--out", str(tmp_path / "out")])
    assert_one_line(code, err, "FIFO", image.name)
    code, err = run_cli(["convert", "pa100k", "--src", str(src), "--out", str(tmp_path / "out"), "--skip-corrupt"])
    assert code == 0 and len(load(tmp_path / "out")["train"]) == 5
    (src / "annotation.mat").unlink()
    os.mkfifo(src / "annotation.mat")
    code, err = run_cli(["convert", "pa100k", "--src", str(src), "--out", str(tmp_path / "out2")])
    assert_one_line(code, err, "FIFO", "annotation.mat")
    zs = tmp_path / "zs"
    zs.mkdir()
    os.mkfifo(zs / "dataset_zs_run0.pkl")
    code, err = run_cli(["convert", "peta_zs", "--src", str(zs), "--out", str(tmp_path / "out3")])
    assert_one_line(code, err, "FIFO")


def test_dataset_names_are_case_insensitive(tmp_path):
    builders.make_pa100k(tmp_path / "src")
    code, err = run_cli(["convert", "PA100K", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "out")])
    assert code == 0, err
    assert load(tmp_path / "out").name == "pa100k"
    code, err = run_cli(["convert", "Market-1501", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "o")])
    assert_one_line(code, err, "unknown dataset", "pa100k")


# ------------------------------------------------------------ #11.8 EXIF in conversion


def test_wider_crops_are_cut_from_the_stored_pixels_and_turned_upright(tmp_path):
    """The box is in the stored pixels' frame (as every annotation script reads them); the
    crop then gets the photo's EXIF orientation, like every image read for the model."""
    import io

    from datasets import Image as ImageFeature
    from PIL import Image

    expected, _ = builders.make_wider(tmp_path / "src")
    photo = tmp_path / "src" / "Image" / "train" / "1--Handshaking" / "1_Handshaking_1_2.jpg"
    stored_pixels = Image.new("RGB", (80, 60), (0, 0, 250))
    stored_pixels.paste((250, 0, 0), (0, 0, 40, 60))  # left half red in the stored frame
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed turned by 90 degrees
    stored_pixels.save(photo, quality=100, exif=exif)
    path = tmp_path / "src" / "wider_attribute_trainval.json"
    blob = json.loads(path.read_text())
    blob["images"][1]["targets"][0]["bbox"] = [0, 0, 40, 60]
    path.write_text(json.dumps(blob))
    result = convert("wider", tmp_path / "src", tmp_path / "out")
    raw = result["train"].cast_column("image", ImageFeature(decode=False))
    crop = next(Image.open(io.BytesIO(r["bytes"])) for r in raw["image"] if r["path"] == "1_Handshaking_1_2.jpg#0")
    assert crop.size == (60, 40)  # upright: the 40×60 stored box turned by 90 degrees
    red = np.asarray(crop.convert("RGB"), dtype=int)[..., 0]
    assert red.mean() > 200  # all of it from the red half


@pytest.mark.parametrize(
    "field,value",
    [("label", [[1, 0], [1]]), ("label_idx", {"eval": None}), ("label_idx", {"eval": 7}),
     ("label_idx", {"eval": [[1, 2], [3]]}), ("image_name", "00001.png"), ("attr_name", None)],
)
def test_malformed_pickle_fields_are_one_error_naming_them(tmp_path, easydict, field, value):
    write_zero_shot(tmp_path / "src", lambda blob: setattr(blob, field, value))
    with pytest.raises(ParDataError, match=field.split("_idx")[0]):
        convert("peta_zs", tmp_path / "src", tmp_path / "out")


def test_peta_selected_attribute_of_strings(tmp_path):
    import scipy.io

    builders.make_peta(tmp_path / "src")
    path = tmp_path / "src" / "PETA.mat"
    peta = scipy.io.loadmat(str(path), squeeze_me=False, struct_as_record=True)["peta"][0, 0]
    content = {name: peta[name] for name in peta.dtype.names}
    content["selected_attribute"] = np.array(["five"])
    scipy.io.savemat(str(path), {"peta": content})
    with pytest.raises(ParDataError, match="selected_attribute should hold numbers"):
        convert("peta", tmp_path / "src", tmp_path / "out")
