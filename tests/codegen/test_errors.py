"""Failures reach the user the protoc way: a message naming the file, a non-zero exit, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2

from trimicro.codegen import _render, generate
from trimicro.codegen._names import micro_file, module_alias, module_name, safe_identifier, snake_case

from ._protoc import BAD, PROTOS, REPO, grpc_tools_protoc, has_system_protoc, system_protoc


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text
    assert 'File "' not in text


def test_bad_proto_is_protocs_error(tmp_path: Path, plugin: Path) -> None:
    res = grpc_tools_protoc("-I.", f"--trimicro_out={tmp_path}", "syntax_error.proto", cwd=BAD, plugin=plugin)
    assert res.returncode != 0
    assert "syntax_error.proto:" in res.stderr
    _no_traceback(res.stderr)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("protoc", ["grpc_tools", "system"])
def test_unsupported_input_names_the_file(tmp_path: Path, plugin: Path, protoc: str) -> None:
    args = ("-I.", f"--trimicro_out={tmp_path}", "keyword_message.proto")
    if protoc == "system":
        if not has_system_protoc():
            pytest.skip("no /usr/bin/protoc")
        res = system_protoc(*args, cwd=BAD, plugin=plugin)
    else:
        res = grpc_tools_protoc(*args, cwd=BAD, plugin=plugin)
    assert res.returncode != 0
    assert (
        "--trimicro_out: keyword_message.proto: Uses.Call: message 'badkw.None' is a Python keyword"
        in res.stderr
    )
    _no_traceback(res.stderr)
    assert not list(tmp_path.iterdir())


def test_unknown_option(tmp_path: Path, plugin: Path) -> None:
    res = grpc_tools_protoc(
        "-I.", "--trimicro_opt=frobnicate=1", f"--trimicro_out={tmp_path}", "cgtest/greeter.proto",
        cwd=PROTOS, plugin=plugin,
    )  # fmt: skip
    assert res.returncode != 0
    assert "cgtest/greeter.proto: unknown option 'frobnicate=1' (supported: relative_imports)" in res.stderr
    _no_traceback(res.stderr)


def test_garbage_on_stdin() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "trimicro.codegen"], input=b"\xff\xff\xff not a request",
        cwd=REPO, capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert res.returncode == 0  # protoc's protocol: errors travel in the response
    response = plugin_pb2.CodeGeneratorResponse.FromString(res.stdout)
    assert response.error.startswith("<stdin>: not a CodeGeneratorRequest")
    _no_traceback(res.stderr.decode())


def _request(fd: descriptor_pb2.FileDescriptorProto, parameter: str = "") -> plugin_pb2.CodeGeneratorRequest:
    return plugin_pb2.CodeGeneratorRequest(file_to_generate=[fd.name], proto_file=[fd], parameter=parameter)


def _greeter_fd() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(name="x/y.proto", package="p", syntax="proto3")
    fd.message_type.add(name="M")
    svc = fd.service.add(name="S")
    svc.method.add(name="Do", input_type=".p.M", output_type=".p.M")
    return fd


def test_plugin_bug_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kw: object) -> str:
        raise KeyError("oops")

    monkeypatch.setattr("trimicro.codegen.plugin.render", boom)
    response = generate(_request(_greeter_fd()))
    assert response.error == "x/y.proto: protoc-gen-trimicro failed: KeyError: 'oops'"
    assert not response.file


def test_unknown_type_and_features() -> None:
    fd = _greeter_fd()
    fd.service[0].method[0].output_type = ".p.Missing"
    response = generate(_request(fd))
    assert response.error == "x/y.proto: S.Do: unknown message type 'p.Missing'"
    ok = generate(_request(_greeter_fd()))
    assert not ok.error
    assert [f.name for f in ok.file] == ["x/y_micro.py"]
    assert ok.supported_features & plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL


def test_duplicate_generated_names() -> None:
    fd = _greeter_fd()
    fd.service.add(name="s")  # snake_case collides with "S": register_s_handler, S_METHODS
    fd.service[1].method.add(name="Do", input_type=".p.M", output_type=".p.M")
    response = generate(_request(fd))
    assert response.error.startswith("x/y.proto: ")
    assert "S_METHODS" in response.error


def test_names() -> None:
    assert module_name("a/b/c-d.proto") == "a.b.c_d_pb2"
    assert module_alias("a/b/c_d.proto") == "a_dot_b_dot_c__d__pb2"
    assert micro_file("a/b/c-d.proto") == "a/b/c_d_micro.py"
    assert micro_file("x.protodevel") == "x_micro.py"
    assert snake_case("HTTPGateway") == "http_gateway"
    assert snake_case("Greeter") == "greeter"
    assert snake_case("GetV2Thing") == "get_v2_thing"
    assert safe_identifier("def", set()) == "def_"
    assert safe_identifier("print", set()) == "print_"
    assert safe_identifier("Hello", set()) == "Hello"
    assert safe_identifier("def", {"def_"}) == "def__"
    assert safe_identifier("Mapping", set(_render.RESERVED)) == "Mapping_"


def test_dunder_method_name() -> None:
    fd = _greeter_fd()
    fd.service[0].method[0].name = "__init__"
    assert (
        generate(_request(fd)).error
        == "x/y.proto: S.__init__: Python would mangle a method name starting with '__'"
    )
