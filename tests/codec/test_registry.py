from __future__ import annotations

import pytest

from trimicro.codec import (
    DEFAULT_CONTENT_TYPE,
    BytesCodec,
    Codec,
    JsonCodec,
    JsonRpcCodec,
    ProtobufCodec,
    ProtoRpcCodec,
    codecs,
    get_codec,
    register_codec,
)
from trimicro.errors import CodecError


@pytest.mark.parametrize(
    ("content_type", "cls"),
    [
        ("application/protobuf", ProtobufCodec),
        ("application/json", JsonCodec),
        ("application/json; charset=utf-8", JsonCodec),
        ("Application/JSON", JsonCodec),
        ("  application/json  ;charset=UTF-8", JsonCodec),
        ("application/json-rpc", JsonRpcCodec),
        ("application/proto-rpc", ProtoRpcCodec),
        ("application/octet-stream", BytesCodec),
        (None, ProtobufCodec),
        ("", ProtobufCodec),
        (";charset=utf-8", ProtobufCodec),
    ],
)
def test_lookup(content_type: str | None, cls: type) -> None:
    assert type(get_codec(content_type)) is cls


def test_singletons() -> None:
    assert get_codec("application/json") is get_codec("application/json; charset=utf-8")
    assert get_codec(None) is get_codec(DEFAULT_CONTENT_TYPE)
    assert DEFAULT_CONTENT_TYPE == "application/protobuf"


def test_unknown_names_it_and_the_supported_ones() -> None:
    with pytest.raises(CodecError, match=r"'text/xml'.*application/json.*application/protobuf"):
        get_codec("text/xml")


def test_register_codec() -> None:
    class Upper(Codec):
        content_type = "text/x-upper"

        def encode(self, msg: object) -> bytes:
            return str(msg).upper().encode()

        def decode(self, data: bytes, into: object = None) -> object:
            return data.decode()

    get_codec("application/json; v=1")  # populate the lookup cache first
    upper = Upper()
    register_codec("Text/X-Upper; q=1", upper)
    try:
        assert get_codec("text/x-upper") is upper
        assert "text/x-upper" in codecs()
        with pytest.raises(ValueError, match="empty"):
            register_codec(" ", upper)
    finally:
        from trimicro.codec import _registry

        _registry._CODECS.pop("text/x-upper")
        _registry._SEEN.clear()
        _registry._SEEN[None] = _registry._SEEN[""] = get_codec("application/protobuf")
    with pytest.raises(CodecError):
        get_codec("text/x-upper")


def test_lookup_cache_is_bounded() -> None:
    from trimicro.codec import _registry

    for i in range(1000):
        get_codec(f"application/json; n={i}")
    assert len(_registry._SEEN) <= 256
