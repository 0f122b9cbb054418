"""NATS client protocol, sans-IO (h11-style): feed server bytes, pull typed events; build client ops.

:class:`NatsParser` turns the server->client byte stream into :class:`Info`, :class:`Msg`, :class:`Ping`,
:class:`Pong`, :class:`Ok` and :class:`Err` events. It holds no socket and no clock, so it is tested and
fuzzed directly. Limits are explicit: a control line longer than ``max_line`` or a message larger than
``max_payload`` (taken from the server's ``INFO``, capped by the parser's own ceiling) raises
:class:`~trimicro.errors.ProtocolError`; after that the parser is dead and the connection must go.

A message whose framing is sound but whose header block is not (``HMSG`` with a bad header line) is
not a reason to drop the connection: it comes out as :class:`MalformedMsg`, so one bad publisher cannot
take a subscriber offline.

The builders (:func:`connect`, :func:`pub`, :func:`hpub`, :func:`sub`, :func:`unsub`) validate what they
put on the wire (subjects without whitespace, header names and values without CR/LF) and raise
``ValueError`` for caller mistakes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from ..errors import ProtocolError

__all__ = [
    "NEED_DATA",
    "PING",
    "PONG",
    "Err",
    "Event",
    "Info",
    "MalformedMsg",
    "Msg",
    "NatsParser",
    "Ok",
    "Ping",
    "Pong",
    "connect",
    "encode_headers",
    "hpub",
    "pub",
    "sub",
    "unsub",
    "validate_subject",
]

DEFAULT_MAX_LINE: Final = 64 * 1024
DEFAULT_MAX_PAYLOAD: Final = 1024 * 1024  # nats-server's default until INFO says otherwise
PAYLOAD_CEILING: Final = 64 * 1024 * 1024  # never trust a server beyond this

HEADER_LINE: Final = b"NATS/1.0"


@attrs.frozen
class Info:
    """``INFO {json}``: server identity and limits (``max_payload``, ``headers``, ...)."""

    info: Mapping[str, Any]


@attrs.frozen
class Msg:
    """A delivered message (``MSG`` or ``HMSG``).

    ``headers`` keeps every header line in order (NATS headers may repeat); ``status`` and
    ``description`` come from the ``NATS/1.0 503 No Responders`` style status line, if any.
    Header text is decoded as UTF-8 with ``surrogateescape`` so arbitrary bytes round-trip.
    """

    subject: str
    sid: int
    reply: str | None
    payload: bytes
    headers: tuple[tuple[str, str], ...] | None = None
    status: int | None = None
    description: str = ""

    def header_dict(self) -> dict[str, str]:
        """Headers as a dict; for a repeated name the first value wins."""
        out: dict[str, str] = {}
        for key, value in self.headers or ():
            out.setdefault(key, value)
        return out


@attrs.frozen
class MalformedMsg:
    """An ``HMSG`` whose framing was fine but whose header block was not; the message is skipped."""

    subject: str
    sid: int
    reply: str | None
    reason: str


@attrs.frozen
class Ping:
    pass


@attrs.frozen
class Pong:
    pass


@attrs.frozen
class Ok:
    pass


@attrs.frozen
class Err:
    """``-ERR '...'``: the server's complaint; some are fatal (it then closes the connection)."""

    message: str


Event = Info | Msg | MalformedMsg | Ping | Pong | Ok | Err


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()

_DIGITS = re.compile(rb"[0-9]{1,19}")
_PING, _PONG, _OK = Ping(), Pong(), Ok()


def _int(raw: bytes, what: str) -> int:
    if not _DIGITS.fullmatch(raw):
        raise ProtocolError(f"NATS: bad {what} {raw[:32]!r}")
    return int(raw)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _parse_headers(block: bytes) -> tuple[tuple[tuple[str, str], ...], int | None, str]:
    """Parse ``NATS/1.0[ code [description]]\\r\\nK: V\\r\\n...\\r\\n\\r\\n``; ValueError if malformed."""
    if not block.endswith(b"\r\n\r\n"):
        raise ValueError("header block not terminated by CRLF CRLF")
    lines = block[:-4].split(b"\r\n")
    first = lines[0]
    if not first.startswith(HEADER_LINE):
        raise ValueError("header block does not start with NATS/1.0")
    rest = first[len(HEADER_LINE) :].strip()
    status: int | None = None
    description = ""
    if rest:
        code, _, desc = rest.partition(b" ")
        if not (len(code) == 3 and code.isdigit()):
            raise ValueError(f"bad status {code[:16]!r}")
        status = int(code)
        description = _text(desc.strip())
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        key, sep, value = line.partition(b":")
        key = key.strip()
        if not sep or not key or b" " in key or b"\t" in key:
            raise ValueError(f"bad header line {line[:32]!r}")
        headers.append((_text(key), _text(value.strip())))
    return tuple(headers), status, description


@attrs.define(eq=False)
class NatsParser:
    """Server->client NATS protocol: ``receive_data(bytes)`` then ``next_event()`` until NEED_DATA.

    ``receive_data(b"")`` signals EOF; a partial frame at EOF is a ProtocolError.
    """

    max_line: int = DEFAULT_MAX_LINE
    max_payload: int = DEFAULT_MAX_PAYLOAD
    ceiling: int = PAYLOAD_CEILING
    _buf: bytearray = attrs.field(factory=bytearray, init=False)
    _pos: int = attrs.field(default=0, init=False)
    _eof: bool = attrs.field(default=False, init=False)
    _dead: ProtocolError | None = attrs.field(default=None, init=False)
    # the control line of a MSG/HMSG whose payload has not fully arrived
    _pending: tuple[bool, str, int, str | None, int, int] | None = attrs.field(default=None, init=False)

    def receive_data(self, data: bytes) -> None:
        if self._dead is not None:
            raise self._dead
        if not data:
            self._eof = True
            return
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_event(self) -> Event | _NeedData:
        if self._dead is not None:
            raise self._dead
        try:
            event = self._next()
        except ProtocolError as exc:
            self._dead = exc
            raise
        if event is NEED_DATA and self._eof and (self._pending is not None or self._pos < len(self._buf)):
            self._dead = ProtocolError("NATS: connection closed mid-frame")
            raise self._dead
        return event

    def _next(self) -> Event | _NeedData:
        if self._pending is not None:
            return self._payload()
        buf = self._buf
        end = buf.find(b"\r\n", self._pos)
        if end < 0:
            if len(buf) - self._pos > self.max_line + 1:  # +1: a lone CR may be half of CRLF
                raise ProtocolError(f"NATS: control line longer than {self.max_line} bytes")
            return NEED_DATA
        if end - self._pos > self.max_line:
            raise ProtocolError(f"NATS: control line longer than {self.max_line} bytes")
        line = bytes(buf[self._pos : end])
        self._pos = end + 2
        op, _, args = line.partition(b" ")
        op = op.upper()
        if op == b"MSG":
            return self._control(False, args.split())
        if op == b"HMSG":
            return self._control(True, args.split())
        if op == b"PING" and not args.strip():
            return _PING
        if op == b"PONG" and not args.strip():
            return _PONG
        if op == b"+OK" and not args.strip():
            return _OK
        if op == b"INFO":
            return self._info(args)
        if op == b"-ERR":
            text = _text(args.strip())
            if len(text) >= 2 and text[0] == text[-1] == "'":
                text = text[1:-1]
            return Err(text)
        raise ProtocolError(f"NATS: unknown operation {line[:32]!r}")

    def _info(self, args: bytes) -> Info:
        try:
            info = json.loads(args)
        except (ValueError, RecursionError) as exc:
            raise ProtocolError(f"NATS: INFO is not JSON: {exc}") from None
        if not isinstance(info, dict):
            raise ProtocolError("NATS: INFO is not a JSON object")
        max_payload = info.get("max_payload")
        if isinstance(max_payload, int) and not isinstance(max_payload, bool) and max_payload > 0:
            self.max_payload = min(max_payload, self.ceiling)
        return Info(info)

    def _control(self, has_headers: bool, parts: list[bytes]) -> Event | _NeedData:
        counts = 2 if has_headers else 1
        if len(parts) not in (2 + counts, 3 + counts):
            raise ProtocolError(f"NATS: bad {'HMSG' if has_headers else 'MSG'} arguments")
        subject = _text(parts[0])
        sid = _int(parts[1], "sid")
        reply = _text(parts[2]) if len(parts) == 3 + counts else None
        total = _int(parts[-1], "size")
        hdr = _int(parts[-2], "header size") if has_headers else 0
        if hdr > total:
            raise ProtocolError("NATS: header size exceeds total size")
        if total > self.max_payload:
            raise ProtocolError(f"NATS: message of {total} bytes exceeds max_payload {self.max_payload}")
        self._pending = (has_headers, subject, sid, reply, hdr, total)
        return self._payload()

    def _payload(self) -> Event | _NeedData:
        assert self._pending is not None
        has_headers, subject, sid, reply, hdr, total = self._pending
        start = self._pos
        if len(self._buf) - start < total + 2:
            return NEED_DATA
        if self._buf[start + total : start + total + 2] != b"\r\n":
            raise ProtocolError("NATS: message payload not followed by CRLF")
        data = bytes(self._buf[start : start + total])
        self._pos = start + total + 2
        self._pending = None
        if not has_headers:
            return Msg(subject, sid, reply, data)
        try:
            headers, status, description = _parse_headers(data[:hdr])
        except ValueError as exc:
            return MalformedMsg(subject, sid, reply, str(exc))
        return Msg(subject, sid, reply, data[hdr:], headers, status, description)


# ------------------------------------------------------------------ client -> server

PING: Final = b"PING\r\n"
PONG: Final = b"PONG\r\n"

_BAD_SUBJECT = re.compile(r"[\s]")
_BAD_HEADER_NAME = re.compile(r"[\s:]")


def validate_subject(subject: str, what: str = "subject") -> bytes:
    """The subject as wire bytes; ValueError for empty or whitespace-bearing subjects."""
    if not subject or _BAD_SUBJECT.search(subject):
        raise ValueError(f"invalid NATS {what} {subject!r}")
    return subject.encode("utf-8", "surrogateescape")


def connect(options: Mapping[str, Any]) -> bytes:
    return b"CONNECT " + json.dumps(dict(options), separators=(",", ":")).encode() + b"\r\n"


def pub(subject: str, payload: bytes, reply: str | None = None) -> bytes:
    head = [b"PUB", validate_subject(subject)]
    if reply is not None:
        head.append(validate_subject(reply, "reply subject"))
    head.append(str(len(payload)).encode())
    return b" ".join(head) + b"\r\n" + payload + b"\r\n"


def encode_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> bytes:
    """``NATS/1.0\\r\\nK: V\\r\\n...\\r\\n``; ValueError for names/values that would break framing."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    out = [HEADER_LINE]
    for key, value in items:
        if not key or _BAD_HEADER_NAME.search(key):
            raise ValueError(f"invalid NATS header name {key!r}")
        if "\r" in value or "\n" in value:
            raise ValueError(f"invalid NATS header value for {key!r}: contains CR/LF")
        out.append(key.encode("utf-8", "surrogateescape") + b": " + value.encode("utf-8", "surrogateescape"))
    return b"\r\n".join(out) + b"\r\n\r\n"


def hpub(
    subject: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    payload: bytes,
    reply: str | None = None,
) -> bytes:
    block = encode_headers(headers)
    head = [b"HPUB", validate_subject(subject)]
    if reply is not None:
        head.append(validate_subject(reply, "reply subject"))
    head += [str(len(block)).encode(), str(len(block) + len(payload)).encode()]
    return b" ".join(head) + b"\r\n" + block + payload + b"\r\n"


def sub(subject: str, sid: int, queue: str | None = None) -> bytes:
    head = [b"SUB", validate_subject(subject)]
    if queue is not None:
        head.append(validate_subject(queue, "queue group"))
    head.append(str(sid).encode())
    return b" ".join(head) + b"\r\n"


def unsub(sid: int, max_msgs: int | None = None) -> bytes:
    tail = b"" if max_msgs is None else b" " + str(max_msgs).encode()
    return b"UNSUB " + str(sid).encode() + tail + b"\r\n"
