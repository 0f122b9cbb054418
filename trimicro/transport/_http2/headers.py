"""Whether a received header list is well formed (RFC 9113 8.2 and 8.3).

A malformed request, response or trailer block is a *stream* error: the connection resets that one
stream and its other calls carry on. The verdict is memoised on the decoded :class:`~.hpack.Block`,
which the HPACK decoder caches per connection, so a peer repeating its headers (every gRPC client)
has each distinct block checked once.
"""

from __future__ import annotations

import re
from typing import Final

from .hpack import Block

__all__ = ["REQUEST", "RESPONSE", "TRAILERS", "check_headers", "content_length", "valid"]

#: a header name: an RFC 9110 token in lower case
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")
_CONNECTION_HEADERS: Final = frozenset(
    {b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade"}
)
_REQUEST_PSEUDO: Final = frozenset({b":method", b":scheme", b":path", b":authority", b":protocol"})
_RESPONSE_PSEUDO: Final = frozenset({b":status"})
_NO_PSEUDO: Final = frozenset[bytes]()
_REQUIRED_PSEUDO: Final = frozenset({b":method", b":scheme", b":path"})
#: regular header names already found well formed (and not connection-specific)
_GOOD_NAMES: set[bytes] = set()
_GOOD_NAMES_MAX: Final = 1024

#: the kinds of header block, each with its own pseudo-headers
REQUEST, RESPONSE, TRAILERS = 0, 1, 2
_PSEUDO_ALLOWED: Final = {REQUEST: _REQUEST_PSEUDO, RESPONSE: _RESPONSE_PSEUDO, TRAILERS: _NO_PSEUDO}


def valid(block: Block, kind: int) -> bool:
    """Whether ``block`` is a well-formed header list of ``kind``; memoised on the (cached) block."""
    ok = block.checked.get(kind)
    if ok is None:
        ok = block.checked[kind] = check_headers(block.raw, _PSEUDO_ALLOWED[kind], request=kind == REQUEST)
    return ok


def check_headers(raw: list[tuple[bytes, bytes]], allowed_pseudo: frozenset[bytes], *, request: bool) -> bool:
    """RFC 9113 8.2/8.3: lowercase names, pseudo-headers first and known, no connection-specific
    fields, no CR/LF/NUL in values, and a request's required pseudo-headers present.

    Runs once per distinct block, which for gRPC is once per call (``grpc-timeout`` and ids differ
    each time), so it is kept cheap: a name's verdict is a pure function of the name, so good names
    are remembered (a bounded set), and the values are scanned in one regex search, not three per value.
    """
    regular = False
    seen: set[bytes] = set()
    good = _GOOD_NAMES
    for name, value in raw:
        if name[:1] == b":":
            if regular or name not in allowed_pseudo or name in seen or (not value and name != b":authority"):
                return False
            seen.add(name)
            continue
        if name not in good:
            if not _TOKEN.match(name) or name in _CONNECTION_HEADERS:  # the regex rejects upper case too
                return False
            if len(good) >= _GOOD_NAMES_MAX:
                good.clear()
            good.add(name)
        regular = True
        if name == b"te" and value != b"trailers":
            return False
    values = b" ".join([value for _, value in raw])
    if b"\r" in values or b"\n" in values or b"\0" in values:  # memchr each: faster than a regex class
        return False
    if request:
        return _REQUIRED_PSEUDO <= seen
    return seen == allowed_pseudo


def content_length(raw: list[tuple[bytes, bytes]]) -> int | None:
    """A header list's content-length (None if absent); ValueError if malformed or contradictory.

    Why: a request whose DATA does not add up to it is malformed (RFC 9113 8.1.1), so the
    connection counts it down per stream. gRPC never sends one; checked on requests only (a
    response's may legitimately differ, e.g. to HEAD)."""
    found: int | None = None
    for name, value in raw:
        if name == b"content-length":
            for part in value.split(b","):
                part = part.strip()
                if not part.isdigit():
                    raise ValueError("bad content-length")
                if found is not None and int(part) != found:
                    raise ValueError("conflicting content-length values")
                found = int(part)
    return found
