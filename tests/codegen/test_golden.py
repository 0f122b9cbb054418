"""Golden tests: the plugin's output for each test .proto, byte for byte.

Set ``TRIMICRO_REGEN_GOLDEN=1`` to rewrite the expected files after an intended change, then review
the diff like any other code change.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ._protoc import (
    EXPECTED,
    GOLDEN,
    PROTOS,
    REGEN,
    grpc_tools_protoc,
    has_system_protoc,
    micro_outputs,
    system_protoc,
)

# Not ``.py``: the repo's ruff would reformat them; test_lint.py lints the real output instead.
GOLDEN_SUFFIX = ".golden"
EXPECTED_ABS = EXPECTED / "absolute"
EXPECTED_REL = EXPECTED / "relative"


def _compare(actual: dict[str, str], expected_root: Path) -> None:
    if REGEN:
        shutil.rmtree(expected_root, ignore_errors=True)
        for rel, text in actual.items():
            path = expected_root / (rel + GOLDEN_SUFFIX)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    expected = micro_outputs(expected_root, GOLDEN_SUFFIX)
    assert sorted(actual) == sorted(expected), "set of generated files changed (TRIMICRO_REGEN_GOLDEN=1)"
    for rel, text in expected.items():
        golden = expected_root / (rel + GOLDEN_SUFFIX)
        assert actual[rel] == text, f"{rel} differs from {golden} (TRIMICRO_REGEN_GOLDEN=1)"


def test_golden_grpc_tools(generated: Path) -> None:
    outputs = micro_outputs(generated)
    # next to the _pb2.py that --python_out wrote, one per file with services
    for rel in outputs:
        assert (generated / rel.replace("_micro.py", "_pb2.py")).exists()
    assert "cgtest/nosvc_micro.py" not in outputs
    assert "cgtest/api/order_service_micro.py" in outputs  # '-' becomes '_' like protoc's python_out
    _compare(outputs, EXPECTED_ABS)


def test_golden_relative_imports(tmp_path: Path, plugin: Path) -> None:
    res = grpc_tools_protoc(
        "-I.",
        "--trimicro_opt=relative_imports",
        f"--trimicro_out={tmp_path}",
        *GOLDEN,
        cwd=PROTOS,
        plugin=plugin,
    )
    assert res.returncode == 0, res.stderr
    _compare(micro_outputs(tmp_path), EXPECTED_REL)


@pytest.mark.skipif(not has_system_protoc(), reason="no /usr/bin/protoc")
def test_system_protoc_same_output(tmp_path: Path, plugin: Path, generated: Path) -> None:
    """Debian's protoc (3.21) hands the plugin the same descriptors: identical output."""
    res = system_protoc("-I.", f"--trimicro_out={tmp_path}", *GOLDEN, cwd=PROTOS, plugin=plugin)
    assert res.returncode == 0, res.stderr
    assert micro_outputs(tmp_path) == micro_outputs(generated)


def test_console_script_on_path(tmp_path: Path, generated: Path) -> None:
    """``python -m grpc_tools.protoc --trimicro_out=.`` finds the installed ``protoc-gen-trimicro``."""
    if shutil.which("protoc-gen-trimicro") is None:
        pytest.skip("protoc-gen-trimicro not installed (pip install -e .)")
    res = grpc_tools_protoc("-I.", f"--trimicro_out={tmp_path}", "cgtest/greeter.proto", cwd=PROTOS)
    assert res.returncode == 0, res.stderr
    assert micro_outputs(tmp_path) == {
        "cgtest/greeter_micro.py": micro_outputs(generated)["cgtest/greeter_micro.py"]
    }


@pytest.mark.parametrize(
    "header",
    ['syntax = "proto2";', 'edition = "2023";'],
)
def test_proto2_and_editions(tmp_path: Path, plugin: Path, header: str) -> None:
    """Only services matter to the plugin, so every syntax protoc accepts works."""
    fields = "optional string x = 1;" if "proto2" in header else "string x = 1;"
    (tmp_path / "syn.proto").write_text(
        f"{header}\npackage syn;\nmessage A {{ {fields} }}\nservice S {{ rpc Do(A) returns (A); }}\n"
    )
    res = grpc_tools_protoc(
        "-I.", "--python_out=.", "--trimicro_out=.", "syn.proto", cwd=tmp_path, plugin=plugin
    )
    assert res.returncode == 0, res.stderr
    assert "register_s_handler" in (tmp_path / "syn_micro.py").read_text()
