"""etcd v3 over its gRPC-gateway JSON API, without I/O: encodings, response parsing, stream splitting.

What the gateway (etcd 3.4, ``/v3/...``) does that callers must know:

- keys and values are base64 strings; 64-bit integers (revisions, lease ids, TTLs) are JSON *strings*;
  fields equal to their zero value are omitted (a PUT event has no ``type``, a missing lease no ``TTL``).
- unary errors are HTTP 4xx/5xx with ``{"error", "message", "code"}`` (``code`` is the gRPC status);
  streaming calls answer 200 and then send ``{"result": ...}`` or ``{"error": {...}}`` objects, one per
  line, over a chunked body.
- a watch whose start revision was compacted answers ``{"canceled": true, "compact_revision": N}`` and
  leaves the HTTP stream open; so does a watch refused by auth (with a ``cancel_reason``).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Literal

import attrs

from ..errors import RegistryError

__all__ = [
    "EtcdCompacted",
    "EtcdError",
    "JsonLines",
    "KeyValue",
    "WatchEvent",
    "WatchResponse",
    "b64",
    "error_from_body",
    "parse_json",
    "parse_stream_result",
    "parse_watch_message",
    "prefix_end",
    "to_bytes",
    "unb64",
]

# gRPC status codes etcd uses that callers act on.
NOT_FOUND = 5
UNAVAILABLE = 14
UNAUTHENTICATED = 16


class EtcdError(RegistryError):
    """etcd answered with an error: ``code`` is the gRPC status, ``status`` the HTTP status."""

    def __init__(self, message: str, *, code: int = 2, status: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class EtcdCompacted(EtcdError):
    """A watch asked for history etcd has compacted away; re-read the current state and watch again."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(
            f"etcd watch start revision was compacted (oldest kept: {compact_revision})", code=11
        )
        self.compact_revision = compact_revision


def to_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def b64(value: bytes | str) -> str:
    return base64.b64encode(to_bytes(value)).decode("ascii")


def unb64(text: Any) -> bytes:
    if not text:
        return b""
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raise RegistryError(f"etcd sent invalid base64 {str(text)[:40]!r}") from None


def prefix_end(key: bytes) -> bytes:
    """The ``range_end`` that selects every key starting with ``key`` (etcd's GetPrefixRangeEnd)."""
    end = bytearray(key)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"  # all 0xff (or empty): to the end of the keyspace


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        raise RegistryError(f"etcd sent a non-integer {value!r}") from None


def parse_json(body: bytes) -> dict[str, Any]:
    """A JSON object from etcd, or RegistryError saying what arrived instead."""
    try:
        obj = json.loads(body)
    except ValueError:
        raise RegistryError(f"etcd sent invalid JSON: {body[:200]!r}") from None
    if not isinstance(obj, dict):
        raise RegistryError(f"etcd sent {type(obj).__name__}, expected an object: {body[:200]!r}")
    return obj


def error_from_body(status: int, body: bytes, what: str) -> EtcdError:
    """The error for a non-200 unary answer (``what`` names the call for the message)."""
    try:
        obj = json.loads(body)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        message = str(obj.get("message") or obj.get("error") or "")
        if isinstance(obj.get("error"), dict):  # streaming-call error shape
            return _stream_error(obj["error"], what)
        return EtcdError(f"etcd {what}: {message or status}", code=_int(obj.get("code", 2)), status=status)
    text = body[:200].decode("utf-8", "replace").strip()
    return EtcdError(
        f"etcd {what}: HTTP {status} {text}", status=status, code=UNAVAILABLE if status >= 500 else 2
    )


def _stream_error(err: Any, what: str) -> EtcdError:
    if not isinstance(err, dict):
        return EtcdError(f"etcd {what}: {err}")
    return EtcdError(
        f"etcd {what}: {err.get('message', err)}",
        code=_int(err.get("grpc_code", err.get("code", 2))),
        status=_int(err.get("http_code", 0)),
    )


def parse_stream_result(obj: dict[str, Any], what: str) -> dict[str, Any]:
    """The ``result`` of one streamed message, or the EtcdError it carries."""
    if "error" in obj:
        raise _stream_error(obj["error"], what)
    result = obj.get("result")
    if not isinstance(result, dict):
        raise RegistryError(f"etcd {what}: message without result: {str(obj)[:200]}")
    return result


@attrs.frozen
class KeyValue:
    """One stored key with its revisions and lease (0 = none)."""

    key: bytes
    value: bytes = b""
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    lease: int = 0

    @classmethod
    def from_json(cls, d: Any) -> KeyValue:
        if not isinstance(d, dict):
            raise RegistryError(f"etcd sent a malformed key-value: {str(d)[:200]}")
        return cls(
            key=unb64(d.get("key")),
            value=unb64(d.get("value")),
            create_revision=_int(d.get("create_revision")),
            mod_revision=_int(d.get("mod_revision")),
            version=_int(d.get("version")),
            lease=_int(d.get("lease")),
        )


@attrs.frozen
class WatchEvent:
    """A change under a watched range; ``prev_kv`` only when the watch asked for it (and history allows)."""

    type: Literal["put", "delete"]
    kv: KeyValue
    prev_kv: KeyValue | None = None

    @property
    def is_create(self) -> bool:
        """A put that created the key (Go's ``Event.IsCreate``)."""
        return self.type == "put" and self.kv.create_revision == self.kv.mod_revision


@attrs.frozen
class WatchResponse:
    """One message of a watch stream."""

    revision: int
    events: tuple[WatchEvent, ...] = ()
    created: bool = False
    canceled: bool = False
    cancel_reason: str = ""
    compact_revision: int = 0


def parse_watch_message(obj: dict[str, Any]) -> WatchResponse:
    """A :class:`WatchResponse` from one line of ``/v3/watch`` (EtcdError for an error message)."""
    result = parse_stream_result(obj, "watch")
    events = []
    for ev in result.get("events") or ():
        if not isinstance(ev, dict):
            raise RegistryError(f"etcd sent a malformed watch event: {str(ev)[:200]}")
        kind = ev.get("type", "PUT") or "PUT"
        if kind not in ("PUT", "DELETE"):
            raise RegistryError(f"etcd sent unknown watch event type {kind!r}")
        prev = ev.get("prev_kv")
        events.append(
            WatchEvent(
                type="put" if kind == "PUT" else "delete",
                kv=KeyValue.from_json(ev.get("kv") or {}),
                prev_kv=KeyValue.from_json(prev) if prev else None,
            )
        )
    header = result.get("header") or {}
    return WatchResponse(
        revision=_int(header.get("revision") if isinstance(header, dict) else 0),
        events=tuple(events),
        created=bool(result.get("created")),
        canceled=bool(result.get("canceled")),
        cancel_reason=str(result.get("cancel_reason") or ""),
        compact_revision=_int(result.get("compact_revision")),
    )


@attrs.define(eq=False)
class JsonLines:
    """Split a byte stream of newline-separated JSON objects (a streamed gateway response).

    Feed bytes as they arrive; get back every object completed by them. A line longer than ``max_line``
    or one that is not a JSON object raises RegistryError (the stream is unusable after that).
    """

    max_line: int = 16 * 1024 * 1024
    _buffer: bytearray = attrs.field(factory=bytearray, init=False)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        start = len(self._buffer)
        self._buffer += data
        out: list[dict[str, Any]] = []
        begin = 0
        pos = self._buffer.find(b"\n", start)
        while pos >= 0:
            line = bytes(self._buffer[begin:pos]).strip()
            if line:
                out.append(parse_json(line))
            begin = pos + 1
            pos = self._buffer.find(b"\n", begin)
        del self._buffer[:begin]
        if len(self._buffer) > self.max_line:
            raise RegistryError(f"etcd stream line exceeds {self.max_line} bytes")
        return out

    def close(self) -> list[dict[str, Any]]:
        """End of stream: the last object if it had no trailing newline."""
        line = bytes(self._buffer).strip()
        self._buffer.clear()
        return [parse_json(line)] if line else []

    @property
    def pending(self) -> int:
        return len(self._buffer)
