"""``application/proto-rpc``: Go Micro's net/rpc protobuf envelope, the fallback for protobuf bodies.

A message is two netstrings (4-byte big-endian length + bytes): a header and the body. The header is a
proto3 ``Request {string service_method = 1; fixed64 seq = 2;}`` or
``Response {... string error = 3;}``, written here by hand: Go omits zero-valued fields, so do we.
"""

from __future__ import annotations

import struct
from typing import Any

from .. import errors
from .._protowire import encode_varint, read_varint
from ..errors import CodecError
from ._base import Codec
from ._util import preview
from .protobuf import decode_message, encode_message

__all__ = ["ProtoRpcCodec", "decode_header", "encode_header", "read_netstrings"]

_U32 = struct.Struct(">I")
_U64_LE = struct.Struct("<Q")
_MASK64 = (1 << 64) - 1


def _string_field(tag: int, text: str) -> bytes:
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CodecError(f"proto-rpc header: {text!r:.60} is not encodable as UTF-8") from exc
    return bytes((tag,)) + encode_varint(len(raw)) + raw


def encode_header(service_method: str, seq: int, error: str | None = None) -> bytes:
    """The envelope header proto, byte-exact with Go's ``proto.Marshal`` (fields in order, zeros left out)."""
    if not -(1 << 63) <= seq <= _MASK64:
        raise CodecError(f"proto-rpc seq {seq} does not fit 64 bits")
    parts = []
    if service_method:
        parts.append(_string_field(0x0A, service_method))  # field 1, length-delimited
    if seq:
        parts.append(b"\x11" + _U64_LE.pack(seq & _MASK64))  # field 2, fixed64
    if error:
        parts.append(_string_field(0x1A, error))  # field 3, length-delimited
    return b"".join(parts)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    try:
        return read_varint(data, pos)
    except ValueError as exc:
        raise CodecError(f"proto-rpc header: {exc}") from None


def decode_header(data: bytes) -> tuple[str, int, str]:
    """Parse a header proto into ``(service_method, seq, error)``; unknown fields are skipped."""
    method = error = ""
    seq = 0
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise CodecError("proto-rpc header: field number 0")
        if wire == 0:
            _, pos = _read_varint(data, pos)
        elif wire == 1:
            if pos + 8 > end:
                raise CodecError("proto-rpc header: truncated fixed64")
            if field == 2:
                seq = _U64_LE.unpack_from(data, pos)[0]
            pos += 8
        elif wire == 2:
            size, pos = _read_varint(data, pos)
            if pos + size > end:
                raise CodecError("proto-rpc header: truncated string")
            if field in (1, 3):
                try:
                    text = data[pos : pos + size].decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise CodecError(f"proto-rpc header: field {field} is not UTF-8") from exc
                if field == 1:
                    method = text
                else:
                    error = text
            pos += size
        elif wire == 5:
            if pos + 4 > end:
                raise CodecError("proto-rpc header: truncated fixed32")
            pos += 4
        else:
            raise CodecError(f"proto-rpc header: unsupported wire type {wire}")
    return method, seq, error


def _netstring(data: bytes) -> bytes:
    return _U32.pack(len(data)) + data


def read_netstrings(data: bytes) -> tuple[bytes, bytes]:
    """Split a proto-rpc body into its header and message netstrings."""
    total = len(data)
    if total < 4:
        raise CodecError(f"proto-rpc: truncated header length ({preview(data)})")
    (hsize,) = _U32.unpack_from(data, 0)
    bpos = 4 + hsize
    if bpos > total:
        raise CodecError(f"proto-rpc: header says {hsize} bytes, {total - 4} left ({preview(data)})")
    if bpos + 4 > total:
        raise CodecError(f"proto-rpc: truncated body length ({preview(data)})")
    (bsize,) = _U32.unpack_from(data, bpos)
    end = bpos + 4 + bsize
    if end > total:
        raise CodecError(f"proto-rpc: body says {bsize} bytes, {total - bpos - 4} left ({preview(data)})")
    if end != total:
        raise CodecError(f"proto-rpc: {total - end} bytes after the body ({preview(data)})")
    return bytes(data[4:bpos]), bytes(data[bpos + 4 : end])


class ProtoRpcCodec(Codec):
    """Protobuf envelope codec (``envelope = True``); ``into`` as for :class:`ProtobufCodec`."""

    content_type = "application/proto-rpc"
    envelope = True

    def encode(self, msg: Any) -> bytes:
        return encode_message(msg, self.content_type)

    def decode(self, data: bytes, into: Any = None) -> Any:
        return decode_message(data, into, self.content_type)

    def encode_request(self, endpoint: str, seq: int, msg: Any) -> bytes:
        return _netstring(encode_header(endpoint, seq)) + _netstring(self.encode(msg))

    def decode_request(self, data: bytes, into: Any = None) -> tuple[str | None, int, Any]:
        header, body = read_netstrings(data)
        method, seq, _ = decode_header(header)
        return method, seq, self.decode(body, into)

    def encode_response(self, endpoint: str, seq: int, msg: Any, error: str | None = None) -> bytes:
        return _netstring(encode_header(endpoint, seq, error)) + _netstring(self.encode(msg))

    def decode_response(self, data: bytes, into: Any = None) -> Any:
        header, body = read_netstrings(data)
        _, _, error = decode_header(header)
        if error:
            raise errors.parse(error)
        return self.decode(body, into)
