from __future__ import annotations

import pytest

from trimicro.codec import BytesCodec, Frame, get_codec
from trimicro.errors import CodecError

codec = get_codec("application/octet-stream")


def test_is_bytes_codec() -> None:
    assert isinstance(codec, BytesCodec)


@pytest.mark.parametrize(
    "value", [b"\x00abc", bytearray(b"\x00abc"), memoryview(b"\x00abc"), Frame(b"\x00abc")]
)
def test_encode_bytes_like(value: object) -> None:
    assert codec.encode(value) == b"\x00abc"


def test_decode() -> None:
    assert codec.decode(b"xyz") == b"xyz"
    assert codec.decode(b"xyz", bytes) == b"xyz"
    assert codec.decode(b"xyz", Frame) == Frame(b"xyz")
    assert codec.decode(b"", None) == b""


def test_errors() -> None:
    with pytest.raises(CodecError, match="not str"):
        codec.encode("text")
    with pytest.raises(CodecError, match="bytes or Frame"):
        codec.decode(b"x", dict)
