import json
import stat

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
