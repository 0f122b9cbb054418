"""The gRPC side of the server's one port: gRPC calls -> the same Router, wrappers and deadlines.

``GrpcServer(server).handle_connection`` is the transport's ``h2_handler``. The HTTP/2 side of each
connection (reader and writer tasks, one task per stream in the connection's nursery, flow control,
handler-slot limits, GOAWAY on drain) is :class:`trimicro.transport._h2server.H2Server`'s; this
module is the :class:`~trimicro.transport._h2server.H2App` it serves, and sees one call as an
:class:`~trimicro.transport._h2server.H2ServerStream`: request headers, DATA in, headers /
messages / trailers out. A peer's RST_STREAM cancels that call's handler; a lost connection cancels
them all.

Mapping (docs/grpc.md): path ``/<pkg>.<Service>/<Method>`` -> ``router.grpc_paths`` or endpoint
``<Service>.<Method>``; ``grpc-timeout`` -> the handler's deadline; non-reserved headers -> metadata;
a MicroError -> ``grpc-status`` (``to_grpc_status``), its detail in ``grpc-message`` and the whole
error in ``grpc-status-details-bin`` (Go Micro v5's encoding).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Final

import attrs
import trio

from .. import errors
from .._metadata import (
    CONTENT_TYPE,
    GRPC_RESERVED,
    GRPC_RETRY_PUSHBACK_MS,
    GRPC_TIMEOUT,
    MICRO_ENDPOINT,
    MICRO_ERROR,
    MICRO_ERROR_DETAILS,
    MICRO_METHOD,
    MICRO_RETRY_AFTER,
    TIMEOUT,
    InvalidTimeout,
    encode_timeout,
    parse_grpc_timeout,
)
from ..codec import Codec, GrpcFrameDecoder, accepted_encodings, frame_message, get_codec
from ..context import (
    ResponseMetadata,
    current_response_metadata,
    reset_response_metadata,
    set_response_metadata,
)
from ..debug import CHECK_PATH, REFLECTION_PATHS, WATCH_PATH, GrpcHealth, GrpcReflection
from ..errors import CodecError, MicroError, ProtocolError, TransportError
from ..stream import Stream
from ..transport import (
    GRPC_CONTENT_TYPES,
    H2Policy,
    H2Server,
    H2ServerStream,
    Status,
    check_metadata,
    endpoint_for_path,
    incoming_metadata,
    status_details_for_error,
    status_for_error,
)
from ._router import SERVER_ID, Request, Route
from ._server import Server

__all__ = ["GrpcServer", "response_metadata"]

log = logging.getLogger("trimicro.server.grpc")

_SUPPORTED_ENCODINGS: Final = ("identity", "gzip", "deflate")
#: what this server decodes, for ``grpc-accept-encoding`` when it refuses a request's encoding
_ACCEPT_ENCODING: Final = "identity,gzip,deflate"
#: How long a request answered before it was read (HTTP 415) may take to finish sending.
_DISCARD_GRACE: Final = 1.0

RawUnary = Callable[[bytes], Awaitable[bytes]]
#: a raw streaming handler: ``handler(receive, send)`` on protobuf bytes (``receive()`` is None at the
#: end of the request stream); returning finishes the call OK, a MicroError finishes it with its status
RawStream = Callable[[Callable[[], Awaitable[bytes | None]], Callable[[bytes], Awaitable[None]]], Awaitable[None]]


def response_metadata() -> dict[str, str]:
    """Metadata to send back with the current gRPC call; a handler adds keys to it.

    Keys set before the first response message go out as headers, later ones as trailers. Outside a
    gRPC call it is a throwaway dict, so handlers can use it unconditionally."""
    md = current_response_metadata()
    return {} if md is None else md.header


class _Failed(Exception):
    """End the stream with this gRPC status (and reset it if the peer is still sending)."""

    def __init__(self, status: int, message: str, trailers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.trailers = trailers or []


@attrs.define(eq=False)
class GrpcServer:
    """Serves a :class:`Server`'s router to gRPC clients over HTTP/2 (h2c or TLS with ALPN ``h2``)."""

    server: Server
    health: GrpcHealth = attrs.field(factory=GrpcHealth)
    #: path -> raw unary handler on protobuf bytes (the health check lives here)
    unary_handlers: dict[str, RawUnary] = attrs.field(factory=dict)
    #: path -> raw streaming handler (health Watch, server reflection)
    stream_handlers: dict[str, RawStream] = attrs.field(factory=dict)
    max_message_size: int = 4 * 1024 * 1024
    #: largest response message sent (``server_max_send_msg_size``): beyond, RESOURCE_EXHAUSTED
    max_send_message_size: int = 2**31 - 1
    max_header_size: int = 64 * 1024
    #: compress responses with this (``server_compression``: gzip or deflate) when the client
    #: accepts it; "" answers plain unless the request itself was compressed (docs/grpc.md)
    compression: str = ""
    #: answer gRPC server reflection (``grpc_reflection``), so grpcurl can list, describe and call
    reflection: bool = True
    #: HTTP/2 header-block, idle and keepalive limits (docs/grpc.md "Hardening")
    policy: H2Policy = attrs.field(factory=H2Policy)
    _h2: H2Server = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.unary_handlers.setdefault(CHECK_PATH, self.health.check)
        self.stream_handlers.setdefault(WATCH_PATH, self.health.watch)
        if self.reflection:
            info = GrpcReflection(self.public_services, self._message_types).info
            for path in REFLECTION_PATHS:
                self.stream_handlers.setdefault(path, info)
        self.health.statuses.setdefault(self.server.name, 1)
        self._h2 = H2Server(
            self,
            max_header_size=self.max_header_size,
            policy=self.policy,
            # a stream counts as a call in flight from its acceptance: the server's drain waits
            on_accept=self.server.enter_call,
            on_retire=self.server.exit_call,
        )
        self.server.on_drain.append(self.goaway)
        self.server.on_drain.append(self.health.shutdown)  # watches end rather than hold the drain

    @classmethod
    def from_server(cls, server: Server, options: Any = None) -> GrpcServer:
        """Take the message and header limits from ``options`` (``server_max_body_size`` etc.)."""
        if options is None:
            return cls(server)
        return cls(
            server,
            max_message_size=options.server_max_recv_msg_size or options.server_max_body_size,
            max_send_message_size=options.server_max_send_msg_size,
            max_header_size=options.server_max_header_size,
            compression=options.server_compression,
            reflection=options.grpc_reflection,
            policy=H2Policy(
                header_timeout=options.server_header_timeout,
                idle_timeout=options.server_idle_timeout,
                keepalive_time=options.server_keepalive_time,
                keepalive_timeout=options.server_keepalive_timeout,
                min_ping_interval=options.server_keepalive_min_time,
            ),
        )

    def public_services(self) -> list[str]:
        """The gRPC service names of the router's non-internal endpoints (``greeter.Greeter``)."""
        routes = self.server.router.routes
        names = set()
        for path, endpoint in self.server.router.grpc_paths.items():
            route = routes.get(endpoint)
            if route is not None and not route.internal:
                names.add(path.split("/")[1])
        return sorted(names)

    def _message_types(self) -> list[Any]:
        specs = [r.spec for r in self.server.router.routes.values() if not r.internal]
        return [t for s in specs for t in (s.request, s.response) if t is not None]

    # -- the connections: trimicro.transport._h2server does the HTTP/2 side --
    async def handle_connection(self, stream: trio.abc.Stream, initial_bytes: bytes = b"") -> None:
        """The one port's ``h2_handler``: serve one connection whose first bytes (the HTTP/2
        preface, maybe more) were already read."""
        await self._h2.handle_connection(stream, initial_bytes)

    def goaway(self) -> None:
        """Drain: GOAWAY on every connection (see :meth:`H2Server.goaway`); in-flight calls finish."""
        self._h2.goaway()

    async def wait_idle(self) -> None:
        """Return once no connection or stream is open (leak tests; graceful shutdown)."""
        await self._h2.wait_idle()

    @property
    def open_connections(self) -> int:
        """Live HTTP/2 connections (for leak tests and Debug.Stats-style reporting)."""
        return self._h2.open_connections

    @property
    def open_streams(self) -> int:
        """Accepted streams not yet retired, also those waiting for a handler slot."""
        return self._h2.open_streams

    # -- H2App: what the HTTP/2 server asks of us --
    @property
    def draining(self) -> bool:
        return self.server.draining

    async def serve_stream(self, stream: H2ServerStream) -> None:
        """One gRPC call on one stream (the transport runs it in a scope a reset cancels)."""
        token = set_response_metadata(ResponseMetadata())
        call = _Call(self, stream)
        try:
            try:
                await call.run()
            except _Failed as failed:
                await call.finish(failed.status, failed.message, extra=failed.trailers, last=True)
        except TransportError:  # also StreamReset: the stream or the connection is gone
            pass
        finally:
            reset_response_metadata(token)


def _checked_metadata(md: dict[str, str]) -> list[tuple[str, str]]:
    """A handler's response metadata, minus (logged) entries HTTP/2 cannot carry: one bad key must
    not make the peer tear down the shared connection."""
    out = []
    for k, v in md.items():
        name = k.lower()
        if name in GRPC_RESERVED or name.startswith(":"):
            log.warning("dropping reserved gRPC response metadata %r", k)
            continue
        try:
            out.append((name, check_metadata(name, v)))
        except ValueError as exc:
            log.warning("dropping gRPC response metadata: %s", exc)
    return out


class _Call:
    """One gRPC call on one stream: parse the request headers, route, run, answer."""

    def __init__(self, owner: GrpcServer, stream: H2ServerStream) -> None:
        self.owner = owner
        self.stream = stream
        self.content_type = "application/grpc"
        self.headers_sent = False
        #: the request's ``grpc-encoding`` (None: plain) and what the client accepts back
        self.recv_encoding: str | None = None
        self.accepts: frozenset[str] = frozenset()
        #: the responses' encoding, fixed with the response headers (None: plain)
        self.send_encoding: str | None = None

    # -- responding --
    def _choose_encoding(self, md: ResponseMetadata | None) -> str | None:
        """A handler's :meth:`Context.set_compression` if the client accepts it, else the request's
        own encoding (grpc-go's rule: answer compressed like the request), else the server's
        ``server_compression`` if the client accepts that."""
        wanted = md.compression if md is not None else ""
        if wanted:
            return wanted if wanted != "identity" and wanted in self.accepts else None
        if self.recv_encoding is not None:
            return self.recv_encoding
        default = self.owner.compression
        return default if default not in ("", "identity") and default in self.accepts else None

    def _initial_headers(self) -> list[tuple[str, str]]:
        out = [(":status", "200"), ("content-type", self.content_type)]
        md = current_response_metadata()
        self.send_encoding = encoding = self._choose_encoding(md)
        if encoding is not None:
            out.append(("grpc-encoding", encoding))
        if md is not None and md.header:
            out.extend(_checked_metadata(md.header))
            md.header.clear()
        return out

    async def send_message(self, payload: bytes) -> None:
        if self.stream.finished:
            raise trio.ClosedResourceError("the gRPC response is already finished")
        if not self.headers_sent:
            self.stream.send_headers(self._initial_headers())
            self.headers_sent = True
        limit = self.owner.max_send_message_size
        if len(payload) > limit:
            raise errors.MicroError(
                "go.micro.server",
                429,
                f"response message of {len(payload)} bytes exceeds the send limit of {limit}",
            )
        await self.stream.send_message(frame_message(payload, self.send_encoding))

    async def finish(
        self,
        status: int,
        message: str = "",
        payload: bytes | None = None,
        details: str = "",
        extra: list[tuple[str, str]] | None = None,
        *,
        last: bool = False,
    ) -> None:
        """Trailers (and, for unary replies, headers + the message first), in one write.
        ``last``: the handler returns right after, so the write happens as it leaves
        (:meth:`H2ServerStream.flush`), without waking the connection's writer task."""
        stream = self.stream
        if stream.finished:
            return
        limit = self.owner.max_send_message_size
        if payload is not None and len(payload) > limit:
            message = f"grpc: response message of {len(payload)} bytes exceeds the send limit of {limit}"
            status, payload = Status.RESOURCE_EXHAUSTED, None
        stream.finished = True
        trailers: list[tuple[str, str]] = []
        if not self.headers_sent:
            if payload is None:
                trailers = self._initial_headers()  # trailers-only response
            else:
                stream.send_headers(self._initial_headers())
            self.headers_sent = True
        # Queued messages (and this one) go before the trailers.
        framed = frame_message(payload, self.send_encoding) if payload is not None else b""
        await stream.send_data(framed, flush=False)
        trailers.append(("grpc-status", str(status)))
        if message:
            trailers.append(("grpc-message", message))
        if details:
            trailers.append(("grpc-status-details-bin", details))
        if extra:
            trailers.extend(extra)
        md = current_response_metadata()
        if md is not None:
            # Headers set after the first message missed the header block: they go here too.
            trailers.extend(_checked_metadata({**md.header, **md.trailer}))
        stream.send_trailers(trailers)
        await stream.flush(last=last)

    async def finish_error(self, err: MicroError, *, last: bool = False) -> None:
        status, message = status_for_error(err)
        await self.finish(status, message, details=status_details_for_error(err), last=last)

    # -- request side --
    async def read_messages(self, decoder: GrpcFrameDecoder, pending: deque[bytes]) -> bool:
        """Fill ``pending`` with at least one message; False at a clean end of the request stream."""
        while not pending:
            chunk = await self.stream.receive()
            try:
                if chunk is None:
                    decoder.close()
                    return False
                pending.extend(decoder.feed(chunk))
            except ProtocolError as exc:
                status = Status.RESOURCE_EXHAUSTED if exc.code == 413 else Status.INTERNAL
                raise _Failed(status, f"grpc: {exc}") from None
        return True

    async def _discard_request(self) -> None:
        """Read and drop the rest of a request we answer without it, for a bounded moment, so
        the HTTP/2 engine still checks it (a content-length its DATA contradicts is reset with
        PROTOCOL_ERROR) instead of our reply and NO_ERROR reset racing the client's frames
        (h2spec 5.1/8, 6.9/2, 8.1.2.6)."""
        with trio.move_on_after(_DISCARD_GRACE):
            while await self.stream.receive() is not None:
                pass

    async def run(self) -> None:
        owner, server = self.owner, self.owner.server
        headers = self.stream.headers
        hmap = dict(headers)
        path = hmap.get(":path", "")
        method = hmap.get(":method")
        if method != "POST":
            # Not a gRPC call (no gRPC client sends anything but POST): a plain HTTP 405 with a line
            # of text, as an HTTP server answers, once the request is heard out (bounded), so frames
            # the client sends on it meet an open stream, not one we closed.
            await self._discard_request()
            self.stream.finished = True
            self.stream.send_headers(
                [(":status", "405"), ("content-type", "text/plain; charset=utf-8"), ("allow", "POST")]
            )
            text = f"grpc: method {method} not allowed; use POST\n".encode("utf-8", "replace")
            await self.stream.send_data(text, end_stream=True)
            return
        ct = hmap.get("content-type", "")
        ct_key = ct.partition(";")[0].strip().lower()
        if ct_key not in GRPC_CONTENT_TYPES:
            if not ct_key.startswith("application/grpc"):
                # Not gRPC at all: plain HTTP 415, as the gRPC spec asks, once the request is in.
                await self._discard_request()
                self.stream.finished = True
                self.stream.send_trailers([(":status", "415")])  # a headers-only response
                await self.stream.flush()
                return
            raise _Failed(Status.UNIMPLEMENTED, f"grpc: unsupported content-type {ct!r}")
        self.content_type = ct_key
        encoding = hmap.get("grpc-encoding")
        if encoding and encoding not in _SUPPORTED_ENCODINGS:
            raise _Failed(
                Status.UNIMPLEMENTED,
                f"grpc: unsupported grpc-encoding {encoding!r}",
                [("grpc-accept-encoding", _ACCEPT_ENCODING)],  # the spec's hint at what would work
            )
        self.recv_encoding = encoding if encoding and encoding != "identity" else None
        self.accepts = accepted_encodings(hmap.get("grpc-accept-encoding"))
        decoder = GrpcFrameDecoder(owner.max_message_size, encoding)
        pending: deque[bytes] = deque()

        raw = owner.unary_handlers.get(path)
        raw_stream = owner.stream_handlers.get(path)
        endpoint = endpoint_for_path(path, server.router.grpc_paths)
        route = server.router.routes.get(endpoint) if endpoint else None
        if raw is None and raw_stream is None and route is None:
            server.stats.requests += 1
            server.stats.errors += 1
            raise _Failed(Status.UNIMPLEMENTED, f"grpc: unknown method {path} (endpoint {endpoint})")

        header = incoming_metadata(headers)
        try:
            timeout = parse_grpc_timeout(hmap.get(GRPC_TIMEOUT))
        except InvalidTimeout as exc:
            server.stats.requests += 1
            server.stats.errors += 1
            raise _Failed(Status.INTERNAL, f"grpc: {exc}") from None
        header.pop(TIMEOUT, None)
        if timeout is not None:
            header[TIMEOUT] = encode_timeout(timeout)
        if endpoint:
            header[MICRO_ENDPOINT] = header[MICRO_METHOD] = endpoint
        header[CONTENT_TYPE] = ct_key

        if raw is not None:
            body = await self._unary_request(decoder, pending)
            await self._run_raw(partial(raw, body), timeout)
            return
        if raw_stream is not None:
            await self._run_raw(partial(self._raw_stream, raw_stream, decoder, pending), timeout)
            return
        assert route is not None
        if not route.streaming:
            body = await self._unary_request(decoder, pending)
            reply = await server.handle_unary(header, body, remote=self.stream.remote)
            err_text = reply.header.get(MICRO_ERROR)
            if err_text:
                retry_after = reply.header.get(MICRO_RETRY_AFTER)  # an overloaded server (server/_limit.py)
                if retry_after is not None:
                    response_metadata()[GRPC_RETRY_PUSHBACK_MS] = str(round(float(retry_after) * 1000))
                details = reply.header.get(MICRO_ERROR_DETAILS)
                await self.finish_error(errors.parse(err_text, default_id=SERVER_ID, details=details), last=True)
            else:
                await self.finish(Status.OK, payload=reply.body, last=True)
            return
        await self._stream(route, header, decoder, pending)

    async def _raw_stream(self, handler: RawStream, decoder: GrpcFrameDecoder, pending: deque[bytes]) -> None:
        async def receive() -> bytes | None:
            if not pending and not await self.read_messages(decoder, pending):
                return None
            return pending.popleft()

        await handler(receive, self.send_message)

    async def _run_raw(self, call: Callable[[], Awaitable[bytes | None]], timeout: float | None) -> None:
        """A raw handler under the call's deadline: its result (a unary reply; None after a stream's
        own messages) or its MicroError becomes the call's status."""
        try:
            with trio.fail_after(timeout if timeout is not None else float("inf")):
                out = await call()
        except MicroError as err:
            await self.finish_error(err, last=True)
            return
        except trio.TooSlowError:
            await self.finish(Status.DEADLINE_EXCEEDED, "deadline exceeded", last=True)
            return
        await self.finish(Status.OK, payload=out, last=True)

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
        ctx, timeout = server.context_for(header, self.content_type, self.stream.remote)
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
            await self.finish_error(error, last=True)
        else:
            await self.finish(Status.OK, last=True)


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
