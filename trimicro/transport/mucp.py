"""Sans-IO mucp framing: Go Micro's restricted HTTP/1.1 shape, parsed and written without I/O.

mucp (wire/mucp.md) uses HTTP/1.1 as a frame format: every client frame is a request
(``POST / HTTP/1.1``, ``Host``, ``Content-Length``, headers, body) and every server frame is a
``200 OK`` response with ``Content-Length``. Once a connection is open, frames flow each way in any
interleaving (streams send many responses per request), which h11's strict request/response
alternation cannot model; so this module parses the two directions independently, h11-style:

    conn = ServerConnection()
    conn.receive_data(data)            # b"" means EOF
    while (msg := conn.next_message()) is not NEED_DATA:
        ...                            # a Message; raises ProtocolError / EndOfStream / TransportError
    wire = conn.send(Message({...}, body))

It is the hot path, so it is a small strict parser (one ``find`` for the header end, two C-level regex
passes over the header block) rather than a general one, and it is differentially fuzzed against h11
(tests/transport): whenever it accepts input, h11 reads the same headers and body. It is stricter than
h11 in a few documented places, each a clear :class:`~trimicro.errors.ProtocolError`:

- ``Transfer-Encoding`` other than ``chunked`` (501). Chunked bodies *are* accepted (Go Micro's
  client sends its empty frames — a stream's first protobuf frame, every EOS — as ``0\r\n\r\n``
  chunked bodies; docs/go-micro-facts.md), with the same body limit, chunk extensions ignored and
  trailers discarded;
- bare ``\\n`` line endings and obsolete header line folding (400);
- requests with both ``Content-Length`` and ``Transfer-Encoding``, or chunked on HTTP/1.0 (400: the
  framing a proxy in front might pick differs, RFC 9112 6.1 request smuggling);
- HTTP versions other than 1.0 and 1.1 (400).

Header names are canonicalised (``micro-id`` -> ``Micro-Id``); the first of repeated headers wins, as
Go's ``Header.Get``; ``X-Micro-Foo`` also fills ``Micro-Foo`` when that is absent. The framing headers
``Content-Length``, ``Host`` and ``Transfer-Encoding`` are consumed, not reported, and never taken from
an outgoing message. Values are decoded as UTF-8 with ``surrogateescape`` so any byte round-trips.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from typing import Final, Literal

from .._metadata import MICRO_ID, MICRO_STREAM, TIMEOUT, X_MICRO_PREFIX, canonical
from ..errors import ProtocolError, TransportError
from ._base import Message

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_HEADER_SIZE",
    "H2_PREFACE",
    "NEED_DATA",
    "ClientConnection",
    "EndOfStream",
    "FrameState",
    "ServerConnection",
]

DEFAULT_MAX_HEADER_SIZE: Final = 64 * 1024
DEFAULT_MAX_BODY_SIZE: Final = 4 * 1024 * 1024
H2_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class _Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return self.value


NEED_DATA: Final = _Sentinel.NEED_DATA
"""Returned by ``next_message`` when more bytes are needed to complete a frame."""


class EndOfStream(Exception):
    """The peer closed the connection cleanly, between frames."""


class FrameState(enum.Enum):
    """Where the parser is within the incoming frame (the trio adapter picks timeouts from it)."""

    IDLE = "idle"  # no byte of the next frame received yet
    HEADERS = "headers"  # part of a frame's start line / headers received
    BODY = "body"  # headers complete, waiting for the body
    ERROR = "error"  # a ProtocolError was raised; the input cannot be resynchronised


# RFC 7230 grammar, as h11 spells it (h11/_abnf.py). Patterns run on text decoded with
# surrogateescape under re.ASCII, which classifies every byte exactly as h11's bytes patterns do.
# A header value is any run of bytes but NUL, CR, LF, VT and FF, with surrounding SP/HTAB stripped:
# the same set h11's field-value pattern accepts.
_TOKEN = r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_VCHAR = r"[^\x00\s]"  # h11 also admits other control characters and obs-text
_TOKEN_RE = re.compile(_TOKEN, re.ASCII)
_BAD_VALUE_RE = re.compile(r"[\x00\x0b\x0c\r\n]")
_NAMES: dict[str, str] = {}  # validated header name -> canonical form
_REQUEST_LINE_RE = re.compile(rf"{_TOKEN} [\x21-\x7e]+ HTTP/1\.([01])", re.ASCII)
_STATUS_LINE_RE = re.compile(rf"HTTP/1\.[01] ([0-9]{{3}})(?: (?:[ \t]|{_VCHAR})*)?", re.ASCII)
_HOST_RE = re.compile(r"[\x21-\x7e]+", re.ASCII)
_BARE_LF_RE = re.compile(rb"(?<!\r)\n")


def _has_ctl(text: str) -> bool:
    """True if ``text`` holds NUL, VT or FF (CR and LF are counted by the callers).

    Three single-character searches, not a regex character class: each is a memchr over the
    block, where the regex tests every character against its class, about 20x slower (2 µs on a
    250-character header block, four blocks per unary call)."""
    return "\x00" in text or "\x0b" in text or "\x0c" in text


_CL_MAX_DIGITS: Final = 20  # as h11
_FRAMING: Final = frozenset({"Content-Length", "Host", "Transfer-Encoding"})
_SKIP_OUT: Final = frozenset({"Content-Length", "Host", "Transfer-Encoding", "Trailer"})


def _show(text: str | bytes, limit: int = 80) -> str:
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


class _Connection:
    """Shared incoming-frame parser; subclasses say what a start line looks like."""

    __slots__ = (
        "_buf",
        "_chunked",
        "_eof",
        "_error",
        "_length",
        "_max_body",
        "_max_header",
        "_memo",
        "_memo_key",
        "_out",
        "_pending",
        "_search_from",
        "_start",
        "_status",
    )

    _is_request: bool = True

    def __init__(
        self, *, max_header_size: int = DEFAULT_MAX_HEADER_SIZE, max_body_size: int = DEFAULT_MAX_BODY_SIZE
    ) -> None:
        self._max_header = max_header_size
        self._max_body = max_body_size
        self._buf = bytearray()
        self._eof = False
        self._error: ProtocolError | None = None
        self._pending: dict[str, str] | None = None  # headers of the frame whose body we await
        self._length = 0  # its body length; -1 = until EOF (responses only); _CHUNKED = chunked
        self._chunked = bytearray()  # chunked body collected so far
        self._status = 200
        self._search_from = 0
        self._memo_key: str | None = None  # the last header block, without its Content-Length line
        self._memo: tuple[dict[str, str], bool, int] | None = None  # its parse, once it repeated
        self._out: tuple[dict[str, str], bytes] | None = None  # a stream's header, encoded
        self._start = b"HTTP/1.1 200 OK\r\nContent-Length: "  # up to the length of each frame

    # -- output -----------------------------------------------------------------------------------

    def _frame(self, msg: Message) -> bytes:
        """Start line + length + headers + body; a stream's header (``Micro-Stream``, the same on each
        of its frames) is encoded once."""
        header = msg.header
        out = self._out
        if out is not None and out[0] == header:
            fields = out[1]
        else:
            fields = _fields(header)
            self._out = (dict(header), fields) if header.get(MICRO_STREAM) else None
        body = msg.body
        return b"%s%d%s%s" % (self._start, len(body), fields, body)

    # -- input ------------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes read from the peer; ``b""`` records EOF."""
        if data:
            if self._eof:
                raise RuntimeError("received data after EOF")
            self._buf += data
        else:
            self._eof = True

    @property
    def state(self) -> FrameState:
        if self._error is not None:
            return FrameState.ERROR
        if self._pending is not None:
            return FrameState.BODY
        return FrameState.HEADERS if self._buf else FrameState.IDLE

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buf)

    def next_message(self) -> Message | Literal[_Sentinel.NEED_DATA]:
        """The next complete frame, or :data:`NEED_DATA`.

        Raises :class:`~trimicro.errors.ProtocolError` on malformed or oversized input (and again on
        every later call: the stream cannot be resynchronised), :class:`EndOfStream` after a clean EOF
        between frames, and :class:`~trimicro.errors.TransportError` on EOF inside a frame.
        """
        if self._error is not None:
            raise self._error
        while True:
            if self._pending is None:
                try:
                    if not self._read_head():
                        return NEED_DATA
                except ProtocolError as exc:
                    self._error = exc
                    raise
            assert self._pending is not None
            buf, length = self._buf, self._length
            if length == _CHUNKED:
                try:
                    body_or_none = self._read_chunks()
                except ProtocolError as exc:
                    self._error = exc
                    raise
                if body_or_none is None:
                    return NEED_DATA
                header, self._pending = self._pending, None
                if self._status == 200:
                    return Message(header, body_or_none)
                raise ProtocolError(f"unexpected HTTP status {self._status}", code=self._status)
            if length < 0 or len(buf) < length:
                if not self._eof:
                    return NEED_DATA
                if length >= 0:
                    raise TransportError(f"unexpected EOF: got {len(buf)} of {length} body bytes")
                length = len(buf)
            body = bytes(buf[:length])
            del buf[:length]
            header, self._pending = self._pending, None
            if self._status == 200:
                return Message(header, body)
            if self._status >= 200:
                # The frame is consumed, so the stream stays usable; Go's client fails the same way.
                raise ProtocolError(
                    f"unexpected HTTP status {self._status}: {_show(body)}", code=self._status
                )
            # 1xx informational responses precede the real one: skip them.

    def _read_head(self) -> bool:
        """Parse one start line + headers into ``_pending``; False if incomplete."""
        buf = self._buf
        if not buf:
            if self._eof:
                raise EndOfStream()
            return False
        end = buf.find(b"\r\n\r\n", self._search_from)
        if end < 0:
            if buf[0] < 0x21:
                raise ProtocolError(f"malformed start line: {_show(bytes(buf[:80]))}")
            if len(buf) > self._max_header:
                raise ProtocolError(f"headers exceed {self._max_header} bytes", code=431)
            if _BARE_LF_RE.search(buf):
                raise ProtocolError("bare LF line ending in headers (CRLF required)")
            if self._eof:
                raise TransportError(f"unexpected EOF in frame headers after {len(buf)} bytes")
            self._search_from = max(0, len(buf) - 3)
            return False
        self._search_from = 0
        if end + 4 > self._max_header:
            raise ProtocolError(f"headers exceed {self._max_header} bytes", code=431)
        head = buf[: end + 2].decode("utf-8", "surrogateescape")
        nl = head.find("\r\n")
        start, block = head[:nl], head[nl + 2 :]
        starts = _STARTS[self._is_request]
        parsed = starts.get(start)
        if parsed is None:
            parsed = _start_line(start, self._is_request)
            if len(starts) >= _CACHE_SIZE:
                starts.clear()
            starts[start] = parsed
        http11, self._status = parsed
        # Frames of one stream repeat their header block but for Content-Length: a per-connection memo
        # keyed on the block without that line, filled once a key repeats (streams only: unary calls
        # differ in their ids).
        memo_key = None
        cl_value = ""
        i = block.find("Content-Length: ") if _STREAM_LINE in block else -1
        if i == 0 or (i > 0 and block[i - 2 : i] == "\r\n"):
            j = block.index("\r\n", i)
            cl_value = block[i + 16 : j]
            memo_key = block[:i] + block[j + 2 :]
        memo = self._memo
        if memo is not None and memo_key == self._memo_key:
            # The rest was validated before; the Content-Length value is checked here (digits only).
            header = dict(memo[0])
            clen: str | None = _content_length(cl_value.strip(" \t"), None)
            chunked, hosts = memo[1], memo[2]
        else:
            lines = block.split("\r\n")
            lines.pop()  # the block ends with CRLF
            n = len(lines)
            if block.count("\r") != n or block.count("\n") != n or _has_ctl(block):
                raise ProtocolError(f"malformed header block: {_show(block)}")
            header, clen, chunked, hosts, lengths = _parse_fields(lines)
            if memo_key is not None and lengths == 1 and memo_key == self._memo_key:
                self._memo = (dict(header), chunked, hosts)
            else:
                self._memo_key, self._memo = memo_key, None
        if self._is_request and (hosts > 1 or (http11 and hosts == 0)):
            raise ProtocolError("a request needs exactly one Host header")
        if self._is_request and chunked and (clen is not None or not http11):
            # Request smuggling (RFC 9112 6.1): a front proxy may frame this request by the other
            # header, so the rest would be read as a second request. Reject, and the server closes.
            why = "both Content-Length and Transfer-Encoding" if clen is not None else "chunked on HTTP/1.0"
            raise ProtocolError(f"ambiguous request framing: {why}")

        status = self._status
        if not self._is_request and (status < 200 or status in (204, 304)):
            length = 0  # no body, whatever the headers say (RFC 7230 3.3.3)
        elif chunked:
            length = _CHUNKED  # Transfer-Encoding wins over Content-Length (RFC 7230 3.3.3)
            self._chunked.clear()
        elif clen is not None:
            length = int(clen)
        else:
            length = 0 if self._is_request else -1  # a response without length runs to EOF
        if length > self._max_body:
            raise ProtocolError(f"body of {length} bytes exceeds {self._max_body}", code=413)
        del buf[: end + 4]
        self._pending = header
        self._length = length
        return True

    def _read_chunks(self) -> bytes | None:
        """Consume complete chunks from the buffer; the body once the last chunk is in, else None."""
        buf, out = self._buf, self._chunked
        while True:
            nl = buf.find(b"\r\n")
            if nl < 0:
                if len(buf) > 1024:
                    raise ProtocolError("chunk size line too long")
                self._check_eof("chunk size")
                return None
            line = bytes(buf[:nl]).split(b";", 1)[0].strip()
            if not line or len(line) > 16 or any(c not in _HEX for c in line):
                raise ProtocolError(f"bad chunk size {_show(line)}")
            size = int(line, 16)
            if size == 0:
                # Trailer section: header lines until an empty line; trailers are discarded.
                if buf[nl + 2 : nl + 4] == b"\r\n":
                    del buf[: nl + 4]
                else:
                    term = buf.find(b"\r\n\r\n", nl)
                    if term < 0:
                        if len(buf) > self._max_header:
                            raise ProtocolError("chunked trailers too large", code=431)
                        self._check_eof("chunked trailers")
                        return None
                    del buf[: term + 4]
                body = bytes(out)
                out.clear()
                return body
            if len(out) + size > self._max_body:
                raise ProtocolError(f"chunked body exceeds {self._max_body} bytes", code=413)
            if len(buf) < nl + 2 + size + 2:
                self._check_eof("chunk data")
                return None
            if buf[nl + 2 + size : nl + 4 + size] != b"\r\n":
                raise ProtocolError("chunk data not followed by CRLF")
            out += buf[nl + 2 : nl + 2 + size]
            del buf[: nl + 4 + size]

    def _check_eof(self, what: str) -> None:
        if self._eof:
            raise TransportError(f"unexpected EOF in {what}")


_CHUNKED: Final = -2

# Parse caches: the start line and most header lines repeat on every frame of a connection (and
# across connections), so each distinct line is validated and split once. Lines whose value changes
# per frame are not cached (a traced call's ``Traceparent`` too: cached, each call's new line would
# empty the cache every 1,024 calls); a full cache is emptied rather than left to go stale.
_CACHE_SIZE: Final = 1024
_VOLATILE: Final = frozenset({MICRO_ID, MICRO_STREAM, TIMEOUT, "Traceparent"})
_STREAM_LINE: Final = f"{MICRO_STREAM}: "  # a stream's frames carry this header line
_LINES: dict[str, tuple[str, str]] = {}
_STARTS: dict[bool, dict[str, tuple[bool, int]]] = {True: {}, False: {}}
_PREFIXES: dict[str, str] = {}  # outgoing header name -> "Canonical-Name: ", or "" if not sent


def _start_line(start: str, is_request: bool) -> tuple[bool, int]:
    """Validate a request or status line: (is HTTP/1.1 request, status)."""
    if is_request:
        m = _REQUEST_LINE_RE.fullmatch(start)
        if m is None:
            raise ProtocolError(f"malformed request line: {_show(start)}")
        return m.group(1) == "1", 200
    m = _STATUS_LINE_RE.fullmatch(start)
    if m is None or m.group(1)[0] == "0":  # status codes are 100-999, as h11 reads them
        raise ProtocolError(f"malformed status line: {_show(start)}")
    return False, int(m.group(1))


def _parse_fields(lines: list[str]) -> tuple[dict[str, str], str | None, bool, int, int]:
    """Header lines -> (headers, Content-Length, chunked, Host count, Content-Length line count)."""
    header: dict[str, str] = {}
    clen: str | None = None
    chunked = False
    hosts = lengths = 0
    xmicro = False
    cache = _LINES
    for line in lines:
        kv = cache.get(line)
        if kv is None:
            kv = _header_line(line)
            if kv[0] not in _VOLATILE:
                if len(cache) >= _CACHE_SIZE:
                    cache.clear()
                cache[line] = kv
        key, value = kv
        if key in _FRAMING:
            if key == "Content-Length":
                clen = _content_length(value, clen)
                lengths += 1
            elif key == "Host":
                hosts += 1
            elif value.lower() == "chunked":
                chunked = True
            else:
                raise ProtocolError(f"unsupported Transfer-Encoding {_show(value)}", code=501)
        elif key not in header:
            header[key] = value
            if key[0] == "X" and key.startswith(X_MICRO_PREFIX):
                xmicro = True
    if xmicro:
        for key in [k for k in header if k.startswith(X_MICRO_PREFIX)]:
            header.setdefault(key[2:], header[key])
    return header, clen, chunked, hosts, lengths


def _header_line(line: str) -> tuple[str, str]:
    """``Name: value`` -> (canonical name, value without surrounding SP/HTAB)."""
    name, colon, value = line.partition(":")
    key = _NAMES.get(name) if colon else None  # a line without a colon is malformed, known name or not
    if key is None:
        if not colon or _TOKEN_RE.fullmatch(name) is None:
            raise ProtocolError(f"malformed header line: {_show(line)}")
        key = _name(name)
    return key, value.strip(" \t")


_HEX: Final = frozenset(b"0123456789abcdefABCDEF")


def _content_length(value: str, seen: str | None) -> str:
    """Validate one Content-Length value (h11's rules: digits, equal repeats merge)."""
    values = {v.strip() for v in value.split(",")} if "," in value else {value}
    if len(values) != 1:
        raise ProtocolError("conflicting Content-Length headers")
    v = values.pop()
    if not v.isdigit() or not v.isascii() or len(v) > _CL_MAX_DIGITS:
        raise ProtocolError(f"bad Content-Length {_show(v)}")
    if seen is not None and seen != v:
        raise ProtocolError("conflicting Content-Length headers")
    return v


def _name(name: str) -> str:
    """Canonical form of a header name, validated as an HTTP token (cached)."""
    key = _NAMES.get(name)
    if key is None:
        if _TOKEN_RE.fullmatch(name) is None:
            raise ProtocolError(f"invalid header name {_show(name)}")
        key = canonical(name)
        if len(_NAMES) < 4096:
            _NAMES[name] = key
    return key


def _fields(header: dict[str, str]) -> bytes:
    """The header lines of a frame after ``Content-Length``, through the empty line ending them."""
    parts = []
    prefixes = _PREFIXES
    for k, v in header.items():
        prefix = prefixes.get(k)
        if prefix is None:
            key = _name(k)
            prefix = "" if key in _SKIP_OUT else f"{key}: "
            if len(prefixes) >= _CACHE_SIZE:
                prefixes.clear()
            prefixes[k] = prefix
        if prefix:
            parts.append(f"{prefix}{v}\r\n")
    fields = "".join(parts)
    n = len(parts)
    if fields.count("\r") != n or fields.count("\n") != n or _has_ctl(fields):
        bad = [k for k, v in header.items() if _BAD_VALUE_RE.search(v)]
        raise ProtocolError(
            f"cannot send header {_show(bad[0] if bad else fields)}: control character in value"
        )
    try:
        return f"\r\n{fields}\r\n".encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise ProtocolError(f"cannot encode header: {exc}") from None


class ServerConnection(_Connection):
    """The server side: parses request frames, writes ``200 OK`` response frames."""

    __slots__ = ()
    _is_request = True

    def send(self, msg: Message) -> bytes:
        """Bytes of one response frame. Raises ProtocolError for header names/values HTTP cannot carry."""
        return self._frame(msg)

    def send_many(self, msgs: Iterable[Message]) -> bytes:
        """Bytes of several response frames, for one coalesced write."""
        return b"".join([self._frame(m) for m in msgs])


class ClientConnection(_Connection):
    """The client side: writes ``POST /`` request frames, parses response frames.

    ``host`` is sent in the ``Host`` header (Go sends the dialled address). Non-200 responses are
    consumed and raised as ProtocolError with ``code`` set to the status; parsing can continue after.
    """

    __slots__ = ()
    _is_request = False

    def __init__(
        self,
        host: str = "localhost",
        *,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    ) -> None:
        super().__init__(max_header_size=max_header_size, max_body_size=max_body_size)
        if _HOST_RE.fullmatch(host) is None:
            raise ValueError(f"invalid Host {host!r}")
        self._start = f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: ".encode()

    def send(self, msg: Message) -> bytes:
        """Bytes of one request frame. Raises ProtocolError for header names/values HTTP cannot carry."""
        return self._frame(msg)

    def send_many(self, msgs: Iterable[Message]) -> bytes:
        """Bytes of several request frames, for one coalesced write."""
        return b"".join([self._frame(m) for m in msgs])
