"""``application/protobuf``: the body is one serialized protobuf message (Go Micro's default codec)."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from ..errors import CodecError
from ._base import Codec
from ._util import is_message_class, preview, type_name
from .bytes import Frame, raw_bytes

__all__ = ["ProtobufCodec", "decode_message", "encode_message"]


def encode_message(msg: Any, content_type: str = "application/protobuf") -> bytes:
    """Serialize a protobuf message; bytes-like values and Frames pass through as already encoded."""
    if isinstance(msg, Message):
        try:
            return msg.SerializeToString()
        except Exception as exc:  # EncodeError: a proto2 required field is missing
            raise CodecError(f"cannot encode {type_name(type(msg))} as {content_type}: {exc}") from exc
    data = raw_bytes(msg)
    if data is not None:
        return data
    if msg is None:
        return b""
    raise CodecError(f"{content_type} encodes protobuf messages or bytes, not {type_name(type(msg))}")


def decode_message(data: bytes, into: Any, content_type: str = "application/protobuf") -> Any:
    """Parse ``data`` into the message class ``into``; ``None``/``bytes`` give the raw bytes."""
    if is_message_class(into):
        try:
            return into.FromString(data)
        except Exception as exc:  # DecodeError, or a RuntimeError from deep recursion
            raise CodecError(
                f"cannot decode {content_type} body into {into.DESCRIPTOR.full_name}: {exc} ({preview(data)})"
            ) from exc
    if into is None or into is bytes:
        return bytes(data)
    if into is Frame:
        return Frame(bytes(data))
    raise CodecError(f"{content_type} decodes into a protobuf message class or bytes, not {type_name(into)}")


class ProtobufCodec(Codec):
    """Protobuf wire format; ``into`` is a generated message class."""

    content_type = "application/protobuf"

    def encode(self, msg: Any) -> bytes:
        return encode_message(msg, self.content_type)

    def decode(self, data: bytes, into: Any = None) -> Any:
        return decode_message(data, into, self.content_type)
