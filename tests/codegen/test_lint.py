"""Generated code passes ``ruff check`` and ``mypy --strict`` (against the ``--pyi_out`` stubs).

mypy also checks typed use of the generated API (usage/greeter_usage.py) and that misuse is caught,
so the strictness is not vacuous. One mypy run covers everything (a few seconds with a warm cache).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ._protoc import HERE, REPO

_MYPY_INI = """\
[mypy]
strict = True
python_version = 3.11
explicit_package_bases = True
# trimicro and the pb2 stubs are checked elsewhere (or are protoc's): report only our files
follow_imports = silent
follow_imports_for_stubs = True
"""

_MISUSE = """\
from __future__ import annotations

import trimicro
from cgtest import greeter_pb2 as pb
from cgtest.greeter_micro import GreeterClient, GreeterHandler


class Wrong:
    async def Hello(self, req: pb.Num, ctx: trimicro.Context) -> pb.HelloResponse:
        return pb.HelloResponse()


async def misuse(client: trimicro.Client) -> None:
    impl: GreeterHandler = Wrong()  # E1
    greeter = GreeterClient("greeter", client)
    await greeter.Hello(pb.Num())  # E2
    async with greeter.Sum() as sums:
        await sums.send(pb.HelloRequest())  # E3
        rsp: pb.HelloResponse = await sums.receive()  # E4
    print(impl, rsp)
"""


def _copy(generated: Path, tmp_path: Path) -> list[str]:
    shutil.copytree(generated, tmp_path, dirs_exist_ok=True)
    return sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*_micro.py"))


def test_ruff_clean(generated: Path, tmp_path: Path) -> None:
    files = _copy(generated, tmp_path)
    for config in (["--config", str(REPO / "pyproject.toml")], ["--isolated"]):
        res = subprocess.run(
            [sys.executable, "-m", "ruff", "check", "--no-cache", *config, *files],
            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert res.returncode == 0, res.stdout + res.stderr


def test_mypy_strict(generated: Path, tmp_path: Path) -> None:
    files = _copy(generated, tmp_path)
    shutil.copy(HERE / "usage" / "greeter_usage.py", tmp_path / "greeter_usage.py")
    (tmp_path / "misuse.py").write_text(_MISUSE)
    (tmp_path / "mypy.ini").write_text(_MYPY_INI)
    cache = Path(tempfile.gettempdir()) / "trimicro-codegen-mypy-cache"
    env = {**os.environ, "MYPYPATH": str(REPO)}
    res = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--cache-dir", str(cache),
         *files, "greeter_usage.py", "misuse.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    out = res.stdout + res.stderr
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert not [line for line in errors if "_micro.py:" in line], out
    assert all(line.startswith("misuse.py:") for line in errors), out
    lines = _MISUSE.splitlines()
    flagged = {int(m.group(1)) for line in errors if (m := re.match(r"misuse\.py:(\d+):", line))}
    for tag in ("E1", "E2", "E3", "E4"):
        lineno = next(i for i, text in enumerate(lines, 1) if f"# {tag}" in text)
        assert lineno in flagged, f"mypy missed misuse {tag}:\n{out}"
