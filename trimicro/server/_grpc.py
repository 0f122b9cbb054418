"""The gRPC side of the server's one port: HTTP/2 streams -> the same Router, wrappers and deadlines.

``GrpcServer(server).handle_connection`` is the transport's ``h2_handler``: it runs one reader task
per connection (feeding h2, hypercorn-style) and one task per stream, all in the connection's nursery,
so nothing outlives the connection. A peer's RST_STREAM cancels that stream's handler; a lost
connection cancels them all.

Mapping (docs/grpc.md): path ``/<pkg>.<Service>/<Method>`` -> ``router.grpc_paths`` or endpoint
``<Service>.<Method>``; ``grpc-timeout`` -> the handler's deadline; non-reserved headers -> metadata;
a MicroError -> ``grpc-status`` (``to_grpc_status``) with its JSON percent-encoded in ``grpc-message``.
"""

from __future__ import annotations

import contextvars
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

import attrs
import trio

from .. import errors
from ..codec import Codec, GrpcFrameDecoder, encode_frame, get_codec
from ..context import encode_timeout
from ..debug._grpc_health import CHECK_PATH, GrpcHealth
from ..errors import CodecError, MicroError, ProtocolError, TransportError
from ..stream import Stream
from ..transport import _http2 as h2p
from ..transport._h2conn import (
    FLUSH_AT,
    MAX_STREAMS,
    H2Conn,
    Signal,
    StreamReset,
    StreamState,
    _Notifier,
    wait_any,
)
from ..transport._h2grpc import (
    GRPC_CONTENT_TYPES,
    RESERVED,
    Status,
    check_metadata,
    decode_grpc_timeout,
    endpoint_for_path,
    incoming_metadata,
    status_for_error,
)
from ._router import SERVER_ID, Request, Route
from ._server import Server

__all__ = ["GrpcServer", "response_metadata"]

log = logging.getLogger("trimicro.server.grpc")

_SUPPORTED_ENCODINGS: Final = ("identity", "gzip", "deflate")
#: After a drained connection's last reply, how long we wait for the client to close first.
_GOAWAY_LINGER: Final = 1.0
_RESPONSE_MD: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "trimicro_grpc_response_metadata", default=None
)

RawUnary = Callable[[bytes], Awaitable[bytes]]


def response_metadata() -> dict[str, str]:
    """Metadata to send back with the current gRPC call; a handler adds keys to it.

    Keys set before the first response message go out as headers, later ones as trailers. Outside a
    gRPC call it is a throwaway dict, so handlers can use it unconditionally."""
    md = _RESPONSE_MD.get()
    return {} if md is None else md


class _Failed(Exception):
    """End the stream with this gRPC status (and reset it if the peer is still sending)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _ServerConn(H2Conn):
    """One accepted HTTP/2 connection: a reader task, a writer task, plus one task per stream.

    Handlers never write to the socket themselves: they queue (h2's buffer, and per-stream message
    queues that coalesce into one DATA frame) and wake the writer, which writes whatever piled up
    since its last write in one ``send_all``. So a streaming handler's burst of small messages, or
    the replies of many concurrent unary calls, cost one DATA frame / one syscall instead of one
    each. A handler waits for the writer only when more than ``FLUSH_AT`` bytes are queued, and for
    WINDOW_UPDATE when its stream's queue exceeds a frame and the peer's window is shut: memory stays
    bounded and a slow client still pushes back.
    """

    def __init__(self, owner: GrpcServer, sock: trio.abc.Stream, nursery: trio.Nursery, remote: str) -> None:
        super().__init__(sock, client_side=False, max_header_list_size=owner.max_header_size)
        self.owner = owner
        self.nursery = nursery
        self.remote = remote
        #: streams with messages queued (StreamState.out) that the writer has not handed to h2
        self.dirty: dict[StreamState, None] = {}
        self._wake = Signal()
        self._written = _Notifier()
        self._sending = False
        #: handler tasks started and not yet finished (bounded by MAX_STREAMS)
        self.handlers = 0
        #: streams waiting for a handler slot, oldest first (see on_event)
        self.unstarted: dict[StreamState, None] = {}

    def wake(self) -> None:
        """Have the writer write what h2 has queued (e.g. a GOAWAY)."""
        self._wake.set()

    async def wait(self, ev: Signal, other: Signal | None = None) -> None:
        # The reader task fires every notifier, including when the connection dies.
        await (ev.wait() if other is None else wait_any(ev, other))

    def queue_message(self, st: StreamState, frame: bytes) -> bool:
        """Queue one gRPC message on ``st`` for the writer; True once a frame's worth is queued
        (then the sender should :meth:`push` it itself, waiting for the window if need be)."""
        self._check(st)
        self.queue_data(st, frame)
        self.dirty[st] = None
        self._wake.set()
        return st.out_len >= self.h2.max_outbound_frame_size

    async def flush_control(self) -> None:
        # The reader never waits for the writer: a client that is itself blocked writing to us
        # (its request bodies) would then never read our replies, and neither side could move.
        # What the reader queues (acks, WINDOW_UPDATE, RST) is bounded by _h2proto's control cap.
        self._wake.set()
        await trio.lowlevel.checkpoint()

    async def flush(self) -> None:
        """Have the writer task write what is queued; wait for it only past ``FLUSH_AT`` bytes."""
        if self.closed is not None:
            raise self.closed
        self._wake.set()
        if self.h2.pending < FLUSH_AT:
            await trio.lowlevel.checkpoint_if_cancelled()
            return
        while self.h2.pending >= FLUSH_AT and self.closed is None:
            await self._written.event.wait()
        if self.closed is not None:
            raise self.closed

    async def run_writer(self) -> None:
        """Write whatever is queued, in one ``send_all`` per wakeup, until the connection ends."""
        try:
            while self.closed is None:
                self._wake = wake = Signal()
                window = self._window.event
                for st in list(self.dirty):
                    if self.move_out(st):
                        del self.dirty[st]
                data = self.h2.data_to_send()
                if not data:
                    if self.h2.closed and not self.handlers and not self.dirty:
                        # GOAWAY sent (drain) and written, every stream answered: the connection
                        # is done. Linger a moment for the client to close first (as Go's server
                        # does), so frames it still had in flight do not meet a TCP reset that
                        # could destroy our last replies; then end the reader and close.
                        with trio.move_on_after(_GOAWAY_LINGER):
                            while self.closed is None:
                                await self._slots.event.wait()
                        self.nursery.cancel_scope.cancel()
                        return
                    await wait_any(wake, window) if self.dirty else await wake.wait()
                    continue
                self._sending = True
                try:
                    await self.sock.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    self.lose(TransportError(f"HTTP/2 connection lost: {exc}"))
                    return
                self._sending = False
                self._written.fire()
        finally:
            # Cancelled (server stopping) or the connection was lost: the last replies, a GOAWAY,
            # are still worth a bounded, best-effort write unless a write was cut off half-way.
            if not self._sending:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    data = self.h2.data_to_send()
                    if data:
                        try:
                            await self.sock.send_all(data)
                        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                            pass
            self._written.fire()

    def release(self, st: StreamState) -> bool:
        self.dirty.pop(st, None)
        reset = super().release(st)
        if reset:
            self._wake.set()  # the RST_STREAM must reach the client
        return reset

    def handler_done(self) -> None:
        """A handler task ended: start a waiting stream in its slot."""
        self.handlers -= 1
        while self.unstarted and self.handlers < MAX_STREAMS and self.closed is None:
            st = next(iter(self.unstarted))
            del self.unstarted[st]
            self.handlers += 1
            self.nursery.start_soon(self.owner._serve_stream, self, st)
        if self.h2.closed and not self.handlers:
            self._wake.set()  # drained after our GOAWAY: the writer closes the connection

    def on_event(self, event: h2p.Event) -> None:
        if isinstance(event, h2p.RequestReceived):
            st = StreamState(event.stream_id, event.headers)
            self.streams[st.id] = st
            if event.stream_ended:
                st.ended = True
            if self.owner.draining:
                self.reset_stream(st, 7)  # REFUSED_STREAM: safe for the client to retry elsewhere
                self.release(st)
                return
            # Handler tasks are counted, not HTTP/2 streams: a stream's slot frees when its last
            # frame is queued, a little before its task ends, so a client that keeps to
            # MAX_CONCURRENT_STREAMS may open the next one early: it waits for a slot (as Go's
            # unstartedHandlers do). The queue is bounded by that same limit, which _h2proto
            # enforces on open streams (REFUSED_STREAM beyond it). A stream reset while it waits
            # leaves the queue unstarted, so a peer that opens and at once resets streams ("rapid
            # reset", CVE-2023-44487) costs no task.
            self.owner.admit()
            if self.handlers >= MAX_STREAMS:
                self.unstarted[st] = None
                return
            self.handlers += 1
            self.nursery.start_soon(self.owner._serve_stream, self, st)
        elif isinstance(event, h2p.TrailersReceived):
            known = self.streams.get(event.stream_id)
            if known is not None:
                known.trailers = event.headers

    def on_reset(self, st: StreamState) -> None:
        if st.scope is not None:
            st.scope.cancel()
        elif st in self.unstarted:  # reset while waiting for a slot: it never runs
            del self.unstarted[st]
            self.release(st)
            self.owner.retire()

    def lose(self, error: TransportError) -> None:
        # Cancel the handlers before waking them, so they see trio.Cancelled rather than an error.
        self.nursery.cancel_scope.cancel()
        waiting, self.unstarted = list(self.unstarted), {}
        for st in waiting:  # admitted, never started: they end with the connection
            self.release(st)
            self.owner.retire()
        super().lose(error)
        self.dirty.clear()
        self._wake.set()
        self._written.fire()

    async def run_reader(self) -> None:
        while await self.read_once():
            pass


@attrs.define(eq=False)
class GrpcServer:
    """Serves a :class:`Server`'s router to gRPC clients over HTTP/2 (h2c or TLS with ALPN ``h2``)."""

    server: Server
    health: GrpcHealth = attrs.field(factory=GrpcHealth)
    #: path -> raw unary handler on protobuf bytes (the health check lives here)
    unary_handlers: dict[str, RawUnary] = attrs.field(factory=dict)
    max_message_size: int = 4 * 1024 * 1024
    max_header_size: int = 64 * 1024
    #: live counters, for leak tests and Debug.Stats-style reporting
    open_connections: int = attrs.field(default=0, init=False)
    open_streams: int = attrs.field(default=0, init=False)
    _quiet: trio.Event = attrs.field(factory=trio.Event, init=False)
    _conns: set[_ServerConn] = attrs.field(factory=set, init=False)

    def __attrs_post_init__(self) -> None:
        self.unary_handlers.setdefault(CHECK_PATH, self.health.check)
        self.health.statuses.setdefault(self.server.name, 1)
        self.server.on_drain.append(self.goaway)

    def goaway(self) -> None:
        """Drain: tell every client (GOAWAY, NO_ERROR) that no new stream will be served here, so
        its next calls go to a new connection (elsewhere, once this server stops accepting) instead
        of being refused one by one. Streams in flight finish; an idle connection closes now."""
        for conn in list(self._conns):
            conn.h2.close_connection(h2p.ErrorCode.NO_ERROR)
            conn.wake()  # the writer writes the GOAWAY, and closes once no handler is left

    @classmethod
    def from_server(cls, server: Server, options: Any = None) -> GrpcServer:
        """Take the message and header limits from ``options`` (``server_max_body_size`` etc.)."""
        if options is None:
            return cls(server)
        return cls(
            server,
            max_message_size=options.server_max_body_size,
            max_header_size=options.server_max_header_size,
        )

    async def wait_idle(self) -> None:
        """Return once no connection or stream is open (leak tests; graceful shutdown)."""
        while self.open_connections or self.open_streams:
            self._quiet = trio.Event()
            await self._quiet.wait()

    def _check_quiet(self) -> None:
        if not (self.open_connections or self.open_streams):
            self._quiet.set()

    @property
    def draining(self) -> bool:
        return self.server.draining

    async def handle_connection(self, stream: trio.abc.Stream, initial_bytes: bytes = b"") -> None:
        """Serve one connection whose first bytes (the HTTP/2 preface, maybe more) were already read."""
        self.open_connections += 1
        remote = _remote(stream)
        conn: _ServerConn | None = None
        try:
            async with trio.open_nursery() as nursery:
                conn = _ServerConn(self, stream, nursery, remote)
                self._conns.add(conn)
                conn.start()
                if self.draining:  # accepted while draining: no new streams here either
                    conn.h2.close_connection(h2p.ErrorCode.NO_ERROR)
                nursery.start_soon(conn.run_writer)
                try:
                    await conn.flush()
                    if initial_bytes:
                        await conn.feed(initial_bytes)
                    if conn.closed is None:
                        await conn.run_reader()
                except TransportError:
                    pass
                # The peer is gone (or broke the protocol): every stream handler is cancelled.
                conn.lose(conn.closed or TransportError("HTTP/2 connection ended"))
                nursery.cancel_scope.cancel()
        finally:
            if conn is not None:
                self._conns.discard(conn)
            # Bounded: under TLS, close_notify can block on a peer that stops reading (a cut-off
            # SSLStream.aclose() closes the socket forcefully).
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                try:
                    await stream.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
            self.open_connections -= 1
            self._check_quiet()

    # -- one stream --
    def admit(self) -> None:
        """A stream was accepted (it counts as in flight from now, even while it waits for a
        handler slot, so a drain waits for it too)."""
        self.open_streams += 1
        self.server.enter_call()

    def retire(self) -> None:
        self.open_streams -= 1
        self._check_quiet()
        self.server.exit_call()

    async def _serve_stream(self, conn: _ServerConn, st: StreamState) -> None:
        token = _RESPONSE_MD.set({})
        call = _Call(self, conn, st)
        try:
            with trio.CancelScope() as st.scope:
                if st.reset is not None:
                    return
                try:
                    await call.run()
                except _Failed as failed:
                    await call.finish(failed.status, failed.message)
                except (StreamReset, TransportError):
                    pass
        finally:
            _RESPONSE_MD.reset(token)
            if conn.closed is None and conn.stream_open_remote(st) and st.reset is None:
                # Finished while the client still sends: stop it with NO_ERROR, as gRPC servers do;
                # unfinished (cancelled, e.g. shutdown): CANCEL, so the client sees an error.
                conn.reset_stream(st, 0 if call.done else 8)
                await conn.flush_bounded()
            conn.release(st)
            conn.handler_done()
            self.retire()


def _checked_metadata(md: dict[str, str]) -> list[tuple[str, str]]:
    """A handler's response metadata, minus (logged) entries HTTP/2 cannot carry: one bad key must
    not make the peer tear down the shared connection."""
    out = []
    for k, v in md.items():
        name = k.lower()
        if name in RESERVED or name.startswith(":"):
            log.warning("dropping reserved gRPC response metadata %r", k)
            continue
        try:
            out.append((name, check_metadata(name, v)))
        except ValueError as exc:
            log.warning("dropping gRPC response metadata: %s", exc)
    return out


def _remote(stream: trio.abc.Stream) -> str:
    sock = getattr(stream, "socket", None)
    if sock is None:
        inner = getattr(stream, "transport_stream", None)
        sock = getattr(inner, "socket", None)
    try:
        host, port = sock.getpeername()[:2]  # type: ignore[union-attr]
    except Exception:
        return ""
    return f"{host}:{port}"


class _Call:
    """One gRPC call on one stream: parse the request headers, route, run, answer."""

    def __init__(self, owner: GrpcServer, conn: _ServerConn, st: StreamState) -> None:
        self.owner = owner
        self.conn = conn
        self.st = st
        self.content_type = "application/grpc"
        self.headers_sent = False
        self.done = False

    # -- responding --
    def _initial_headers(self) -> list[tuple[str, str]]:
        out = [(":status", "200"), ("content-type", self.content_type)]
        md = _RESPONSE_MD.get()
        if md:
            out.extend(_checked_metadata(md))
            md.clear()
        return out

    async def send_message(self, payload: bytes) -> None:
        if self.done:
            raise trio.ClosedResourceError("the gRPC response is already finished")
        if not self.headers_sent:
            self.conn.send_headers(self.st, self._initial_headers())
            self.headers_sent = True
        if self.conn.queue_message(self.st, encode_frame(payload)):
            await self.conn.push(self.st)
        await self.conn.flush()

    async def finish(self, status: int, message: str = "", payload: bytes | None = None) -> None:
        """Trailers (and, for unary replies, headers + the message first), in one write."""
        if self.done:
            return
        self.done = True
        trailers: list[tuple[str, str]] = []
        if not self.headers_sent:
            if payload is None:
                trailers = self._initial_headers()  # trailers-only response
            else:
                self.conn.send_headers(self.st, self._initial_headers())
            self.headers_sent = True
        # Queued messages (and this one) go before the trailers.
        await self.conn.send_data(self.st, encode_frame(payload) if payload is not None else b"", flush=False)
        trailers.append(("grpc-status", str(status)))
        if message:
            trailers.append(("grpc-message", message))
        md = _RESPONSE_MD.get()
        if md:
            trailers.extend(_checked_metadata(md))
        self.conn.send_headers(self.st, trailers, end_stream=True)
        await self.conn.flush()

    async def finish_error(self, err: MicroError) -> None:
        status, message = status_for_error(err)
        await self.finish(status, message)

    # -- request side --
    async def read_messages(self, decoder: GrpcFrameDecoder, pending: deque[bytes]) -> bool:
        """Fill ``pending`` with at least one message; False at a clean end of the request stream."""
        while not pending:
            chunk = await self.conn.receive_chunk(self.st)
            try:
                if chunk is None:
                    decoder.close()
                    return False
                pending.extend(decoder.feed(chunk))
            except ProtocolError as exc:
                status = Status.RESOURCE_EXHAUSTED if exc.code == 413 else Status.INTERNAL
                raise _Failed(status, f"grpc: {exc}") from None
        return True

    async def run(self) -> None:
        owner, server = self.owner, self.owner.server
        headers = self.st.headers or []
        hmap = dict(headers)
        path = hmap.get(":path", "")
        if hmap.get(":method") != "POST":
            raise _Failed(Status.UNIMPLEMENTED, f"grpc: method {hmap.get(':method')} not allowed; use POST")
        ct = hmap.get("content-type", "")
        ct_key = ct.partition(";")[0].strip().lower()
        if ct_key not in GRPC_CONTENT_TYPES:
            if not ct_key.startswith("application/grpc"):
                # Not gRPC at all: plain HTTP 415, as the gRPC spec asks.
                self.done = True
                self.conn.send_headers(self.st, [(":status", "415")], end_stream=True)
                await self.conn.flush()
                return
            raise _Failed(Status.UNIMPLEMENTED, f"grpc: unsupported content-type {ct!r}")
        self.content_type = ct_key
        encoding = hmap.get("grpc-encoding")
        if encoding and encoding not in _SUPPORTED_ENCODINGS:
            raise _Failed(Status.UNIMPLEMENTED, f"grpc: unsupported grpc-encoding {encoding!r}")
        decoder = GrpcFrameDecoder(owner.max_message_size, encoding)
        pending: deque[bytes] = deque()

        raw = owner.unary_handlers.get(path)
        endpoint = endpoint_for_path(path, server.router.grpc_paths)
        route = server.router.routes.get(endpoint) if endpoint else None
        if raw is None and route is None:
            server.stats.requests += 1
            server.stats.errors += 1
            raise _Failed(Status.UNIMPLEMENTED, f"grpc: unknown method {path} (endpoint {endpoint})")

        header = incoming_metadata(headers)
        timeout = decode_grpc_timeout(hmap.get("grpc-timeout"))
        header.pop("Timeout", None)
        if timeout is not None:
            header["Timeout"] = encode_timeout(timeout)
        if endpoint:
            header["Micro-Endpoint"] = header["Micro-Method"] = endpoint
        header["Content-Type"] = ct_key

        if raw is not None:
            body = await self._unary_request(decoder, pending)
            try:
                with trio.fail_after(timeout if timeout is not None else float("inf")):
                    out = await raw(body)
            except MicroError as err:
                await self.finish_error(err)
                return
            except trio.TooSlowError:
                await self.finish(Status.DEADLINE_EXCEEDED, "deadline exceeded")
                return
            await self.finish(Status.OK, payload=out)
            return
        assert route is not None
        if not route.streaming:
            body = await self._unary_request(decoder, pending)
            reply = await server.handle_unary(header, body, remote=self.conn.remote)
            err_text = reply.header.get("Micro-Error")
            if err_text:
                await self.finish_error(errors.parse(err_text, default_id=SERVER_ID))
            else:
                await self.finish(Status.OK, payload=reply.body)
            return
        await self._stream(route, header, decoder, pending)

    async def _unary_request(self, decoder: GrpcFrameDecoder, pending: deque[bytes]) -> bytes:
        if not await self.read_messages(decoder, pending):
            raise _Failed(Status.INTERNAL, "grpc: unary request carries no message")
        # Read to END_STREAM: a unary request has exactly one message.
        body = pending.popleft()
        if await self.read_messages(decoder, pending):
            raise _Failed(Status.INTERNAL, "grpc: unary request carries more than one message")
        return body

    async def _stream(
        self, route: Route, header: dict[str, str], decoder: GrpcFrameDecoder, pending: deque[bytes]
    ) -> None:
        server = self.owner.server
        server.stats.requests += 1
        server.stats.streams += 1
        try:
            codec = get_codec(self.content_type)
        except CodecError as exc:  # pragma: no cover - GRPC_CONTENT_TYPES are all registered
            raise _Failed(Status.UNIMPLEMENTED, str(exc)) from None
        ctx, timeout = server.context_for(header, self.content_type, self.conn.remote)
        core = _StreamCore(self, codec, route.spec.request, decoder, pending)
        stream: Stream[Any, Any] = Stream(core)
        endpoint = route.name
        error: MicroError | None = None
        try:
            if route.spec.client_streaming:
                body: Any = stream
            else:
                body = (await stream.receive(), stream)
            result = await server.invoke(
                route, Request(ctx.service, endpoint, self.content_type, header, body, True), ctx, timeout
            )
            if result is not None:
                # A client-streaming handler may return its one response instead of sending it.
                await stream.send(result)
        except trio.EndOfChannel:
            error = errors.bad_request(SERVER_ID, "stream %s ended before its request", endpoint)
        except MicroError as err:
            error = err
        if core.failure is not None:
            server.stats.errors += 1
            raise core.failure
        if error is not None:
            server.stats.errors += 1
            await self.finish_error(error)
        else:
            await self.finish(Status.OK)


class _StreamCore:
    """The "core" :class:`trimicro.stream.Stream` drives: messages over one HTTP/2 stream."""

    def __init__(
        self, call: _Call, codec: Codec, recv_type: Any, decoder: GrpcFrameDecoder, pending: deque[bytes]
    ) -> None:
        self._call = call
        self._codec = codec
        self._recv_type = recv_type
        self._decoder = decoder
        self._pending = pending
        self._eof = False
        self.failure: _Failed | None = None
        self.sent = 0
        self.received = 0

    async def send(self, msg: Any) -> None:
        body = self._codec.encode(msg)
        try:
            await self._call.send_message(body)
        except TransportError:
            # A reset or lost connection has cancelled this handler: let it see trio.Cancelled.
            await trio.lowlevel.checkpoint_if_cancelled()
            raise TransportError("gRPC stream reset by the client") from None
        self.sent += 1

    async def receive(self) -> Any:
        if self.failure is not None:
            raise errors.bad_request(SERVER_ID, "%s", self.failure.message)
        if not self._pending:
            if self._eof:
                raise trio.EndOfChannel
            try:
                more = await self._call.read_messages(self._decoder, self._pending)
            except _Failed as failed:
                self.failure = failed
                raise errors.bad_request(SERVER_ID, "%s", failed.message) from None
            except TransportError:
                await trio.lowlevel.checkpoint_if_cancelled()
                raise TransportError("gRPC stream reset by the client") from None
            if not more:
                self._eof = True
                raise trio.EndOfChannel
        data = self._pending.popleft()
        try:
            value = self._codec.decode(data, self._recv_type)
        except CodecError as exc:
            raise errors.bad_request(SERVER_ID, str(exc)) from None
        self.received += 1
        return value

    async def close_send(self, error: MicroError | None = None) -> None:
        if error is not None:
            await self._call.finish_error(error)
        else:
            await self._call.finish(Status.OK)
