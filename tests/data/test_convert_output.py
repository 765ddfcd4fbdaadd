"""Where conversion writes: inputs and foreign directories are never replaced (issue #11.2)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from par_prompt.data import ParDataError, convert, load, make_synthetic, save
from par_prompt.data.output import clean_stale_partials

from . import builders


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its content (to prove nothing changed)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def run_cli(argv: list[str]) -> int:
    from par_prompt.cli import main

    return main(argv)


@pytest.fixture
def pa100k(tmp_path):
    builders.make_pa100k(tmp_path / "raw" / "PA100k")
    return tmp_path / "raw" / "PA100k"


@pytest.mark.parametrize("where", ["src", "parent", "grandparent", "link_to_src", "link_to_parent"])
def test_overwrite_never_replaces_the_input(tmp_path, pa100k, capsys, where):
    if where.startswith("link"):
        target = pa100k if where == "link_to_src" else pa100k.parent
        out = tmp_path / "link"
        out.symlink_to(target, target_is_directory=True)
    else:
        out = {"src": pa100k, "parent": pa100k.parent, "grandparent": tmp_path}[where]
    before = tree(pa100k)
    with pytest.raises(ParDataError, match="input"):
        convert("pa100k", pa100k, out, overwrite=True)
    assert run_cli(["convert", "pa100k", "--src", str(pa100k), "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("par-prompt convert: error:") and "\n" not in err and "input" in err
    assert tree(pa100k) == before


def test_the_image_folder_and_csv_are_inputs_too(tmp_path):
    images = tmp_path / "photos"
    builders.write_image(images / "a.png")
    table = tmp_path / "tables" / "labels.csv"
    table.parent.mkdir()
    table.write_text("image,hat\na.png,1\n")
    for out in (images, tmp_path, table.parent):
        with pytest.raises(ParDataError, match="input"):
            convert("csv", table, out, overwrite=True, images=images)
    assert (images / "a.png").is_file() and table.is_file()


def test_a_foreign_directory_is_never_replaced(tmp_path, pa100k, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    (out / "photos").mkdir()
    for overwrite in (False, True):
        with pytest.raises(ParDataError, match="notes.txt|no dataset_dict.json"):
            convert("pa100k", pa100k, out, overwrite=overwrite)
    assert run_cli(["convert", "pa100k", "--src", str(pa100k), "--out", str(out), "--overwrite"]) == 2
    assert "not a data set written by par-prompt" in capsys.readouterr().err
    assert tree(out) == {"notes.txt": b"my notes"} and (out / "photos").is_dir()


def test_a_conversion_with_something_added_is_not_replaced(tmp_path, pa100k):
    out = tmp_path / "out"
    convert("pa100k", pa100k, out)
    (out / "train" / "my_notes.txt").write_text("keep")
    with pytest.raises(ParDataError, match="train/my_notes.txt"):
        convert("pa100k", pa100k, out, overwrite=True)
    assert (out / "train" / "my_notes.txt").read_text() == "keep"


def test_a_plain_datasets_folder_is_not_replaced(tmp_path, pa100k):
    import datasets

    out = tmp_path / "other"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"x": [1, 2]})}).save_to_disk(str(out))
    before = tree(out)
    with pytest.raises(ParDataError, match="metadata"):
        convert("pa100k", pa100k, out, overwrite=True)
    assert tree(out) == before


def test_an_empty_directory_is_used(tmp_path, pa100k):
    out = tmp_path / "empty"
    out.mkdir()
    convert("pa100k", pa100k, out)
    assert (out / "dataset_dict.json").is_file()


def test_an_earlier_conversion_survives_a_failed_replacement(tmp_path, pa100k):
    out = tmp_path / "out"
    convert("pa100k", pa100k, out)
    before = tree(out)
    builders.corrupt_file(next((pa100k / "data").glob("*.jpg")))
    with pytest.raises(ParDataError, match="cannot read image"):
        convert("pa100k", pa100k, out, overwrite=True)
    assert tree(out) == before and len(load(out)["train"]) == 6
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_out_that_is_a_file_or_unwritable(tmp_path, pa100k, capsys):
    file = tmp_path / "out.txt"
    file.write_text("not a folder")
    for out in (file, file / "sub"):
        assert run_cli(["convert", "pa100k", "--src", str(pa100k), "--out", str(out), "--overwrite"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "not a directory" in err and "Traceback" not in err
    assert file.read_text() == "not a folder"
    # /proc refuses new directories even to root: an unwritable place on any Linux machine
    assert run_cli(["convert", "pa100k", "--src", str(pa100k), "--out", "/proc/par-prompt-test/out"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not writable" in err


def test_the_output_is_checked_before_the_input_is_read(tmp_path, monkeypatch):
    """A bad --out is reported at once, not after reading (and decoding) the whole data set."""
    builders.make_pa100k(tmp_path / "src")
    from par_prompt.data import pa100k as reader

    calls = []
    monkeypatch.setattr(reader, "read_pa100k", lambda *a, **k: calls.append(a))
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(ParDataError):
        convert("pa100k", tmp_path / "src", file)
    assert calls == []


# --------------------------------------------------------------- partial output of killed runs


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _partial(out: Path, pid: int, suffix: str = "abc123") -> Path:
    """A temporary named as ``fileio.atomic_directory`` names them, for process ``pid``."""
    from par_prompt.fileio import partial_prefix

    name = partial_prefix(out.name).replace(f"-{os.getpid()}-", f"-{pid}-") + suffix
    partial = out.parent / name
    (partial / "output").mkdir(parents=True)
    (partial / "output" / "half.arrow").write_bytes(b"half")
    return partial


def test_partials_of_killed_runs_are_removed_on_the_next_run(tmp_path, pa100k):
    out = tmp_path / "out"
    dead = _partial(out, _dead_pid())
    running = _partial(out, os.getpid())
    convert("pa100k", pa100k, out)
    assert not dead.exists() and running.exists()
    assert (out / "dataset_dict.json").is_file()


def test_a_run_killed_during_the_swap_gets_its_data_back(tmp_path, pa100k):
    out = tmp_path / "out"
    convert("pa100k", pa100k, out)
    before = tree(out)
    partial = _partial(out, _dead_pid())
    out.rename(partial / "previous")  # killed between the two renames of the swap
    with pytest.raises(FileExistsError):  # the earlier conversion is back, and protected
        convert("pa100k", pa100k, out)
    assert tree(out) == before and not partial.exists()
    clean_stale_partials(out)  # nothing to do now
    assert tree(out) == before


# ------------------------------------------------------------------------------ ParData.save


def test_save_follows_the_same_rules(tmp_path):
    data = load(make_synthetic(6, 3, 3, seed=0))
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    with pytest.raises(ParDataError, match="not a data set written by par-prompt"):
        save(data, folder, overwrite=True)
    assert (folder / "keep.txt").read_text() == "x"
    save(data, tmp_path / "ds")
    again = load(tmp_path / "ds")
    again.save(tmp_path / "ds", overwrite=True)  # over itself: the new copy is complete first
    assert len(load(tmp_path / "ds")["train"]) == 6


def test_save_refuses_split_names_that_are_paths(tmp_path):
    import datasets

    data = load(make_synthetic(6, 3, 3, seed=0))
    bad = datasets.DatasetDict({"../escape": data["train"], "test": data["test"]})
    with pytest.raises(ParDataError, match="plain name"):
        save(load(bad, attributes=data.attributes, sentences=data.sentences), tmp_path / "ds")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "ds").exists()


def test_cli_parser_accepts_the_new_options():
    from par_prompt.data.cli import register

    parser = argparse.ArgumentParser(prog="par-prompt")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["convert", "CSV", "--src", "a.csv", "--out", "o", "--images", "i",
                              "--sentences", "s.txt", "--seed", "3"])
    assert (args.images, args.sentences, args.seed) == ("i", "s.txt", 3)
