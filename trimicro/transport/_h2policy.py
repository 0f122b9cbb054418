"""Time limits on a server's HTTP/2 connection: header-block and idle timeouts, keepalive PINGs.

Why a module of its own: the sans-IO engine (:mod:`._http2`) has no clock, and these limits are
what a connection does when *nothing* arrives, so they live in the server's read loop, which this
module provides (:func:`read_loop`, run by ``H2ServerConn.run_reader``). What each limit stops:

- ``header_timeout``: a HEADERS without END_HEADERS whose CONTINUATION never comes would hold the
  connection (and every other frame on it: RFC 9113 forbids interleaving) forever; after it, the
  connection gets GOAWAY(PROTOCOL_ERROR) and is closed;
- ``idle_timeout``: a connection with no open stream for that long gets GOAWAY(NO_ERROR) and is
  closed (gRPC's ``max_connection_idle``); clients reconnect on their next call;
- ``keepalive_time`` / ``keepalive_timeout``: after ``keepalive_time`` with nothing read we send a
  PING; if nothing arrives (the ACK included) within ``keepalive_timeout`` the peer is presumed
  gone and the connection is closed, so half-open TCP connections do not pile up;
- ``min_ping_interval``: the other direction, enforced in :class:`._http2.flood.FloodGuard`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import attrs
import trio

from ..errors import TransportError
from . import _http2 as h2p

if TYPE_CHECKING:
    from ._h2server import H2ServerConn

__all__ = ["H2Policy", "read_loop"]

_READ_SIZE = 65536


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be a positive number of seconds, got {value!r}")


@attrs.frozen
class H2Policy:
    """The time limits of a server's HTTP/2 connections (seconds; ``math.inf`` disables one)."""

    header_timeout: float = attrs.field(default=10.0, validator=_positive)
    idle_timeout: float = attrs.field(default=300.0, validator=_positive)
    #: gRPC's default: 2 hours without reads, then a PING
    keepalive_time: float = attrs.field(default=7200.0, validator=_positive)
    keepalive_timeout: float = attrs.field(default=20.0, validator=_positive)
    #: gRPC's ``min_time`` (default 5 minutes): pings more often than that are strikes
    min_ping_interval: float = attrs.field(default=300.0, validator=_positive)


async def read_loop(conn: H2ServerConn, policy: H2Policy) -> None:
    """Read and feed ``conn`` until it ends, applying ``policy``'s time limits.

    One cancel scope covers many reads: its deadline is only ever moved *earlier* (a header block
    began), never re-armed per read, since entering a scope and registering its deadline on every
    read was a measurable part of each call. Reads push the keepalive deadline later, so the scope
    may fire early; then the limits are recomputed and, if nothing is due yet, a new scope starts."""
    h2 = conn.h2
    last_read = trio.current_time()
    block_since: float | None = None
    idle_since: float | None = None
    ping_sent: float | None = None

    def next_limit(now: float) -> tuple[float, str]:
        nonlocal block_since, idle_since
        when, what = math.inf, ""
        if h2.header_block_pending:
            block_since = now if block_since is None else block_since
            when, what = block_since + policy.header_timeout, "header"
        else:
            block_since = None
        if not conn.streams and not conn.handlers and not h2.closed:
            idle_since = now if idle_since is None else idle_since
            if idle_since + policy.idle_timeout < when:
                when, what = idle_since + policy.idle_timeout, "idle"
        else:
            idle_since = None
        if ping_sent is not None:
            if ping_sent + policy.keepalive_timeout < when:
                when, what = ping_sent + policy.keepalive_timeout, "ack"
        elif last_read + policy.keepalive_time < when:
            when, what = last_read + policy.keepalive_time, "ping"
        return when, what

    while conn.closed is None:
        when, what = next_limit(trio.current_time())
        if when > trio.current_time():
            with trio.move_on_at(when) as scope:
                while True:
                    try:
                        data = await conn.receive_some(_READ_SIZE)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                        conn.lose(TransportError(f"HTTP/2 connection lost: {exc}"))
                        return
                    if not data:
                        conn.lose(TransportError("HTTP/2 connection closed by peer"))
                        return
                    last_read = trio.current_time()
                    ping_sent = None
                    if not await conn.feed(data):
                        return
                    sooner, _ = next_limit(last_read)
                    if sooner < scope.deadline:
                        scope.deadline = sooner
            if not scope.cancelled_caught:
                continue  # pragma: no cover - the loop above only ends by returning or the deadline
            when, what = next_limit(trio.current_time())
            if when > trio.current_time():
                continue  # the deadline moved on while reading: nothing is due yet
        if what == "header":
            h2.close_connection(h2p.ErrorCode.PROTOCOL_ERROR, b"header block timeout")
            await conn.flush_control()
            conn.lose(TransportError(f"no CONTINUATION within {policy.header_timeout} s"))
            return
        elif what == "idle":
            conn.send_goaway()  # the writer closes the connection once it is written
            idle_since = None
        elif what == "ping":
            h2.send_ping()
            conn.wake()
            ping_sent = trio.current_time()
        elif what == "ack":
            conn.lose(TransportError(f"no PING ACK within {policy.keepalive_timeout} s"))
            return
