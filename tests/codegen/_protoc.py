"""Running protoc (grpc_tools' or the system one) with protoc-gen-trimicro, for the codegen tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
REPO = HERE.parent.parent
PROTOS = HERE / "protos"
EXPECTED = HERE / "expected"
BAD = HERE / "bad"
SYSTEM_PROTOC = "/usr/bin/protoc"

#: every golden input, relative to PROTOS (the -I root)
GOLDEN = sorted(p.relative_to(PROTOS).as_posix() for p in PROTOS.rglob("*.proto"))

REGEN = os.environ.get("TRIMICRO_REGEN_GOLDEN") == "1"


def plugin_script(directory: Path) -> Path:
    """An executable that runs this checkout's plugin, so tests never depend on what is installed."""
    path = directory / "protoc-gen-trimicro"
    path.write_text(
        f'#!/bin/sh\nPYTHONPATH="{REPO}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" -m trimicro.codegen "$@"\n'
    )
    path.chmod(0o755)
    return path


def grpc_tools_protoc(
    *args: str | os.PathLike[str], cwd: Path, plugin: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m grpc_tools.protoc ...``; with ``plugin`` the plugin is passed explicitly, else PATH."""
    cmd = [sys.executable, "-m", "grpc_tools.protoc"]
    if plugin is not None:
        cmd.append(f"--plugin=protoc-gen-trimicro={plugin}")
    cmd += [str(a) for a in args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def system_protoc(*args: str | os.PathLike[str], cwd: Path, plugin: Path) -> subprocess.CompletedProcess[str]:
    cmd = [SYSTEM_PROTOC, f"--plugin=protoc-gen-trimicro={plugin}", *(str(a) for a in args)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def has_system_protoc() -> bool:
    return shutil.which(SYSTEM_PROTOC) is not None


def micro_outputs(root: Path, suffix: str = "") -> dict[str, str]:
    """``relative path -> text`` of every ``*_micro.py`` (plus ``suffix``) under ``root``."""
    return {
        p.relative_to(root).as_posix().removesuffix(suffix): p.read_text()
        for p in sorted(root.rglob("*_micro.py" + suffix))
    }
