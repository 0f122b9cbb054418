"""The observability listener: a small HTTP/1.1 server (h11) for ``/metrics`` and the health probes.

Why its own listener and not the service port: probes and scrapes must keep answering while the
service port drains (a readiness probe that cannot connect says nothing about *why*), and they must
not count as calls. It is deliberately small: GET/HEAD only, one request at a time per connection,
keep-alive, bounded header size and idle time, every connection a task of the listener's nursery.

``:9090`` (empty host) binds 127.0.0.1, not every interface: exposing metrics is an explicit choice
(``0.0.0.0:9090``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import attrs
import h11
import trio

__all__ = ["HttpListener", "Response", "Route", "split_address"]

log = logging.getLogger("trimicro.observability")

_MAX_HEADER = 16 * 1024
_IDLE_TIMEOUT = 30.0


@attrs.frozen
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"


#: ``route() -> Response``, called once per request
Route = Callable[[], Awaitable[Response]]


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` with an empty host meaning loopback (``":9090"`` -> ``("127.0.0.1", 9090)``)."""
    host, sep, port = address.rpartition(":")
    if not sep:
        raise ValueError(f"metrics address {address!r} is not host:port")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


@attrs.define(eq=False)
class HttpListener:
    """Serves ``routes`` (path -> :data:`Route`) on ``address`` until cancelled."""

    address: str
    routes: Mapping[str, Route]
    bound: str = attrs.field(default="", init=False)

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, report ``host:port`` bound, serve until cancelled."""
        host, port = split_address(self.address)
        listeners = await trio.open_tcp_listeners(port, host=host)
        sock = listeners[0].socket
        name = sock.getsockname()
        self.bound = f"[{name[0]}]:{name[1]}" if ":" in name[0] else f"{name[0]}:{name[1]}"
        log.info("observability listener on http://%s (/metrics, /health)", self.bound)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._connection, listeners)
                task_status.started(self.bound)
        finally:
            with trio.CancelScope(shield=True):
                for listener in listeners:
                    await listener.aclose()

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADER)
        try:
            while True:
                with trio.move_on_after(_IDLE_TIMEOUT) as idle:
                    request = await self._next_request(stream, conn)
                if idle.cancelled_caught or request is None:
                    return
                await self._answer(stream, conn, request)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _next_request(self, stream: trio.SocketStream, conn: h11.Connection) -> h11.Request | None:
        request: h11.Request | None = None
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                await self._send(stream, conn, Response(400, b"bad request\n", "text/plain"))
                return None
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return None
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.EndOfMessage):
                return request
            elif isinstance(event, h11.ConnectionClosed):
                return None

    async def _answer(self, stream: trio.SocketStream, conn: h11.Connection, request: h11.Request) -> None:
        method = request.method.decode("ascii", "replace")
        path = request.target.decode("ascii", "replace").partition("?")[0]
        route = self.routes.get(path)
        if method not in ("GET", "HEAD"):
            rsp = Response(405, b"method not allowed\n", "text/plain")
        elif route is None:
            rsp = Response(404, b"not found\n", "text/plain")
        else:
            try:
                rsp = await route()
            except Exception:
                log.exception("observability route %s failed", path)
                rsp = Response(500, b"internal error\n", "text/plain")
        await self._send(stream, conn, rsp, head=method == "HEAD")

    async def _send(
        self, stream: trio.SocketStream, conn: h11.Connection, rsp: Response, *, head: bool = False
    ) -> None:
        headers = [
            ("content-type", rsp.content_type),
            ("content-length", str(len(rsp.body))),
            ("cache-control", "no-store"),
        ]
        out = conn.send(h11.Response(status_code=rsp.status, headers=headers)) or b""
        if not head and rsp.body:
            out += conn.send(h11.Data(data=rsp.body)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        await stream.send_all(out)
