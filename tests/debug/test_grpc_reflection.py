"""Server reflection's answers, decoded by hand: what grpcurl asks, and what it must never break on."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pb2
from hypothesis import given
from hypothesis import strategies as st

from tests.protos import greeter_pb2, kitchen_pb2
from trimicro._protowire import fields as _fields
from trimicro._protowire import len_field as _bytes_field
from trimicro.debug._grpc_reflection import GrpcReflection
from trimicro.errors import MicroError


def reflection() -> GrpcReflection:
    return GrpcReflection(
        lambda: ["greeter.Greeter", "Plain"], lambda: [greeter_pb2.HelloRequest, kitchen_pb2.Everything]
    )


def ask(r: GrpcReflection, field: int, value: bytes, host: str = "") -> dict[int, Any]:
    request = (_bytes_field(1, host.encode()) if host else b"") + _bytes_field(field, value)
    out = {f: v for f, _, v in _fields(r.answer(request))}
    assert out[2] == request  # original_request echoed
    return out


def files(answer: dict[int, Any]) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    got = {}
    for _, _, raw in _fields(answer[4]):
        fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
        got[fd.name] = fd
    return got


def error(answer: dict[int, Any]) -> tuple[int, str]:
    fields = {f: v for f, _, v in _fields(answer[7])}
    return fields[1], fields[2].decode()


def test_list_services_names_the_routes_and_health() -> None:
    out = ask(reflection(), 7, b"*", host="localhost:1")
    assert out[1] == b"localhost:1"
    names = [{f: v for f, _, v in _fields(svc)}[1].decode() for _, _, svc in _fields(out[6])]
    assert names == ["Plain", "greeter.Greeter", "grpc.health.v1.Health"]


def test_file_containing_symbol_gives_the_proto_file() -> None:
    got = files(ask(reflection(), 4, b"greeter.Greeter"))
    assert list(got) == ["greeter.proto"]
    assert [m.name for m in got["greeter.proto"].service[0].method][:2] == ["Hello", "Fail"]
    # a message, a method and a nested symbol all resolve to their file
    assert list(files(ask(reflection(), 4, b"greeter.HelloRequest"))) == ["greeter.proto"]
    assert list(files(ask(reflection(), 4, b"greeter.Greeter.Hello"))) == ["greeter.proto"]


def test_file_by_filename_and_imports() -> None:
    got = files(ask(reflection(), 3, kitchen_pb2.DESCRIPTOR.name.encode()))
    assert kitchen_pb2.DESCRIPTOR.name in got
    for dep in got[kitchen_pb2.DESCRIPTOR.name].dependency:  # imports come in the same answer
        assert dep in got


def test_health_is_described_without_grpcio() -> None:
    got = files(ask(reflection(), 4, b"grpc.health.v1.Health"))
    (health,) = got.values()
    assert health.package == "grpc.health.v1"
    methods = {m.name: m.server_streaming for m in health.service[0].method}
    # grpcio-health-checking's newer health.proto (List) wins when imported: the default pool is first
    assert {k: methods[k] for k in ("Check", "Watch")} == {"Check": False, "Watch": True}


def test_unknown_symbols_and_files_answer_not_found_on_the_stream() -> None:
    for field, value in ((4, b"no.Such"), (3, b"nope.proto"), (4, b"Plain"), (6, b"no.Such")):
        code, message = error(ask(reflection(), field, value))
        assert code == 5
        assert "not found" in message


def test_extension_questions() -> None:
    out = ask(reflection(), 6, b"greeter.HelloRequest")
    fields = {f: v for f, _, v in _fields(out[5])}
    assert fields[1] == b"greeter.HelloRequest"
    assert 2 not in fields  # no extensions
    ext = _bytes_field(1, b"greeter.HelloRequest") + b"\x10\x64"  # extension_number 100
    code, _ = error(ask(reflection(), 5, ext))
    assert code == 5


def test_a_request_asking_nothing_or_malformed_is_invalid() -> None:
    for request in (b"", b"\x0a\x02hi", b"\x3a\x09abc", b"\x0f"):
        with pytest.raises(MicroError) as info:
            reflection().answer(request)
        assert info.value.code == 400


@given(st.binary(max_size=64))
def test_any_bytes_get_an_answer_or_a_400(data: bytes) -> None:
    try:
        out = reflection().answer(data)
    except MicroError as err:
        assert err.code == 400
    else:
        assert list(_fields(out))
