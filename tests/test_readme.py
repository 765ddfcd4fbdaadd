"""The README's promises: its PEFT snippet runs as written, CI runs its test command."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def snippet(name: str) -> str:
    match = re.search(rf"<!-- snippet: {name} -->\s*```python\n(.*?)```", README, re.S)
    assert match, f"README has no python block after '<!-- snippet: {name} -->'"
    return match.group(1)


def test_peft_snippet_runs_as_written(tmp_path):
    script = tmp_path / "snippet.py"
    script.write_text(snippet("peft"))
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trainable params" in result.stdout
    assert "torch.Size([2, 119, 32])" in result.stdout
    assert "[(0, 4), (3, 8), (7, 12), (11, 15)]" in result.stdout


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n(.*?)```", README, re.S)
    test_command = next(c for c in commands if "pytest" in c).strip().split(" && ")[-1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines(), f"{test_command!r} is not a line of .ci/run"
