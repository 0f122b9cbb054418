"""``grpc-status-details-bin``: a ``google.rpc.Status`` carrying Go Micro's error, sans-IO.

Why: a stock gRPC client shows ``grpc-message`` to its user, so that must be the plain error text;
but Go Micro's error has four fields (id, code, detail, status) that Go Micro and trimicro clients
want back. Go Micro v5's gRPC server solves it with the status details: it attaches its
``errors.Error`` proto (package ``errors``: id=1, code=2, detail=3, status=4) as the first
``google.protobuf.Any`` of the ``google.rpc.Status`` (code=1, message=2, details=3), and its client
(``client/grpc/error.go``) takes ``details[0]`` as the error before falling back to parsing the
message. We write and read the same bytes by hand (three tiny messages, no generated code).
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

from .._protowire import fields, len_field, varint_field
from ..errors import MicroError, decode_details, encode_any_details

__all__ = ["MICRO_ERROR_TYPE_URL", "decode_status_details", "encode_status_details"]

#: how Go's ``anypb.New(*errors.Error)`` names Go Micro's error type
MICRO_ERROR_TYPE_URL: Final = "type.googleapis.com/errors.Error"
_U64: Final = (1 << 64) - 1


def _varint_field(number: int, value: int) -> bytes:
    return varint_field(number, value) if value else b""  # proto3 leaves defaults out


def _bytes_field(number: int, value: bytes) -> bytes:
    return len_field(number, value) if value else b""


def _str_field(number: int, value: str) -> bytes:
    return _bytes_field(number, value.encode("utf-8", "replace"))


def encode_status_details(status: int, message: str, err: MicroError) -> str:
    """The header value (base64, unpadded as gRPC writes ``-bin`` values) for ``err`` sent as ``status``."""
    micro = (
        _str_field(1, err.id)
        + _varint_field(2, err.code)
        + _str_field(3, err.detail)
        + _str_field(4, err.status)
    )
    any_ = _str_field(1, MICRO_ERROR_TYPE_URL) + _bytes_field(2, micro)
    body = _varint_field(1, status) + _str_field(2, message) + _bytes_field(3, any_)
    body += encode_any_details(err.details)  # rich details follow Go Micro's error
    return base64.b64encode(body).decode("ascii").rstrip("=")


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """``(field number, value)`` of a message's varint and length-delimited fields; ValueError when
    malformed."""
    return [(number, value) for number, wire, value in fields(data) if wire in (0, 2)]


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def decode_status_details(value: str) -> MicroError | None:
    """Go Micro's error from a ``grpc-status-details-bin`` value, or None when it carries none
    (absent, malformed, or only details of other types)."""
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
        for number, any_ in _fields(raw):
            if number != 3 or not isinstance(any_, bytes):
                continue
            parts = dict(_fields(any_))
            if parts.get(1) != MICRO_ERROR_TYPE_URL.encode():
                continue
            body = parts.get(2, b"")
            if not isinstance(body, bytes):
                continue
            f = dict(_fields(body))
            text = {n: v.decode("utf-8", "replace") for n, v in f.items() if isinstance(v, bytes)}
            code = f.get(2, 0)
            return MicroError(
                text.get(1, ""),
                _int32(code) if isinstance(code, int) else 0,
                text.get(3, ""),
                text.get(4, ""),
                details=decode_details(value),
            )
    except (ValueError, binascii.Error):
        return None
    return None
