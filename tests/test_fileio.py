import json
import stat
from pathlib import Path

import pytest

from par_prompt.fileio import write_json_atomic, write_text_atomic


def test_write_text_atomic_writes_readable_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "card.md"
    assert write_text_atomic(path, "hello\n") == path
    assert path.read_text(encoding="utf-8") == "hello\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.md"]


def test_write_text_atomic_failure_keeps_the_previous_file(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old\n", encoding="utf-8")
    with pytest.raises(TypeError):
        write_text_atomic(path, b"not text")  # fails inside the write, after the temporary exists
    assert path.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_write_json_atomic_round_trips(tmp_path):
    value = {"mA": 0.87, "per_attribute": [1, 2], "name": "hat"}
    path = write_json_atomic(tmp_path / "m.json", value)
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == value and text.endswith("\n")


# ----------------------------------------------------------------- permissions, temporaries
import os
import subprocess
import sys

import torch
from safetensors.torch import save_file

from par_prompt.fileio import (
    atomic_directory,
    partial_prefix,
    publish_files,
    read_safetensors_header,
    staging_directory,
)


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield
    os.umask(previous)


def test_written_files_follow_the_umask(tmp_path, umask_027):
    path = write_text_atomic(tmp_path / "card.md", "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # like open(); not a fixed 0644


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _partial_name(name: str, pid: int) -> str:
    return partial_prefix(name).replace(f"-{os.getpid()}-", f"-{pid}-") + "abc123"


def test_partial_files_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    dead = tmp_path / _partial_name("metrics.json", _dead_pid())
    dead.write_text("half")
    alive = tmp_path / (partial_prefix("metrics.json") + "xyz789")  # this process: still running
    alive.write_text("in progress")
    other = tmp_path / ".notes.txt.partial-elsewhere"  # not ours
    other.write_text("keep")
    write_json_atomic(tmp_path / "metrics.json", {"a": 1})
    assert not dead.exists() and alive.exists() and other.exists()


def test_atomic_directory_removes_partials_of_killed_runs(tmp_path):
    dead = tmp_path / _partial_name("out", _dead_pid())
    (dead / "output").mkdir(parents=True)
    with atomic_directory(tmp_path / "out") as target:
        target.mkdir()
        (target / "a.txt").write_text("a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_directory_keeps_the_old_content_when_the_final_rename_fails(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old data")
    real_rename = Path.rename

    def failing_rename(self, target):
        if self.name == "output":  # the new content moving into place
            raise OSError("disk full")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", failing_rename)
    with pytest.raises(OSError, match="disk full"):
        with atomic_directory(out, overwrite=True) as target:
            target.mkdir()
            (target / "new.txt").write_text("new")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (out / "old.txt").read_text() == "old data"


def test_published_files_get_default_permissions_and_replace_atomically(tmp_path, umask_027):
    out = tmp_path / "model"
    out.mkdir()
    (out / "mine.txt").write_text("user data")
    (out / "w.safetensors").write_text("old")
    with staging_directory(out, "save") as staging:
        save_file({"x": torch.zeros(2)}, str(staging / "w.safetensors"))
        os.chmod(staging / "w.safetensors", 0o600)  # what safetensors and mkstemp create
        (staging / "sub").mkdir()
        (staging / "sub" / "c.json").write_text("{}")
        publish_files(staging, out, ["w.safetensors", "sub/c.json"])
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "mine.txt", "sub", "sub/c.json", "w.safetensors"]
    assert stat.S_IMODE((out / "w.safetensors").stat().st_mode) == 0o640
    assert (out / "mine.txt").read_text() == "user data"


def test_staging_directory_removes_what_it_created_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with staging_directory(tmp_path / "a" / "b", "save"):
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_safetensors_header_without_reading_tensors(tmp_path):
    save_file({"w": torch.zeros(3, 4), "b": torch.zeros(5)}, str(tmp_path / "t.safetensors"), metadata={"k": "v"})
    header = read_safetensors_header(tmp_path / "t.safetensors", "test")
    assert header.shapes == {"w": (3, 4), "b": (5,)} and header.metadata == {"k": "v"}
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.safetensors is corrupt or truncated"):
        read_safetensors_header(tmp_path / "bad.safetensors", "test")
