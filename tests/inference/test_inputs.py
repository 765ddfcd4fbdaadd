"""Inputs of ``predict``: folders, @lists, non-regular files; the expansion itself and
the command end to end."""

from __future__ import annotations

import json
import os
import shutil
import threading

import pytest

from par_prompt.cli import main
from par_prompt.inference import ImageInputError
from par_prompt.inference.inputs import IMAGE_EXTENSIONS, InputListError, expand_inputs

from .conftest import random_image


def call_with_timeout(function, seconds: float = 30):
    """``function()``'s result; fails (instead of hanging the suite) if it blocks."""
    outcome = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture
def folder(tmp_path):
    """b.png, a.JPG, c.jpeg, notes.txt, .hidden.png, sub/d.png, sub/.e/f.png, sub/g.bmp"""
    root = tmp_path / "photos"
    (root / "sub" / ".e").mkdir(parents=True)
    for name, seed in (("b.png", 1), ("a.JPG", 2), ("c.jpeg", 3), (".hidden.png", 4), ("sub/d.png", 5),
                       ("sub/.e/f.png", 6), ("sub/g.bmp", 7)):
        random_image(seed=seed).save(root / name, format="JPEG" if name.lower().endswith(("jpg", "jpeg")) else None)
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_is_sorted_non_recursive_and_skips_hidden_and_other_files(folder):
    assert expand_inputs([str(folder)]) == [str(folder / n) for n in ("a.JPG", "b.png", "c.jpeg")]
    assert expand_inputs([str(folder)], recursive=True) == [
        str(folder / n) for n in ("a.JPG", "b.png", "c.jpeg", "sub/d.png", "sub/g.bmp")]
    assert ".png" in IMAGE_EXTENSIONS and ".jpg" in IMAGE_EXTENSIONS


def test_linked_folders_are_not_followed(folder):
    os.symlink(folder, folder / "sub" / "loop")  # a cycle: photos/sub/loop -> photos
    assert len(call_with_timeout(lambda: expand_inputs([str(folder)], recursive=True))) == 5


def test_folder_without_images_is_an_argument_error(tmp_path, folder):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputListError, match="holds no image files.*--recursive"):
        expand_inputs([str(tmp_path / "empty")])
    shutil.rmtree(folder / "sub" / ".e")
    for name in ("a.JPG", "b.png", "c.jpeg"):
        (folder / name).unlink()
    with pytest.raises(InputListError, match="--recursive"):
        expand_inputs([str(folder)])
    assert expand_inputs([str(folder)], recursive=True) == [str(folder / "sub/d.png"), str(folder / "sub/g.bmp")]


def test_list_file_resolves_against_its_folder(tmp_path, folder, monkeypatch):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "images.txt").write_text(
        "# my selection\n\n../photos/b.png\n  ../photos/a.JPG  \n" + f"{folder / 'c.jpeg'}\n# done\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative entries must not depend on the current directory
    entries = expand_inputs([f"@{lists / 'images.txt'}"])
    assert [os.path.realpath(e) for e in entries] == [str(folder / "b.png"), str(folder / "a.JPG"),
                                                      str(folder / "c.jpeg")]


@pytest.mark.parametrize(("content", "words"), [
    (None, "does not exist"), ("", "names no image"), ("# only a comment\n\n", "names no image"),
    (b"\xff\xfe\x00bad", "not UTF-8"),
])
def test_bad_list_files(tmp_path, content, words):
    path = tmp_path / "list.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(InputListError, match=words):
        expand_inputs([f"@{path}"])


def test_list_file_that_is_a_fifo_does_not_block(tmp_path):
    fifo = tmp_path / "list.txt"
    os.mkfifo(fifo)
    with pytest.raises(InputListError, match="not a regular file"):
        call_with_timeout(lambda: expand_inputs([f"@{fifo}"]))


# --------------------------------------------------------------------- non-regular files


def test_fifo_input_is_refused_without_blocking(predictor, tmp_path, image_files):
    fifo = tmp_path / "frame.png"
    os.mkfifo(fifo)
    inputs = [image_files["rgb"], fifo, {"path": str(fifo)}]
    results = call_with_timeout(lambda: predictor.predict(inputs, return_errors=True))
    assert type(results[0]).__name__ == "AttributePrediction"
    for result in results[1:]:
        assert isinstance(result, ImageInputError) and "FIFO" in result.reason
    with pytest.raises(ImageInputError, match=r"input 0 .*FIFO"):
        call_with_timeout(lambda: predictor.predict([fifo]))


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs a character device")
def test_device_input_is_refused(predictor):
    (result,) = call_with_timeout(lambda: predictor.predict(["/dev/zero"], return_errors=True))
    assert isinstance(result, ImageInputError) and "device" in result.reason


def test_fifo_inside_a_folder_is_one_failed_input(capsys, model_dir, folder, no_progress_bars):
    os.mkfifo(folder / "0-pipe.png")
    code = call_with_timeout(lambda: main(["predict", "--model", str(model_dir), str(folder), "--format", "jsonl"]))
    captured = capsys.readouterr()
    assert code == 1
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["source"] for r in records] == [str(folder / n) for n in ("0-pipe.png", "a.JPG", "b.png", "c.jpeg")]
    assert "FIFO" in records[0]["error"] and all("probabilities" in r for r in records[1:])
    assert "0-pipe.png" in captured.err and "FIFO" in captured.err
