"""Random input never escapes as anything but the typed errors; random messages round-trip."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.codec._messages import everythings, hello_requests
from tests.protos import greeter_pb2, kitchen_pb2
from trimicro.codec import Frame, GrpcFrameDecoder, codecs, encode_frame, get_codec
from trimicro.errors import CodecError, MicroError, ProtocolError


@attrs.frozen
class Small:
    name: str
    count: int = 0
    items: list[int] = attrs.field(factory=list)


@dataclasses.dataclass
class Rec:
    label: str = ""
    children: list[Rec] = dataclasses.field(default_factory=list)


INTOS: list[Any] = [
    None,
    bytes,
    Frame,
    dict,
    greeter_pb2.HelloRequest,
    kitchen_pb2.Everything,
    kitchen_pb2.Tree,
    Small,
    Rec,
    list[int],
]
# One entry per codec instance (aliases such as application/proto share one).
CODECS = sorted({id(c): (c.content_type, c) for c in codecs().values()}.values(), key=lambda x: x[0])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
# Bodies that are mostly JSON-ish or protobuf-ish, so the fuzzer gets past the first byte.
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.sampled_from(
            ["name", "an_int32", "anInt64", "inner", "tags", "counts", "colour", "some_bytes", "count"]
        ),
        json_values,
        max_size=4,
    ).map(lambda v: json.dumps(v).encode()),
    everythings().map(lambda m: m.SerializeToString()),
)


@pytest.mark.parametrize(("content_type", "codec"), CODECS, ids=[c for c, _ in CODECS])
@settings(max_examples=120, deadline=None)
@given(data=bodies, into=st.sampled_from(INTOS))
def test_decoders_raise_only_codec_errors(content_type: str, codec: Any, data: bytes, into: Any) -> None:
    for call in (codec.decode, codec.decode_request):
        try:
            call(data, into)
        except CodecError:
            pass
    try:
        codec.decode_response(data, into)
    except (CodecError, MicroError):  # an envelope may legitimately carry an error
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 64), st.sampled_from([None, "gzip", "deflate"]))
def test_frame_decoder_raises_only_protocol_errors(data: bytes, max_size: int, encoding: str | None) -> None:
    dec = GrpcFrameDecoder(max_message_size=max_size, encoding=encoding)
    try:
        for i in range(0, len(data), 7):
            for msg in dec.feed(data[i : i + 7]):
                assert len(msg) <= max_size
        dec.close()
    except ProtocolError as exc:
        assert exc.code in (400, 413)


ROUND_TRIP = ["application/protobuf", "application/json", "application/grpc", "application/grpc+json"]


@pytest.mark.parametrize("content_type", ROUND_TRIP)
@settings(max_examples=100, deadline=None)
@given(msg=everythings())
def test_random_messages_round_trip(content_type: str, msg: kitchen_pb2.Everything) -> None:
    codec = get_codec(content_type)
    assert codec.decode(codec.encode(msg), kitchen_pb2.Everything) == msg


@pytest.mark.parametrize("content_type", ["application/json-rpc", "application/proto-rpc"])
@settings(max_examples=100, deadline=None)
@given(
    msg=st.one_of(everythings(), hello_requests),
    endpoint=st.text(max_size=30),
    seq=st.integers(0, 2**53),
    error=st.one_of(st.none(), st.text(min_size=1, max_size=30)),
)
def test_random_envelopes_round_trip(
    content_type: str, msg: Any, endpoint: str, seq: int, error: str | None
) -> None:
    codec = get_codec(content_type)
    cls = type(msg)
    assert codec.decode_request(codec.encode_request(endpoint, seq, msg), cls) == (endpoint, seq, msg)
    rsp = codec.encode_response(endpoint, seq, None if error else msg, error)
    if error:
        with pytest.raises(MicroError):
            codec.decode_response(rsp, cls)
    else:
        assert codec.decode_response(rsp, cls) == msg


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=6), st.data())
def test_frames_round_trip_in_random_chunks(messages: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(m) for m in messages)
    dec = GrpcFrameDecoder()
    got: list[bytes] = []
    pos = 0
    while pos < len(stream):
        step = data.draw(st.integers(1, 16))
        got += dec.feed(stream[pos : pos + step])
        pos += step
    dec.close()
    assert got == messages
