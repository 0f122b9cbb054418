"""Small helpers shared by the codecs: error previews and protobuf-class checks."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

__all__ = ["is_message_class", "preview", "type_name"]

_PREVIEW = 32


def preview(data: bytes | bytearray | memoryview) -> str:
    """The first bytes of a body, for error messages (never the whole payload)."""
    head = bytes(data[:_PREVIEW])
    more = "..." if len(data) > _PREVIEW else ""
    return f"{len(data)} bytes {head!r}{more}"


def type_name(tp: Any) -> str:
    """A readable name of a type (or of a value's type) for error messages."""
    if isinstance(tp, type):
        return f"{tp.__module__}.{tp.__qualname__}" if tp.__module__ != "builtins" else tp.__qualname__
    return repr(tp)


def is_message_class(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Message)
