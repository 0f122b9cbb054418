"""``trimicro new``: scaffold each template into tmp_path, run its own tests in a subprocess, and serve
the default one with ``python -m NAME`` for ``trimicro call`` to answer (mdns on loopback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import trio

REPO = Path(__file__).resolve().parents[2]


def _env(scaffold: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(scaffold), str(REPO)])
    env.pop("MICRO_REGISTRY", None)
    return env


def _new(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trimicro.cli", "new", *args, "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=_env(tmp_path), check=False,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("template", ["default", "streaming", "pubsub"])
def test_scaffold_passes_its_own_tests(tmp_path: Path, template: str) -> None:
    name = f"svc-{template}"
    done = _new(tmp_path, name, "--template", template)
    assert done.returncode == 0, done.stderr
    root = tmp_path / name
    package = name.replace("-", "_")
    for rel in (
        "pyproject.toml",
        "README.md",
        f"{package}/proto/{package}_micro.py",
        f"{package}/handler.py",
    ):
        assert (root / rel).is_file(), rel
    assert '"trimicro"' in (root / "pyproject.toml").read_text()
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=root, capture_output=True, text=True, timeout=120, env=_env(root), check=False,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout


def test_refuses_bad_names_and_existing_dirs(tmp_path: Path) -> None:
    bad = _new(tmp_path, "9lives")
    assert bad.returncode == 2 and "not a service name" in bad.stderr
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    taken = _new(tmp_path, "taken")
    assert taken.returncode == 1 and "not empty" in taken.stderr
    assert len(taken.stderr.strip().splitlines()) == 1


@pytest.mark.loopback
@pytest.mark.slow
async def test_python_m_name_serves_and_trimicro_call_answers(tmp_path: Path) -> None:
    name = f"scaf{uuid.uuid4().hex[:8]}"
    done = await trio.to_thread.run_sync(_new, tmp_path, name)  # a blocking subprocess: off the loop
    assert done.returncode == 0, done.stderr
    root = tmp_path / name
    env = _env(root)
    Service = name[:1].upper() + name[1:]  # the proto service the template names after NAME
    async with trio.open_nursery() as nursery:
        proc = await nursery.start(
            lambda task_status=trio.TASK_STATUS_IGNORED: trio.run_process(
                [sys.executable, "-m", name, "--registry", "mdns", "--server_address", "127.0.0.1:0"],
                cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                check=False, task_status=task_status,
            )
        )  # fmt: skip
        try:
            with trio.fail_after(60):
                while True:  # the service may still be starting or announcing itself
                    call = await trio.run_process(
                        [sys.executable, "-m", "trimicro.cli", "call", name, f"{Service}.Call",
                         '{"name": "John"}', "--registry", "mdns"],
                        cwd=root, env=env, capture_stdout=True, capture_stderr=True, check=False,
                    )  # fmt: skip
                    if call.returncode == 0:
                        break
                    assert b"not found" in call.stderr or b"404" in call.stderr, call.stderr
                    await trio.sleep(0.3)  # polling another process: nothing to wait on
            assert json.loads(call.stdout) == {"msg": "Hello John"}
        finally:
            proc.terminate()
