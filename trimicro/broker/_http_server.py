"""The subscribing side's HTTP/1.1 server: one task per connection, h11 for the protocol.

It accepts what Go's ``net/http`` client sends (``POST /?id=...`` with Content-Length, keep-alive,
``Accept-Encoding: gzip`` which we ignore) and anything else HTTP/1.1 allows (chunked bodies,
pipelined requests one at a time). Each complete request is handed to ``dispatch(method, target,
body) -> (status, body)``, whose answer is written before the next request is read, so a publisher
sees the 200 only after the subscriber's handler ran (as with Go's broker). Bodies larger than
``max_body_size`` get a 413 and the connection closes; protocol errors get a 400; idle connections
close after ``idle_timeout``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import attrs
import h11
import trio

__all__ = ["Dispatch", "serve_connection"]

log = logging.getLogger("trimicro.broker")

Dispatch = Callable[[str, str, bytes], Awaitable[tuple[int, bytes]]]

_RECEIVE_SIZE = 64 * 1024
_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Payload Too Large",
    500: b"Internal Server Error",
}
_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


@attrs.frozen
class Limits:
    max_body_size: int = 4 * 1024 * 1024
    max_header_size: int = 64 * 1024
    idle_timeout: float = 60.0
    header_timeout: float = 10.0


class _TooLarge(Exception):
    pass


async def serve_connection(
    stream: trio.abc.Stream,
    dispatch: Dispatch,
    limits: Limits = Limits(),
    on_reject: Callable[[int], None] | None = None,
) -> None:
    """Serve requests on ``stream`` until the peer closes, idles out or breaks the protocol;
    ``on_reject(status)`` is told about requests refused before dispatch (400, 408, 413)."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_size)
    try:
        while True:
            try:
                request = await _read_request(stream, conn, limits)
            except _TooLarge:
                if on_reject is not None:
                    on_reject(413)
                await _respond(stream, conn, 413, b"request body too large", close=True)
                return
            except h11.RemoteProtocolError as exc:
                if on_reject is not None:
                    on_reject(exc.error_status_hint)
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await _respond(stream, conn, exc.error_status_hint, str(exc).encode(), close=True)
                return
            if request is None:
                return
            method, target, body = request
            status, reply = await dispatch(method, target, body)
            await _respond(stream, conn, status, reply)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return
    except _ERRORS as exc:
        log.debug("http broker connection ended: %s", exc)


async def _read_request(
    stream: trio.abc.Stream, conn: h11.Connection, limits: Limits
) -> tuple[str, str, bytes] | None:
    """The next complete request, or None when the connection ended/idled between requests."""
    method = target = ""
    body = bytearray()
    started = False
    deadline = trio.current_time() + limits.idle_timeout
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            with trio.move_on_at(deadline) as scope:
                chunk = await stream.receive_some(_RECEIVE_SIZE)
            if scope.cancelled_caught:
                if started:
                    raise h11.RemoteProtocolError("timed out reading the request", error_status_hint=408)
                return None
            if not started and chunk:
                started = True
                deadline = trio.current_time() + limits.header_timeout
            conn.receive_data(bytes(chunk))
        elif isinstance(event, h11.Request):
            method = event.method.decode("ascii", "replace")
            target = event.target.decode("ascii", "replace")
            deadline = trio.current_time() + limits.idle_timeout
            for name, value in event.headers:
                if name == b"content-length" and int(value) > limits.max_body_size:
                    raise _TooLarge()
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > limits.max_body_size:
                raise _TooLarge()
            deadline = trio.current_time() + limits.idle_timeout
        elif isinstance(event, h11.EndOfMessage):
            return method, target, bytes(body)
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None


async def _respond(
    stream: trio.abc.Stream, conn: h11.Connection, status: int, body: bytes, *, close: bool = False
) -> None:
    headers = [("Content-Length", str(len(body)))]
    if body:
        headers.append(("Content-Type", "text/plain; charset=utf-8"))
    if close:
        headers.append(("Connection", "close"))
    try:
        data = conn.send(h11.Response(status_code=status, headers=headers, reason=_REASONS.get(status, b"")))
        if body:
            data += conn.send(h11.Data(data=body))
        data += conn.send(h11.EndOfMessage())
    except h11.LocalProtocolError:
        return
    await stream.send_all(data)
