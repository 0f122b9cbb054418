"""``application/octet-stream``: the body is the message, untouched (Go Micro's ``codec/bytes``)."""

from __future__ import annotations

from typing import Any

import attrs

from ..errors import CodecError
from ._base import Codec
from ._util import type_name

__all__ = ["BytesCodec", "Frame", "raw_bytes"]


@attrs.frozen
class Frame:
    """Raw body bytes, as Go Micro's ``bytes.Frame``: lets a handler ask for the body as it came."""

    data: bytes


def raw_bytes(msg: Any) -> bytes | None:
    """``msg`` as raw bytes when it is bytes-like or a :class:`Frame`, else None."""
    tp = type(msg)
    if tp is bytes:
        return msg  # type: ignore[no-any-return]
    if tp is bytearray or tp is memoryview:
        return bytes(msg)
    if tp is Frame:
        return msg.data  # type: ignore[no-any-return]
    return None


class BytesCodec(Codec):
    """Raw bytes in and out; decodes to ``bytes`` (default) or a :class:`Frame`."""

    content_type = "application/octet-stream"

    def encode(self, msg: Any) -> bytes:
        data = raw_bytes(msg)
        if data is None:
            if msg is None:
                return b""
            raise CodecError(
                f"{self.content_type} encodes bytes, bytearray, memoryview or Frame, not {type_name(type(msg))}"
            )
        return data

    def decode(self, data: bytes, into: Any = None) -> Any:
        if into is None or into is bytes:
            return bytes(data)
        if into is Frame:
            return Frame(bytes(data))
        if into is bytearray:
            return bytearray(data)
        raise CodecError(f"{self.content_type} decodes into bytes or Frame, not {type_name(into)}")
