"""The mucp server: one task per connection, frames in, replies out, errors never kill it.

Lifecycle: ``await nursery.start(server.serve)`` returns once listening; ``server.drain(grace)`` stops
reading new requests, lets in-flight calls finish within ``grace`` seconds and returns; cancelling
``serve`` then closes everything. A unary connection processes frames in order (pipelining allowed);
a frame with ``Micro-Stream`` turns its connection into one stream.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio

from .. import errors
from .._metadata import (
    CONTENT_TYPE,
    MICRO_ENDPOINT,
    MICRO_ERROR,
    MICRO_ERROR_DETAILS,
    MICRO_ID,
    MICRO_METHOD,
    MICRO_RETRY_AFTER,
    MICRO_SERVICE,
    MICRO_STREAM,
    ROUTING_HEADERS,
    TIMEOUT,
    X_MICRO_PREFIX,
    InvalidTimeout,
    decode_timeout,
)
from ..codec import Codec, get_codec
from ..context import Context, reset_incoming, set_incoming
from ..errors import CodecError, MicroError, ProtocolError, TransportError
from ..stream import MucpStreamCore, Stream
from ..transport import H2Handler, Listener, Message, Socket, Transport
from ._limit import HandlerLimit, Overloaded
from ._router import SERVER_ID, Request, Route, Router

__all__ = ["Server", "Stats"]

log = logging.getLogger("trimicro.server")

# Header names kept on replies: the routing facts Go Micro's rpc codec writes back.
_ECHO = (MICRO_ID, MICRO_SERVICE, MICRO_ENDPOINT, MICRO_METHOD, MICRO_STREAM)


@attrs.define
class Stats:
    """Counters behind ``Debug.Stats``."""

    started: float = attrs.field(factory=time.time)
    requests: int = 0
    errors: int = 0
    streams: int = 0
    in_flight: int = 0


def _reply_header(header: dict[str, str], content_type: str) -> dict[str, str]:
    out = {k: header[k] for k in _ECHO if k in header}
    if MICRO_ENDPOINT in out and MICRO_METHOD not in out:
        out[MICRO_METHOD] = out[MICRO_ENDPOINT]
    out[CONTENT_TYPE] = content_type
    return out


def _error_reply(header: dict[str, str], content_type: str, err: MicroError) -> Message:
    out = _reply_header(header, content_type)
    out[MICRO_ERROR] = err.to_json()
    if err.details:
        out[MICRO_ERROR_DETAILS] = errors.encode_details(err.details)
    if isinstance(err, Overloaded):
        out[MICRO_RETRY_AFTER] = f"{err.retry_after:g}"
    return Message(out, b"")


def _normalise(header: dict[str, str]) -> dict[str, str]:
    """Fill Micro-Endpoint/Micro-Method from each other (wire/mucp.md)."""
    ep = header.get(MICRO_ENDPOINT)
    if ep is None and MICRO_METHOD in header:
        header[MICRO_ENDPOINT] = header[MICRO_METHOD]
    elif ep is not None and MICRO_METHOD not in header:
        header[MICRO_METHOD] = ep
    return header


def _metadata(header: dict[str, str]) -> dict[str, str]:
    return {
        k: v
        for k, v in header.items()
        if k not in ROUTING_HEADERS and not (k.startswith(X_MICRO_PREFIX) and k[2:] in ROUTING_HEADERS)
    }


# A unary handler still running after this long gets a watcher task reading its connection, so a
# peer that goes away cancels it (see Server._connection). Detection takes up to twice this.
_WATCH_AFTER = 0.05


@attrs.define(eq=False)
class _Conn:
    """Per-connection state shared by the frame loop, the server's sweeper and the watcher task."""

    sock: Socket
    nursery: trio.Nursery
    gone: bool = False
    #: how drain stops a wait for the next frame: the socket's ``interrupt_idle`` (HttpSocket), or
    #: else a cancel scope around each wait; ``waiting`` / ``idle_scope`` say a wait is on
    interrupt_idle: Callable[[], None] | None = None
    waiting: bool = False
    idle_scope: trio.CancelScope | None = None
    handler_scope: trio.CancelScope | None = None
    #: calls started on this connection; the sweeper compares it between two sweeps
    calls: int = 0
    seen: int = -1
    #: the watcher's scope and its end, and the frame (or input error) it read ahead
    watch_scope: trio.CancelScope | None = None
    watch_done: trio.Event | None = None
    ahead: Message | ProtocolError | None = None

    def peer_gone(self) -> None:
        self.gone = True
        if self.handler_scope is not None:
            self.handler_scope.cancel()

    def set_handler_scope(self, scope: trio.CancelScope) -> None:
        """``invoke``'s deadline scope for the running call: the one a departed peer cancels."""
        self.handler_scope = scope
        if self.gone:
            scope.cancel()

    def watch(self) -> None:
        """Start reading the connection while the current (slow) handler runs."""
        self.watch_scope = trio.CancelScope()
        self.watch_done = trio.Event()
        self.nursery.start_soon(self._watcher, self.watch_scope, self.watch_done)

    async def _watcher(self, scope: trio.CancelScope, done: trio.Event) -> None:
        try:
            with scope:
                try:
                    self.ahead = await self.sock.receive()  # a pipelined frame is kept, in order
                except (trio.EndOfChannel, TransportError):
                    self.peer_gone()
                except ProtocolError as exc:
                    self.ahead = exc
        finally:
            done.set()

    async def unwatch(self) -> None:
        """Stop the watcher (if any) and wait for it, so only the frame loop reads from here on."""
        if self.watch_scope is not None and self.watch_done is not None:
            self.watch_scope.cancel()
            await self.watch_done.wait()
            self.watch_scope = self.watch_done = None


@attrs.define(eq=False)
class Server:
    """Serves a :class:`Router` on a transport listener."""

    name: str
    router: Router
    transport: Transport
    address: str = "127.0.0.1:0"
    stats: Stats = attrs.field(factory=Stats)
    limit: HandlerLimit = attrs.field(factory=HandlerLimit)
    #: optional HTTP/2 handler for the one port (gRPC), given the raw stream and sniffed bytes
    h2_handler: H2Handler | None = None
    listener: Listener | None = attrs.field(default=None, init=False)
    _draining: bool = attrs.field(default=False, init=False)
    #: called when a drain starts (the gRPC server sends GOAWAY on its connections)
    on_drain: list[Callable[[], None]] = attrs.field(factory=list, init=False)
    _conns: set[_Conn] = attrs.field(factory=set, init=False)
    _busy: set[_Conn] = attrs.field(factory=set, init=False)
    _idle: trio.Event = attrs.field(factory=trio.Event, init=False)
    _serve_scope: trio.CancelScope | None = attrs.field(default=None, init=False)

    @property
    def bound_address(self) -> str:
        if self.listener is None:
            raise RuntimeError("server is not listening")
        return self.listener.address

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled; ``task_status.started(address)`` once bound."""
        if self.h2_handler is not None:
            listener = await self.transport.listen(self.address, h2_handler=self.h2_handler)
        else:
            listener = await self.transport.listen(self.address)
        self.listener = listener
        try:
            with trio.CancelScope() as self._serve_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._sweeper)
                    await listener.serve(self._connection, task_status=task_status)
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await listener.aclose()

    async def drain(self, grace: float) -> None:
        """Stop taking requests; wait up to ``grace`` seconds for in-flight calls to finish."""
        self._draining = True
        for hook in self.on_drain:
            hook()
        for conn in list(self._conns):
            # Only a frame loop waiting for its next frame is stopped. A running call (maybe with a
            # watcher reading ahead) or an open stream (whose reader also waits for frames) is left to
            # finish; its connection loop sees ``_draining`` afterwards and closes.
            if conn.interrupt_idle is not None:
                if conn.waiting:
                    conn.interrupt_idle()
            elif conn.idle_scope is not None:
                conn.idle_scope.cancel()
        with trio.move_on_after(grace):
            while self.stats.in_flight:
                self._idle = trio.Event()
                await self._idle.wait()

    @property
    def draining(self) -> bool:
        """True once :meth:`drain` began: connections finish their current call and close."""
        return self._draining

    def enter_call(self) -> None:
        """Count a call in flight (any transport), so :meth:`drain` waits for it."""
        self.stats.in_flight += 1

    def exit_call(self) -> None:
        self.stats.in_flight -= 1
        if self.stats.in_flight == 0:
            self._idle.set()

    # -- per connection --
    async def _sweeper(self) -> None:
        """Every ``_WATCH_AFTER`` seconds, give each unary call that has run since the last sweep a
        watcher (see :meth:`_connection`)."""
        while True:
            await trio.sleep(_WATCH_AFTER)
            for conn in self._busy:
                if conn.seen == conn.calls and conn.watch_scope is None:
                    conn.watch()
                conn.seen = conn.calls

    async def _connection(self, sock: Socket) -> None:
        """Serve a connection's frames in order (pipelining allowed), reading and calling in one task.

        A Go Micro client closes its connection when its context expires (its ``Timeout`` header
        carries only the dial timeout, not the request deadline), and nobody is left to read the
        reply, so a running handler must be cancelled when its peer goes away. Reading ahead in a
        second task on every call would cost a task hand-off per call; instead the server's sweeper
        starts a watcher task only for a call still running after ``_WATCH_AFTER`` seconds. The
        watcher reads the next frame: end of input cancels the handler (as does an idle-timeout close),
        a pipelined frame is kept and served next, in order.
        """
        async with trio.open_nursery() as nursery:
            conn = _Conn(sock, nursery, interrupt_idle=getattr(sock, "interrupt_idle", None))
            self._conns.add(conn)
            try:
                await self._frames(sock, conn)
            finally:
                self._conns.discard(conn)
                self._busy.discard(conn)
                nursery.cancel_scope.cancel()

    async def _next_frame(self, sock: Socket, conn: _Conn) -> Message | ProtocolError | None:
        """The next frame (or input error); None when the peer left, idled out or we drain."""
        item = conn.ahead
        if item is not None:
            conn.ahead = None
            return item
        if conn.gone:
            return None
        if conn.interrupt_idle is not None:
            # The socket ends an idle wait itself when we drain: no cancel scope per frame.
            conn.waiting = True
            try:
                return await sock.receive()
            except (trio.EndOfChannel, TransportError):
                return None
            except ProtocolError as exc:
                return exc
            finally:
                conn.waiting = False
        with trio.CancelScope() as conn.idle_scope:
            try:
                return await sock.receive()
            except (trio.EndOfChannel, TransportError):
                return None
            except ProtocolError as exc:
                return exc
            finally:
                conn.idle_scope = None
        return None  # cancelled by drain

    async def _frames(self, sock: Socket, conn: _Conn) -> None:
        while not self._draining:
            item = await self._next_frame(sock, conn)
            if item is None:
                return
            if isinstance(item, ProtocolError):
                # Tell the client why, then close: the rest of the byte stream is unusable.
                err = MicroError(SERVER_ID, item.code, str(item))
                with trio.move_on_after(1):
                    try:
                        await sock.send(Message({MICRO_ERROR: err.to_json(), CONTENT_TYPE: "text/plain"}))
                    except (TransportError, trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
                return
            header = _normalise(item.header)
            if MICRO_STREAM in header:
                await self._stream(sock, header)
                return
            self.enter_call()
            conn.calls += 1
            self._busy.add(conn)
            try:
                reply = await self.handle_unary(
                    header, item.body, remote=sock.remote_address, on_scope=conn.set_handler_scope
                )
                conn.handler_scope = None
                self._busy.discard(conn)
                await conn.unwatch()
                if conn.gone:
                    return  # cancelled (or finished) with nobody left to read the reply
                try:
                    await sock.send(reply)
                except TransportError:
                    return
            finally:
                self._busy.discard(conn)
                self.exit_call()

    def context_for(
        self, header: dict[str, str], content_type: str, remote: str
    ) -> tuple[Context, float | None]:
        try:
            timeout = decode_timeout(header.get(TIMEOUT))
        except InvalidTimeout as exc:
            raise errors.bad_request(SERVER_ID, "%s", exc) from None  # the caller's mistake: a 400
        deadline = trio.current_time() + timeout if timeout else math.inf
        ctx = Context(
            service=header.get(MICRO_SERVICE, self.name),
            endpoint=header.get(MICRO_ENDPOINT, ""),
            metadata=_metadata(header),
            deadline=deadline,
            remote=remote,
            content_type=content_type,
            id=header.get(MICRO_ID, ""),
        )
        return ctx, timeout

    async def handle_unary(
        self,
        header: dict[str, str],
        body: bytes,
        *,
        remote: str = "",
        on_scope: Callable[[trio.CancelScope], None] | None = None,
    ) -> Message:
        """Route, decode, call the (wrapped) handler under the caller's deadline, encode the reply.

        ``on_scope`` is handed the call's deadline scope (see :meth:`invoke`)."""
        self.stats.requests += 1
        content_type = header.get(CONTENT_TYPE) or "application/protobuf"
        try:
            codec = get_codec(content_type)
        except CodecError as exc:
            self.stats.errors += 1
            return _error_reply(header, "text/plain", errors.bad_request(SERVER_ID, str(exc)))
        seq = 0
        endpoint = header.get(MICRO_ENDPOINT, "")
        try:
            if codec.envelope:
                env_endpoint, seq, _ = codec.decode_request(body, None)
                if not endpoint and env_endpoint:
                    header[MICRO_ENDPOINT] = header[MICRO_METHOD] = endpoint = env_endpoint
            route = self.router.lookup(endpoint)
            if route.streaming:
                raise errors.bad_request(SERVER_ID, "endpoint %s is streaming; call it as a stream", endpoint)
            _, env_seq, msg = codec.decode_request(body, route.spec.request)
            if codec.envelope:
                seq = env_seq
            ctx, timeout = self.context_for(header, content_type, remote)
        except CodecError as exc:
            self.stats.errors += 1
            return _error_reply(header, content_type, errors.bad_request(SERVER_ID, str(exc)))
        except MicroError as err:
            self.stats.errors += 1
            return self._encode_error(header, content_type, codec, endpoint, seq, err)
        try:
            # server_max_concurrent (server/_limit.py); Debug.* answers even when full
            async with self.limit.slot(ctx.deadline, exempt=route.internal):
                rsp = await self.invoke(
                    route, Request(ctx.service, endpoint, content_type, header, msg), ctx, timeout, on_scope
                )
            body_out = codec.encode_response(endpoint, seq, rsp, None)
        except MicroError as err:
            self.stats.errors += 1
            return self._encode_error(header, content_type, codec, endpoint, seq, err)
        except CodecError as exc:
            self.stats.errors += 1
            bad = errors.internal_server_error(SERVER_ID, "cannot encode response: %s", exc)
            return self._encode_error(header, content_type, codec, endpoint, seq, bad)
        return Message(_reply_header(header, content_type), body_out)

    def _encode_error(
        self, header: dict[str, str], ct: str, codec: Codec, endpoint: str, seq: int, err: MicroError
    ) -> Message:
        reply = _error_reply(header, ct, err)
        if codec.envelope:
            try:
                reply.body = codec.encode_response(endpoint, seq, None, err.to_json())
            except CodecError:
                pass
        return reply

    async def invoke(
        self,
        route: Route,
        req: Request,
        ctx: Context,
        timeout: float | None,
        on_scope: Callable[[trio.CancelScope], None] | None = None,
    ) -> Any:
        """Run the handler under the caller's deadline; exceptions become Go Micro errors.

        ``on_scope(scope)`` gets the deadline scope before the handler starts, so a caller can cancel
        the call through it (one cancel scope per call instead of two nested ones); cancelled that way,
        the call ends as its deadline would (a 408 error)."""
        token = set_incoming(ctx.metadata)
        try:
            with trio.move_on_after(timeout if timeout else math.inf) as scope:
                if on_scope is not None:
                    on_scope(scope)
                try:
                    return await route.call(req, ctx)
                except (MicroError, TransportError):
                    raise
                except (trio.Cancelled, KeyboardInterrupt):
                    raise
                except Exception as exc:
                    log.exception("handler %s raised", route.name)
                    raise errors.internal_server_error(SERVER_ID, "%s: %s", type(exc).__name__, exc) from exc
            assert scope.cancelled_caught
            raise errors.timeout(SERVER_ID, "%s: deadline exceeded after %.3fs", route.name, timeout or 0.0)
        finally:
            reset_incoming(token)

    # -- streams --
    async def _stream(self, sock: Socket, header: dict[str, str]) -> None:
        """Serve one mucp stream; the first frame (already read) routes it and its body is discarded."""
        self.stats.requests += 1
        self.stats.streams += 1
        content_type = header.get(CONTENT_TYPE) or "application/protobuf"
        reply_header = _reply_header(header, content_type)
        endpoint = header.get(MICRO_ENDPOINT, "")
        try:
            codec = get_codec(content_type)
            route = self.router.lookup(endpoint)
            if not route.streaming:
                raise errors.bad_request(SERVER_ID, "endpoint %s is not streaming", endpoint)
            ctx, timeout = self.context_for(header, content_type, sock.remote_address)
        except (MicroError, CodecError) as exc:
            self.stats.errors += 1
            failure = exc if isinstance(exc, MicroError) else errors.bad_request(SERVER_ID, str(exc))
            try:
                await sock.send(_error_reply(header, content_type, failure))
            except TransportError:
                pass
            return
        core: MucpStreamCore[Any, Any] = MucpStreamCore(
            sock, codec, route.spec.request, reply_header, error_id=SERVER_ID
        )
        stream: Stream[Any, Any] = Stream(core)
        self.enter_call()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(core.reader)
                nursery.start_soon(core.writer)
                error: MicroError | None = None
                with trio.CancelScope() as handler_scope:
                    # The peer is gone: nobody can receive what the handler makes, so cancel it.
                    core.on_connection_lost = handler_scope.cancel
                    try:
                        if route.spec.client_streaming:
                            body: Any = stream
                        else:
                            body = (await stream.receive(), stream)
                        result = await self.invoke(
                            route,
                            Request(ctx.service, endpoint, content_type, header, body, True),
                            ctx,
                            timeout,
                        )
                        if result is not None:
                            # A client-streaming handler may return its one response.
                            await stream.send(result)
                    except trio.EndOfChannel:
                        error = errors.bad_request(SERVER_ID, "stream %s ended before its request", endpoint)
                    except MicroError as err:
                        error = err
                    except TransportError:
                        pass
                if error is not None:
                    self.stats.errors += 1
                if not core.connection_lost.is_set():
                    with trio.move_on_after(5):
                        await core.close_send(error)
                nursery.cancel_scope.cancel()
        finally:
            self.exit_call()
