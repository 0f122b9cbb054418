"""Protobuf's wire format, for the few small messages trimicro encodes by hand (proto-rpc headers,
grpc.health.v1, server reflection, google.rpc.Status) without generated classes.

Sans-IO and free of trimicro imports, so :mod:`trimicro.errors` can use it as well as the codecs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["encode_varint", "fields", "len_field", "read_varint", "varint_field"]


def encode_varint(n: int) -> bytes:
    """``n`` (>= 0) as a protobuf varint."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``data[pos:]`` and the position after it; ValueError if truncated or over 10 bytes."""
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise ValueError("varint longer than 10 bytes")


def fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """``(field number, wire type, value)`` of each field of a message: an int for a varint, bytes
    for a length-delimited or fixed-width field; ValueError when malformed (groups included)."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = read_varint(data, pos)
        elif wire == 2:
            size, pos = read_varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, pos = data[pos : pos + width], pos + width
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise ValueError("truncated field")
        yield number, wire, value


def len_field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (bytes, string, message), written even when empty."""
    return encode_varint(number << 3 | 2) + encode_varint(len(payload)) + payload


def varint_field(number: int, value: int) -> bytes:
    """A varint field; a negative int32/int64 is sign-extended to 64 bits (10 bytes), as protobuf does."""
    return encode_varint(number << 3) + encode_varint(value & 0xFFFFFFFFFFFFFFFF)
