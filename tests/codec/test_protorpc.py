from __future__ import annotations

import struct

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from hypothesis import given
from hypothesis import strategies as st

from tests.protos import greeter_pb2
from trimicro.codec import ProtoRpcCodec, get_codec
from trimicro.codec.protorpc import decode_header, encode_header
from trimicro.errors import CodecError, MicroError

codec = get_codec("application/proto-rpc")


def _envelope_classes() -> tuple[type, type]:
    """Go Micro's codec/protorpc/envelope.proto, built at runtime: the reference encoder for headers."""
    fdp = descriptor_pb2.FileDescriptorProto(
        name="protorpc_envelope_test.proto", package="protorpc", syntax="proto3"
    )
    T = descriptor_pb2.FieldDescriptorProto
    req = fdp.message_type.add(name="Request")
    req.field.add(name="service_method", number=1, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    req.field.add(name="seq", number=2, type=T.TYPE_FIXED64, label=T.LABEL_OPTIONAL)
    rsp = fdp.message_type.add(name="Response")
    rsp.field.add(name="service_method", number=1, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    rsp.field.add(name="seq", number=2, type=T.TYPE_FIXED64, label=T.LABEL_OPTIONAL)
    rsp.field.add(name="error", number=3, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    fd = pool.Add(fdp)
    return (
        message_factory.GetMessageClass(fd.message_types_by_name["Request"]),
        message_factory.GetMessageClass(fd.message_types_by_name["Response"]),
    )


Request, Response = _envelope_classes()


def test_is_envelope_codec() -> None:
    assert isinstance(codec, ProtoRpcCodec) and codec.envelope


def test_request_bytes_exact() -> None:
    data = codec.encode_request("Greeter.Hello", 1, greeter_pb2.HelloRequest(name="John"))
    assert data == (
        b"\x00\x00\x00\x18"  # header length 24
        b"\x0a\x0dGreeter.Hello"  # field 1: service_method
        b"\x11\x01\x00\x00\x00\x00\x00\x00\x00"  # field 2: fixed64 seq = 1
        b"\x00\x00\x00\x06"  # body length 6
        b"\x0a\x04John"  # HelloRequest{name: "John"}
    )


def test_response_bytes_exact_with_and_without_error() -> None:
    ok = codec.encode_response("Greeter.Hello", 258, greeter_pb2.HelloResponse(greeting="Hi"))
    assert ok == (
        b"\x00\x00\x00\x18\x0a\x0dGreeter.Hello\x11\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04\x12\x02Hi"
    )
    err = codec.encode_response("Greeter.Hello", 0, None, "boom")
    # seq 0 is a proto3 zero value: left out, as Go's proto.Marshal does; empty body netstring.
    assert err == b"\x00\x00\x00\x15\x0a\x0dGreeter.Hello\x1a\x04boom\x00\x00\x00\x00"


def test_empty_everything() -> None:
    assert codec.encode_request("", 0, greeter_pb2.HelloRequest()) == b"\x00\x00\x00\x00\x00\x00\x00\x00"
    assert codec.decode_request(b"\x00" * 8, greeter_pb2.HelloRequest) == ("", 0, greeter_pb2.HelloRequest())


@given(st.text(max_size=40), st.integers(0, 2**64 - 1), st.text(max_size=40))
def test_header_matches_protobuf_encoder(method: str, seq: int, error: str) -> None:
    assert encode_header(method, seq) == Request(service_method=method, seq=seq).SerializeToString()
    assert (
        encode_header(method, seq, error)
        == Response(service_method=method, seq=seq, error=error).SerializeToString()
    )
    assert decode_header(encode_header(method, seq, error)) == (method, seq, error)


def test_header_decoder_accepts_explicit_zeros_and_unknown_fields() -> None:
    # proto2-era Go Micro wrote pointer fields even when zero; other fields must be skipped.
    header = (
        b"\x0a\x00"  # service_method ""
        b"\x11"
        + b"\x00" * 8  # seq 0
        + b"\x20\x96\x01"  # unknown varint field 4
        + b"\x2d\x01\x02\x03\x04"  # unknown fixed32 field 5
        + b"\x32\x02hi"  # unknown bytes field 6
        + b"\x0a\x01X"  # service_method again: last one wins
    )
    assert decode_header(header) == ("X", 0, "")


def test_round_trip_request_and_response() -> None:
    data = codec.encode_request("Greeter.Hello", 2**64 - 1, greeter_pb2.HelloRequest(name="x"))
    assert codec.decode_request(data, greeter_pb2.HelloRequest) == (
        "Greeter.Hello",
        2**64 - 1,
        greeter_pb2.HelloRequest(name="x"),
    )
    rsp = codec.encode_response("Greeter.Hello", 3, greeter_pb2.HelloResponse(greeting="y"))
    assert codec.decode_response(rsp, greeter_pb2.HelloResponse) == greeter_pb2.HelloResponse(greeting="y")
    assert codec.decode_response(rsp) == b"\x12\x01y"


def test_negative_seq_wraps_like_go_uint64_cast() -> None:
    _, seq, _ = codec.decode_request(codec.encode_request("A.B", -1, None))
    assert seq == 2**64 - 1
    with pytest.raises(CodecError, match="64 bits"):
        codec.encode_request("A.B", 2**64, None)


def test_error_response_raises_micro_error() -> None:
    plain = codec.encode_response("Greeter.Hello", 1, None, "rpc: can't find service Greeter")
    with pytest.raises(MicroError) as info:
        codec.decode_response(plain, greeter_pb2.HelloResponse)
    assert info.value.code == 500 and info.value.detail == "rpc: can't find service Greeter"
    structured = codec.encode_response(
        "Greeter.Hello", 1, None, '{"id":"greeter","code":404,"detail":"nope"}'
    )
    with pytest.raises(MicroError) as info:
        codec.decode_response(structured, greeter_pb2.HelloResponse)
    assert (info.value.id, info.value.code, info.value.detail) == ("greeter", 404, "nope")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00\x00", "truncated header length"),
        (b"\x00\x00\x00\x05ab", "header says 5 bytes"),
        (b"\x00\x00\x00\x00\x00\x00", "truncated body length"),
        (b"\x00\x00\x00\x00\x00\x00\x00\x09abc", "body says 9 bytes"),
        (b"\x00\x00\x00\x00\x00\x00\x00\x00extra", "5 bytes after the body"),
        (b"\x00\x00\x00\x01\x0a\x00\x00\x00\x00", "truncated varint"),
        (b"\x00\x00\x00\x02\x0a\x05\x00\x00\x00\x00", "truncated string"),
        (b"\x00\x00\x00\x02\x11\x01\x00\x00\x00\x00", "truncated fixed64"),
        (b"\x00\x00\x00\x03\x0a\x01\xff\x00\x00\x00\x00", "not UTF-8"),
        (b"\x00\x00\x00\x01\x0b\x00\x00\x00\x00", "wire type 3"),
        (b"\x00\x00\x00\x01\x00\x00\x00\x00\x00", "field number 0"),
        (b"\x00\x00\x00\x00\x00\x00\x00\x02\xff\xff", "greeter.HelloRequest"),
    ],
)
def test_malformed_is_codec_error(data: bytes, match: str) -> None:
    with pytest.raises(CodecError, match=match):
        codec.decode_request(data, greeter_pb2.HelloRequest)


def test_plain_encode_decode_is_protobuf() -> None:
    assert codec.encode(greeter_pb2.HelloRequest(name="a")) == b"\x0a\x01a"
    assert codec.decode(b"\x0a\x01a", greeter_pb2.HelloRequest) == greeter_pb2.HelloRequest(name="a")


def test_netstring_lengths_are_big_endian() -> None:
    body = greeter_pb2.HelloRequest(name="x" * 300)
    data = codec.encode_request("A.B", 0, body)
    header_len = struct.unpack(">I", data[:4])[0]
    body_len = struct.unpack(">I", data[4 + header_len : 8 + header_len])[0]
    assert body_len == len(body.SerializeToString()) == 303
