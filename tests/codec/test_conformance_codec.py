"""The Codec conformance suite (trimicro.testing.conformance) against every codec in trimicro/codec."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import struct_pb2, wrappers_pb2

from tests.protos.greeter_pb2 import HelloRequest
from trimicro.codec import (
    BytesCodec,
    Codec,
    Frame,
    GrpcCodec,
    GrpcJsonCodec,
    GrpcProtoCodec,
    JsonCodec,
    JsonRpcCodec,
    ProtobufCodec,
    ProtoRpcCodec,
)
from trimicro.testing.conformance import CodecConformance


def _struct() -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update({"name": "conformance", "n": 3.0, "ok": True, "list": [1.0, "two"]})
    return s


PROTO_SAMPLES: list[tuple[Any, Any]] = [
    (HelloRequest(name="conformance ✓"), HelloRequest),
    (HelloRequest(), HelloRequest),
    (wrappers_pb2.StringValue(value="x" * 10_000), wrappers_pb2.StringValue),
    (_struct(), struct_pb2.Struct),
]
JSON_SAMPLES: list[tuple[Any, Any]] = [
    ({"name": "conformance ✓", "n": 3, "list": [1, 2.5, None, True]}, None),
    ({"nested": {"a": {"b": []}}}, dict),
    ([1, "two", {"three": 3}], None),
    ("just a string", None),
    (HelloRequest(name="as json"), HelloRequest),
]


class ProtoLike(CodecConformance):
    garbage = (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", b"\x0a\x05ab")  # bad varint; truncated field

    @pytest.fixture
    def samples(self) -> list[tuple[Any, Any]]:
        return PROTO_SAMPLES


class JsonLike(CodecConformance):
    garbage = (b"\xff\xfe{not json", b'{"unterminated": ')  # (an empty body is a missing message)

    @pytest.fixture
    def samples(self) -> list[tuple[Any, Any]]:
        return JSON_SAMPLES


class TestProtobufCodec(ProtoLike):
    @pytest.fixture
    def codec(self) -> Codec:
        return ProtobufCodec()


class TestGrpcProtoCodec(ProtoLike):
    @pytest.fixture
    def codec(self) -> Codec:
        return GrpcProtoCodec()


class TestGrpcCodec(ProtoLike):
    @pytest.fixture
    def codec(self) -> Codec:
        return GrpcCodec()


class TestProtoRpcCodec(ProtoLike):
    @pytest.fixture
    def codec(self) -> Codec:
        return ProtoRpcCodec()


class TestJsonCodec(JsonLike):
    @pytest.fixture
    def codec(self) -> Codec:
        return JsonCodec()


class TestGrpcJsonCodec(JsonLike):
    @pytest.fixture
    def codec(self) -> Codec:
        return GrpcJsonCodec()


class TestJsonRpcCodec(JsonLike):
    @pytest.fixture
    def codec(self) -> Codec:
        return JsonRpcCodec()


class TestBytesCodec(CodecConformance):
    garbage = ()  # any bytes are a valid body

    @pytest.fixture
    def codec(self) -> Codec:
        return BytesCodec()

    @pytest.fixture
    def samples(self) -> list[tuple[Any, Any]]:
        return [(b"", None), (bytes(range(256)), bytes), (Frame(b"raw"), Frame)]
