from __future__ import annotations

from pathlib import Path

import pytest

from ._protoc import GOLDEN, PROTOS, grpc_tools_protoc, plugin_script


@pytest.fixture(scope="session")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return plugin_script(tmp_path_factory.mktemp("plugin"))


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory, plugin: Path) -> Path:
    """All golden protos compiled once with grpc_tools: ``_pb2.py``, ``_pb2.pyi`` and ``_micro.py``."""
    out = tmp_path_factory.mktemp("generated")
    res = grpc_tools_protoc(
        "-I.",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--trimicro_out={out}",
        *GOLDEN,
        cwd=PROTOS,
        plugin=plugin,
    )
    assert res.returncode == 0, res.stderr
    return out
