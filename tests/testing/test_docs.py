"""docs/testing.md's first example, run as written: extracted, written to a file, run by pytest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ten_line_example_passes(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "testing.md").read_text()
    snippet = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    assert len([line for line in snippet.splitlines() if line.strip()]) <= 10
    (tmp_path / "test_snippet.py").write_text(snippet)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "trio_mode=true",
         str(tmp_path / "test_snippet.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
