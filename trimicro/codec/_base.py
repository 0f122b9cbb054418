"""The Codec contract: bytes <-> messages for one Content-Type.

A plain codec (protobuf, json, bytes) encodes a message as the whole body. An envelope codec (json-rpc,
proto-rpc) wraps it with the method name, a sequence number and, in replies, an error string; the
``*_request``/``*_response`` methods carry that envelope and default to the plain form.

``into`` names the type to decode to: a protobuf message class, an attrs class, a dataclass, ``dict``,
``bytes``, or ``None`` (the codec's natural value: parsed JSON, raw bytes). Codecs are pure: no I/O.
Every failure raises :class:`~trimicro.errors.CodecError` (reported as 400 to the caller).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Codec"]


class Codec:
    """Base class of codecs; subclasses set ``content_type`` and implement ``encode``/``decode``."""

    content_type: str = ""
    #: True when bodies carry an envelope (json-rpc, proto-rpc) around the message.
    envelope: bool = False

    def encode(self, msg: Any) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes, into: Any = None) -> Any:
        raise NotImplementedError

    def encode_request(self, endpoint: str, seq: int, msg: Any) -> bytes:
        return self.encode(msg)

    def decode_request(self, data: bytes, into: Any = None) -> tuple[str | None, int, Any]:
        """Return ``(endpoint from the envelope or None, seq, message)``."""
        return None, 0, self.decode(data, into)

    def encode_response(self, endpoint: str, seq: int, msg: Any, error: str | None = None) -> bytes:
        return self.encode(msg)

    def decode_response(self, data: bytes, into: Any = None) -> Any:
        """Decode a reply body; an envelope carrying an error raises :class:`MicroError`."""
        return self.decode(data, into)
