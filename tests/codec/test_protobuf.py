from __future__ import annotations

import pytest

from tests.codec._messages import full_everything
from tests.protos import greeter_pb2, kitchen_pb2
from trimicro.codec import Frame, ProtobufCodec, get_codec
from trimicro.errors import CodecError

codec = ProtobufCodec()


def test_round_trip_hello() -> None:
    msg = greeter_pb2.HelloRequest(name="John")
    data = codec.encode(msg)
    assert data == b"\n\x04John"
    assert codec.decode(data, greeter_pb2.HelloRequest) == msg


def test_empty_message_is_empty_body() -> None:
    assert codec.encode(greeter_pb2.HelloRequest()) == b""
    assert codec.decode(b"", greeter_pb2.HelloRequest) == greeter_pb2.HelloRequest()


def test_round_trip_everything_keeps_presence() -> None:
    msg = full_everything()
    back = codec.decode(codec.encode(msg), kitchen_pb2.Everything)
    assert back == msg
    assert back.HasField("maybe") and back.HasField("maybe_number") and back.HasField("choice_inner")


@pytest.mark.parametrize("into", [None, bytes])
def test_into_raw_bytes(into: object) -> None:
    assert codec.decode(b"\n\x04John", into) == b"\n\x04John"


def test_into_frame_and_bytes_pass_through() -> None:
    assert codec.decode(b"abc", Frame) == Frame(b"abc")
    assert codec.encode(b"raw") == b"raw"
    assert codec.encode(bytearray(b"raw")) == b"raw"
    assert codec.encode(memoryview(b"raw")) == b"raw"
    assert codec.encode(Frame(b"raw")) == b"raw"
    assert codec.encode(None) == b""


def test_garbage_is_codec_error_naming_type_and_bytes() -> None:
    with pytest.raises(CodecError, match=r"greeter\.HelloRequest.*b'\\xff\\xff") as info:
        codec.decode(b"\xff\xff\xff", greeter_pb2.HelloRequest)
    assert "application/protobuf" in str(info.value)


def test_wrong_into_and_wrong_message_type() -> None:
    with pytest.raises(CodecError, match="dict"):
        codec.decode(b"", dict)
    with pytest.raises(CodecError, match="protobuf messages or bytes, not dict"):
        codec.encode({"name": "x"})


def test_aliases_share_the_codec() -> None:
    for ct in ("application/protobuf", "application/proto", "application/x-protobuf"):
        assert get_codec(ct) is get_codec("application/protobuf")
    assert get_codec("application/protobuf").content_type == "application/protobuf"
