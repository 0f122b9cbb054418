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
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from .. import errors
from ..codec import Codec, get_codec
from ..context import ROUTING_HEADERS, Context, decode_timeout, reset_incoming, set_incoming
from ..errors import CodecError, MicroError, ProtocolError, TransportError
from ..stream import Stream, _Core
from ..transport._base import Listener, Message, Socket, Transport
from ._router import SERVER_ID, Request, Route, Router

__all__ = ["Server", "Stats"]

log = logging.getLogger("trimicro.server")

# Header names kept on replies: the routing facts Go Micro's rpc codec writes back.
_ECHO = ("Micro-Id", "Micro-Service", "Micro-Endpoint", "Micro-Method", "Micro-Stream")


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
    if "Micro-Endpoint" in out and "Micro-Method" not in out:
        out["Micro-Method"] = out["Micro-Endpoint"]
    out["Content-Type"] = content_type
    return out


def _error_reply(header: dict[str, str], content_type: str, err: MicroError) -> Message:
    out = _reply_header(header, content_type)
    out["Micro-Error"] = err.to_json()
    return Message(out, b"")


def _normalise(header: dict[str, str]) -> dict[str, str]:
    """Fill Micro-Endpoint/Micro-Method from each other (wire/mucp.md)."""
    ep = header.get("Micro-Endpoint")
    if ep is None and "Micro-Method" in header:
        header["Micro-Endpoint"] = header["Micro-Method"]
    elif ep is not None and "Micro-Method" not in header:
        header["Micro-Method"] = ep
    return header


def _metadata(header: dict[str, str]) -> dict[str, str]:
    return {
        k: v
        for k, v in header.items()
        if k not in ROUTING_HEADERS and not (k.startswith("X-Micro-") and k[2:] in ROUTING_HEADERS)
    }


@attrs.define(eq=False)
class _Conn:
    """Per-connection state shared by the read-ahead task and the frame loop."""

    gone: bool = False
    handler_scope: trio.CancelScope | None = None

    def peer_gone(self) -> None:
        self.gone = True
        if self.handler_scope is not None:
            self.handler_scope.cancel()


@attrs.define(eq=False)
class Server:
    """Serves a :class:`Router` on a transport listener."""

    name: str
    router: Router
    transport: Transport
    address: str = "127.0.0.1:0"
    stats: Stats = attrs.field(factory=Stats)
    #: optional HTTP/2 handler for the one port (gRPC), given the raw stream and sniffed bytes
    h2_handler: Callable[[Any, bytes], Awaitable[None]] | None = None
    listener: Listener | None = attrs.field(default=None, init=False)
    _draining: bool = attrs.field(default=False, init=False)
    _idle_scopes: set[trio.CancelScope] = attrs.field(factory=set, init=False)
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
            listener = await self.transport.listen(self.address, h2_handler=self.h2_handler)  # type: ignore[call-arg]
        else:
            listener = await self.transport.listen(self.address)
        self.listener = listener
        try:
            with trio.CancelScope() as self._serve_scope:
                await listener.serve(self._connection, task_status=task_status)
        finally:
            with trio.CancelScope(shield=True):
                await listener.aclose()

    async def drain(self, grace: float) -> None:
        """Stop taking requests; wait up to ``grace`` seconds for in-flight calls to finish."""
        self._draining = True
        for scope in list(self._idle_scopes):
            scope.cancel()
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
    async def _connection(self, sock: Socket) -> None:
        """Serve a connection's frames in order, with a reader task one frame ahead of the handler.

        Reading ahead keeps pipelining and also notices the peer going away mid-call: a Go Micro client
        closes its connection when its context expires (its ``Timeout`` header carries only the dial
        timeout, not the request deadline), and nobody is left to read the reply, so the running
        handler is cancelled. (An idle-timeout close while a handler runs counts the same.)
        """
        send, receive = trio.open_memory_channel[Message | ProtocolError](0)
        conn = _Conn()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_ahead, sock, send, conn)
            try:
                await self._frames(sock, receive, conn)
            finally:
                nursery.cancel_scope.cancel()

    async def _read_ahead(
        self, sock: Socket, send: trio.MemorySendChannel[Message | ProtocolError], conn: _Conn
    ) -> None:
        async with send:
            while True:
                try:
                    msg = await sock.receive()
                except (trio.EndOfChannel, TransportError):
                    conn.peer_gone()
                    return
                except ProtocolError as exc:
                    await send.send(exc)
                    return
                try:
                    await send.send(msg)
                except trio.BrokenResourceError:
                    return
                if "Micro-Stream" in msg.header:
                    return  # the stream takes the socket over

    async def _frames(
        self, sock: Socket, receive: trio.MemoryReceiveChannel[Message | ProtocolError], conn: _Conn
    ) -> None:
        async with receive:
            while not self._draining:
                scope = trio.CancelScope()
                self._idle_scopes.add(scope)
                try:
                    with scope:
                        item = await receive.receive()
                except trio.EndOfChannel:
                    return
                finally:
                    self._idle_scopes.discard(scope)
                if scope.cancelled_caught:
                    return
                if isinstance(item, ProtocolError):
                    # Tell the client why, then close: the rest of the byte stream is unusable.
                    err = MicroError(SERVER_ID, item.code, str(item))
                    with trio.move_on_after(1):
                        try:
                            await sock.send(
                                Message({"Micro-Error": err.to_json(), "Content-Type": "text/plain"})
                            )
                        except (TransportError, trio.BrokenResourceError, trio.ClosedResourceError):
                            pass
                    return
                header = _normalise(item.header)
                if "Micro-Stream" in header:
                    await self._stream(sock, header)
                    return
                self.enter_call()
                try:
                    with trio.CancelScope() as conn.handler_scope:
                        if conn.gone:
                            conn.handler_scope.cancel()
                        reply = await self.handle_unary(header, item.body, remote=sock.remote_address)
                    conn.handler_scope = None
                    if conn.gone:
                        return  # cancelled (or finished) with nobody left to read the reply
                    try:
                        await sock.send(reply)
                    except TransportError:
                        return
                finally:
                    self.exit_call()

    def context_for(
        self, header: dict[str, str], content_type: str, remote: str
    ) -> tuple[Context, float | None]:
        timeout = decode_timeout(header.get("Timeout"))
        deadline = trio.current_time() + timeout if timeout else math.inf
        ctx = Context(
            service=header.get("Micro-Service", self.name),
            endpoint=header.get("Micro-Endpoint", ""),
            metadata=_metadata(header),
            deadline=deadline,
            remote=remote,
            content_type=content_type,
            id=header.get("Micro-Id", ""),
        )
        return ctx, timeout

    async def handle_unary(self, header: dict[str, str], body: bytes, *, remote: str = "") -> Message:
        """Route, decode, call the (wrapped) handler under the caller's deadline, encode the reply."""
        self.stats.requests += 1
        content_type = header.get("Content-Type") or "application/protobuf"
        try:
            codec = get_codec(content_type)
        except CodecError as exc:
            self.stats.errors += 1
            return _error_reply(header, "text/plain", errors.bad_request(SERVER_ID, str(exc)))
        seq = 0
        endpoint = header.get("Micro-Endpoint", "")
        try:
            if codec.envelope:
                env_endpoint, seq, _ = codec.decode_request(body, None)
                if not endpoint and env_endpoint:
                    header["Micro-Endpoint"] = header["Micro-Method"] = endpoint = env_endpoint
            route = self.router.lookup(endpoint)
            if route.streaming:
                raise errors.bad_request(SERVER_ID, "endpoint %s is streaming; call it as a stream", endpoint)
            if codec.envelope:
                _, seq, msg = codec.decode_request(body, route.spec.request)
            else:
                msg = codec.decode(body, route.spec.request)
        except CodecError as exc:
            self.stats.errors += 1
            return _error_reply(header, content_type, errors.bad_request(SERVER_ID, str(exc)))
        except MicroError as err:
            self.stats.errors += 1
            return self._encode_error(header, content_type, codec, endpoint, seq, err)
        ctx, timeout = self.context_for(header, content_type, remote)
        try:
            rsp = await self.invoke(
                route, Request(ctx.service, endpoint, content_type, header, msg), ctx, timeout
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

    async def invoke(self, route: Route, req: Request, ctx: Context, timeout: float | None) -> Any:
        """Run the handler under the caller's deadline; exceptions become Go Micro errors."""
        token = set_incoming(ctx.metadata)
        try:
            with trio.move_on_after(timeout if timeout else math.inf) as scope:
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
        content_type = header.get("Content-Type") or "application/protobuf"
        reply_header = _reply_header(header, content_type)
        endpoint = header.get("Micro-Endpoint", "")
        try:
            codec = get_codec(content_type)
            route = self.router.lookup(endpoint)
            if not route.streaming:
                raise errors.bad_request(SERVER_ID, "endpoint %s is not streaming", endpoint)
        except (MicroError, CodecError) as exc:
            self.stats.errors += 1
            failure = exc if isinstance(exc, MicroError) else errors.bad_request(SERVER_ID, str(exc))
            try:
                await sock.send(_error_reply(header, content_type, failure))
            except TransportError:
                pass
            return
        ctx, timeout = self.context_for(header, content_type, sock.remote_address)
        core: _Core[Any, Any] = _Core(sock, codec, route.spec.request, reply_header, error_id=SERVER_ID)
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
