from __future__ import annotations

import itertools
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.protos import greeter_pb2
from trimicro.codec import GrpcCodec, GrpcFrameDecoder, GrpcJsonCodec, GrpcProtoCodec, encode_frame, get_codec
from trimicro.codec.grpc import compress
from trimicro.errors import ProtocolError


def test_encode_frame_bytes() -> None:
    assert encode_frame(b"\x0a\x04John") == b"\x00\x00\x00\x00\x06\x0a\x04John"
    assert encode_frame(b"") == b"\x00\x00\x00\x00\x00"
    assert encode_frame(b"x", compressed=True) == b"\x01\x00\x00\x00\x01x"
    assert encode_frame(b"a" * 300)[:5] == b"\x00\x00\x00\x01\x2c"


def test_feed_whole_and_multiple() -> None:
    dec = GrpcFrameDecoder()
    stream = encode_frame(b"one") + encode_frame(b"") + encode_frame(b"three")
    assert dec.feed(stream) == [b"one", b"", b"three"]
    assert dec.buffered == 0
    dec.close()


def test_split_at_every_byte_boundary() -> None:
    messages = [b"first", b"", b"\x00" * 10, b"last message"]
    stream = b"".join(encode_frame(m) for m in messages)
    for cut in range(len(stream) + 1):
        dec = GrpcFrameDecoder()
        got = dec.feed(stream[:cut]) + dec.feed(stream[cut:])
        assert got == messages, cut
        dec.close()


def test_byte_by_byte() -> None:
    stream = encode_frame(b"abc") + encode_frame(b"de")
    dec = GrpcFrameDecoder()
    got = [m for i in range(len(stream)) for m in dec.feed(stream[i : i + 1])]
    assert got == [b"abc", b"de"]


@given(st.lists(st.binary(max_size=50), max_size=5), st.lists(st.integers(0, 300), max_size=6))
def test_any_chunking(messages: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(m) for m in messages)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    dec = GrpcFrameDecoder()
    got: list[bytes] = []
    for a, b in itertools.pairwise(points):
        got += dec.feed(memoryview(stream)[a:b])
    assert got == messages
    dec.close()


def test_truncated_stream_at_eof() -> None:
    dec = GrpcFrameDecoder()
    assert dec.feed(encode_frame(b"hello")[:-1]) == []
    with pytest.raises(ProtocolError, match="ended inside a message"):
        dec.close()
    dec2 = GrpcFrameDecoder()
    dec2.feed(b"\x00\x00")
    with pytest.raises(ProtocolError):
        dec2.close()


def test_oversized_is_413_before_the_body_arrives() -> None:
    dec = GrpcFrameDecoder(max_message_size=10)
    assert dec.feed(encode_frame(b"x" * 10)) == [b"x" * 10]
    with pytest.raises(ProtocolError, match="RESOURCE_EXHAUSTED") as info:
        dec.feed(b"\x00\x00\x00\x00\x0b")  # only the prefix: rejected without buffering 11 bytes
    assert info.value.code == 413
    # The decoder stays failed.
    with pytest.raises(ProtocolError, match="RESOURCE_EXHAUSTED"):
        dec.feed(b"")
    with pytest.raises(ProtocolError):
        dec.close()


def test_compressed_without_encoding() -> None:
    dec = GrpcFrameDecoder()
    with pytest.raises(ProtocolError, match="compressed") as info:
        dec.feed(encode_frame(b"zz", compressed=True))
    assert info.value.code == 400


def test_invalid_flag() -> None:
    with pytest.raises(ProtocolError, match="flag 2"):
        GrpcFrameDecoder().feed(b"\x02\x00\x00\x00\x00")


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_with_negotiated_encoding(encoding: str) -> None:
    dec = GrpcFrameDecoder(encoding=encoding)
    stream = encode_frame(compress(b"payload" * 10, encoding), compressed=True) + encode_frame(b"plain")
    assert dec.feed(stream) == [b"payload" * 10, b"plain"]


def test_decompression_bomb_is_bounded() -> None:
    dec = GrpcFrameDecoder(max_message_size=1000, encoding="gzip")
    bomb = compress(b"\x00" * 100_000, "gzip")
    assert len(bomb) < 1000
    with pytest.raises(ProtocolError, match="RESOURCE_EXHAUSTED") as info:
        dec.feed(encode_frame(bomb, compressed=True))
    assert info.value.code == 413


def test_corrupt_compressed_payload() -> None:
    dec = GrpcFrameDecoder(encoding="gzip")
    with pytest.raises(ProtocolError, match="gzip"):
        dec.feed(encode_frame(b"not gzip", compressed=True))
    dec2 = GrpcFrameDecoder(encoding="deflate")
    with pytest.raises(ProtocolError, match="truncated"):
        dec2.feed(encode_frame(zlib.compress(b"abcdef" * 20)[:-6], compressed=True))


def test_identity_and_unknown_encodings() -> None:
    assert GrpcFrameDecoder(encoding="identity").encoding is None
    with pytest.raises(ProtocolError, match="snappy"):
        GrpcFrameDecoder(encoding="snappy")
    with pytest.raises(ProtocolError, match="snappy"):
        compress(b"", "snappy")


def test_content_types_map_to_body_codecs() -> None:
    msg = greeter_pb2.HelloRequest(name="x")
    for ct, cls in (
        ("application/grpc", GrpcCodec),
        ("application/grpc+proto", GrpcProtoCodec),
        ("application/grpc+json", GrpcJsonCodec),
    ):
        codec = get_codec(ct)
        assert isinstance(codec, cls) and codec.content_type == ct
        assert codec.decode(codec.encode(msg), greeter_pb2.HelloRequest) == msg
    assert get_codec("application/grpc").encode(msg) == msg.SerializeToString()
