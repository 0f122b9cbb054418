"""The publishing side's HTTP/1.1 client: POST an envelope, read the status; keep-alive pool.

h11 does the protocol; this module moves bytes and keeps idle connections per address (bounded), so
a steady stream of publishes to one subscriber costs one round trip each, not a TCP handshake. A
reused connection the peer closed while idle fails before any reply byte; the request is then sent
once more on a fresh connection (the peer never saw it, so this cannot duplicate a delivery).
"""

from __future__ import annotations

import math

import attrs
import h11
import trio

from ..errors import BrokerError
from ..transport.http import split_address

__all__ = ["PostClient"]

_RECEIVE_SIZE = 64 * 1024
_MAX_REPLY = 64 * 1024  # reply bodies are empty or a short error; more is discarded
_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError)


class _Stale(Exception):
    """A reused connection ended before any reply byte."""


@attrs.define(eq=False)
class _Conn:
    stream: trio.SocketStream
    h11: h11.Connection
    reused: bool = False

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


@attrs.define(eq=False)
class PostClient:
    """POSTs bodies to ``host:port`` targets; ``max_idle`` idle connections kept per address."""

    connect_timeout: float = 5.0
    max_idle: int = 8
    _idle: dict[str, list[_Conn]] = attrs.field(factory=dict, init=False)

    async def post(
        self, address: str, target: str, body: bytes, *, limit: float = math.inf
    ) -> tuple[int, bytes]:
        """Send one POST and return ``(status, reply body)``; BrokerError if the node can't be reached
        or doesn't answer within ``limit`` seconds."""
        with trio.move_on_after(limit) as scope:
            conn = self._take(address)
            if conn is not None:
                try:
                    return await self._exchange(conn, address, target, body)
                except _Stale:
                    pass
            conn = await self._dial(address)
            try:
                return await self._exchange(conn, address, target, body)
            except _Stale:
                raise BrokerError(f"POST {address}{target}: connection closed before a reply") from None
        assert scope.cancelled_caught
        raise BrokerError(f"POST {address}{target}: no reply within {limit:.3g}s")

    def _take(self, address: str) -> _Conn | None:
        idle = self._idle.get(address)
        while idle:
            conn = idle.pop()
            if conn.h11.our_state is h11.IDLE and conn.h11.their_state is h11.IDLE:
                conn.reused = True
                return conn
        return None

    def _give_back(self, address: str, conn: _Conn) -> bool:
        idle = self._idle.setdefault(address, [])
        if len(idle) >= self.max_idle:
            return False
        idle.append(conn)
        return True

    async def _dial(self, address: str) -> _Conn:
        try:
            host, port = split_address(address)
        except ValueError as exc:
            raise BrokerError(str(exc)) from None
        try:
            with trio.fail_after(self.connect_timeout):
                stream = await trio.open_tcp_stream(host, port)
        except (OSError, trio.TooSlowError) as exc:
            raise BrokerError(f"connect to {address}: {exc or 'timed out'}") from None
        return _Conn(stream, h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_REPLY))

    async def _exchange(self, conn: _Conn, address: str, target: str, body: bytes) -> tuple[int, bytes]:
        keep = False
        try:
            status, reply = await self._roundtrip(conn, address, target, body)
            if conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
                conn.h11.start_next_cycle()
                keep = self._give_back(address, conn)
            return status, reply
        except _ERRORS as exc:
            raise BrokerError(f"POST {address}{target}: {exc}") from None
        finally:
            if not keep:
                await conn.aclose()

    async def _roundtrip(self, conn: _Conn, address: str, target: str, body: bytes) -> tuple[int, bytes]:
        c = conn.h11
        request = h11.Request(
            method="POST",
            target=target,
            headers=[
                ("Host", address),
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
            ],
        )
        data = c.send(request) + c.send(h11.Data(data=body)) + c.send(h11.EndOfMessage())
        got_reply_bytes = False
        try:
            await conn.stream.send_all(data)
        except (OSError, trio.BrokenResourceError) as exc:
            if conn.reused:
                raise _Stale() from exc
            raise
        status = 0
        reply = bytearray()
        while True:
            event = c.next_event()
            if event is h11.NEED_DATA:
                try:
                    chunk = await conn.stream.receive_some(_RECEIVE_SIZE)
                except (OSError, trio.BrokenResourceError) as exc:
                    if conn.reused and not got_reply_bytes:
                        raise _Stale() from exc
                    raise
                if not chunk and conn.reused and not got_reply_bytes:
                    raise _Stale()
                got_reply_bytes = got_reply_bytes or bool(chunk)
                c.receive_data(chunk)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                if len(reply) < _MAX_REPLY:
                    reply += event.data[: _MAX_REPLY - len(reply)]
            elif isinstance(event, h11.EndOfMessage):
                return status, bytes(reply)
            elif isinstance(event, h11.ConnectionClosed):
                raise h11.RemoteProtocolError("connection closed before the reply ended")

    async def aclose(self) -> None:
        """Close every idle connection."""
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                await conn.aclose()
