"""The gRPC client transport: Go Micro's Socket contract on multiplexed HTTP/2 connections.

The core :class:`~trimicro.client.Client` sees an ordinary transport: ``dial`` returns a
:class:`GrpcSocket`, it ``send``s mucp-style :class:`Message` frames and ``receive``s replies. Under
that, every socket to one address shares ONE HTTP/2 connection (h2c prior knowledge, or TLS with ALPN
``h2`` when an ``ssl_context`` is given) and each call is one HTTP/2 stream, so pooled "connections"
are just cheap stream slots. The connection closes when its last socket does.

Mapping (Go Micro's grpc client): ``Micro-Endpoint: Greeter.Hello`` + ``Micro-Service: greeter`` ->
``:path /greeter.Greeter/Hello`` (an endpoint starting with ``/`` is a full gRPC path; header
``Micro-Grpc-Path`` overrides both); ``Content-Type`` -> ``application/grpc+proto``/``+json``;
``Timeout`` -> ``grpc-timeout``; other headers -> metadata. Replies: each message is a frame; a
non-zero ``grpc-status`` becomes a frame carrying ``Micro-Error``; for streams a clean end is a frame
with ``Micro-Error: EOS``.

No background task exists: one waiting caller holds the read baton and reads the shared socket for
everyone, while the others wait for their own data or the baton (see :mod:`trimicro.transport._h2conn`
and docs/grpc.md for why not a reader task), so structured concurrency holds without a transport
nursery. (The server side of HTTP/2 is :mod:`trimicro.transport._h2server`; ``listen`` hands the one
port to the HTTP transport, which passes HTTP/2 connections to the ``h2_handler``.)
"""

from __future__ import annotations

import ssl
from collections import deque
from typing import Any, ClassVar

import attrs
import trio

from .._metadata import (
    CONTENT_TYPE,
    GRPC_RETRY_PUSHBACK_MS,
    GRPC_TIMEOUT,
    MICRO_ENDPOINT,
    MICRO_ERROR,
    MICRO_ERROR_DETAILS,
    MICRO_GRPC_PATH,
    MICRO_ID,
    MICRO_METHOD,
    MICRO_SERVICE,
    MICRO_STREAM,
    TIMEOUT,
    decode_timeout,
    encode_grpc_timeout,
)
from ..codec import GrpcFrameDecoder
from ..codec.grpc import frame_message
from ..context import ResponseMetadata
from ..errors import MicroError, ProtocolError, TransportError, encode_details
from . import _http2 as h2p
from . import _tls
from ._base import NOT_SENT, PARTIAL, SENT, H2Handler, Listener, Message
from ._h2conn import H2Conn, StreamReset, StreamState
from ._h2grpc import (
    Status,
    encode_grpc_message,
    error_from_status,
    grpc_content_type,
    incoming_metadata,
    mucp_content_type,
    outgoing_metadata,
    path_for_endpoint,
)

__all__ = ["GrpcSocket", "GrpcTransport", "client_ssl_context", "from_options"]

CLIENT_ID = "go.micro.client"
EOS = "EOS"
_USER_AGENT = "trimicro-grpc/0.1"
#: sent with every request: the response encodings this client decodes
_ACCEPT_ENCODING = "gzip,deflate"
# HTTP status -> gRPC status when a reply is not gRPC at all (grpc/doc/http-grpc-status-mapping.md).
_HTTP_TO_GRPC = {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14}
# RST_STREAM error codes -> gRPC status (REFUSED_STREAM is retryable: UNAVAILABLE).
_RST_TO_GRPC = {7: 14, 8: 1, 11: 8, 12: 7}


class _ClientConn(H2Conn):
    """One pooled HTTP/2 connection to an address; sockets (calls) share it."""

    def __init__(self, sock: trio.abc.Stream, address: str, authority: str, scheme: str) -> None:
        super().__init__(sock, client_side=True, max_header_list_size=64 * 1024)
        self.address = address
        self.peer = address  # a refused handshake names the node, as the HTTP transport's does
        self.authority = authority
        self.scheme = scheme
        self.refs = 0

    def write_direct(self, st: StreamState, data: bytes) -> int:
        """Write ``data`` as one DATA frame of ``st`` now, from the calling task, with one
        non-blocking ``os.write`` (and whatever else h2 has queued, ahead of it): ``SENT``,
        ``PARTIAL`` (the rest is kept for the next :meth:`flush`, ahead of anything later) or
        ``NOT_SENT`` (nothing done: TLS, a write in progress, the peer's window or a frame too
        small, the stream or connection gone; the caller sends it the usual way, which also
        reports why). Nothing here awaits, so a cancelled caller cannot cut a frame in half.

        Why: a stream's sends otherwise go through its writer task and ``send_all``, whose yield
        after writing costs a scheduler pass; a ping-pong caller answering what it received
        writes itself (trimicro/stream.py)."""
        h2conn = self.h2
        if (
            self._fd < 0
            or self._unsent
            or self._write_lock.locked()
            or self.closed is not None
            or st.reset is not None
            or st.lost is not None
            or st.out
            or len(data) > h2conn.max_outbound_frame_size
        ):
            return NOT_SENT
        try:
            if h2conn.local_flow_control_window(st.id) < len(data):
                return NOT_SENT
            h2conn.send_data(st.id, data)
        except h2p.H2Error:
            return NOT_SENT
        out = h2conn.data_to_send()
        n = self.write_nowait(out)
        if n is None:  # the connection is gone (what h2 queued with it): the usual path reports it
            return NOT_SENT
        if n < len(out):
            self._unsent = out[n:]
            return PARTIAL
        return SENT

    @property
    def usable(self) -> bool:
        # A connection whose stream ids ran out is retired like one the server sent GOAWAY on.
        return (
            self.closed is None
            and not self.goaway
            and self.h2.get_next_available_stream_id() <= h2p.MAX_STREAM_ID
        )

    def on_event(self, event: h2p.Event) -> None:
        if isinstance(event, (h2p.ResponseReceived, h2p.TrailersReceived)):
            st = self.streams.get(event.stream_id)
            if st is None:
                return
            headers = event.headers
            if isinstance(event, h2p.ResponseReceived):
                st.headers = headers
            else:
                st.trailers = headers
            st.changed.fire()

    async def open_stream(self, headers: list[tuple[str, str]]) -> StreamState:
        """Start a request stream, waiting while the peer's MAX_CONCURRENT_STREAMS is reached."""
        while True:
            if self.closed is not None:
                raise self.closed
            if not self.usable:
                raise TransportError(f"{self.address}: HTTP/2 connection is going away")
            limit = self.h2.remote_settings.max_concurrent_streams
            if self.h2.open_outbound_streams < limit:
                break
            await self.wait(self._slots.event)
        stream_id = self.h2.get_next_available_stream_id()
        st = StreamState(stream_id)
        self.streams[stream_id] = st
        self.send_headers(st, headers)
        return st


@attrs.define(eq=False)
class GrpcSocket:
    """One call slot on a shared HTTP/2 connection (see the module docstring for the frame mapping)."""

    #: a receive cancelled anywhere loses nothing (the chunk stays queued until its acknowledgement
    #: is flushed, and a unary reply's message until the stream's end is read): a stream's consumer
    #: may read this socket itself (see trimicro.stream)
    RECEIVE_CANCEL_SAFE: ClassVar[bool] = True
    _transport: GrpcTransport
    _conn: _ClientConn
    local_address: str = ""
    remote_address: str = ""
    _st: StreamState | None = attrs.field(default=None, init=False)
    _streaming: bool = attrs.field(default=False, init=False)
    _finished: bool = attrs.field(default=True, init=False)
    _sent_end: bool = attrs.field(default=False, init=False)
    _reply_header: dict[str, str] = attrs.field(factory=dict, init=False)
    _decoder: GrpcFrameDecoder | None = attrs.field(default=None, init=False)
    _pending: deque[bytes] = attrs.field(factory=deque, init=False)
    #: the response headers' grpc-encoding has been applied to the decoder
    _negotiated: bool = attrs.field(default=False, init=False)
    _closed: bool = attrs.field(default=False, init=False)
    #: set once ``_start`` has opened the stream or failed (``_open_error``): receive() waits for it,
    #: since a stream's reader may start before the first send has found a free stream slot.
    _opened: trio.Event | None = attrs.field(default=None, init=False)
    _open_error: TransportError | None = attrs.field(default=None, init=False)
    #: a RST_STREAM was queued for this call and not yet written (see _flush_aborts)
    _rst_queued: bool = attrs.field(default=False, init=False)
    #: when set (by the client, per call), receives the call's response headers and trailers
    metadata_out: ResponseMetadata | None = attrs.field(default=None, init=False)

    # -- sending --
    async def send(self, msg: Message) -> None:
        if self._closed:
            raise TransportError("socket is closed")
        if self._st is None or self._finished:
            if self._streaming and self._finished:
                # The server already ended this stream (its status is what receive() reports);
                # late frames from the caller, including its EOS, have nowhere to go.
                await trio.lowlevel.checkpoint()
                return
            await self._start(msg)
            return
        st = self._st
        err = msg.header.get(MICRO_ERROR)
        try:
            if err == EOS:
                if not self._sent_end:
                    self._sent_end = True
                    await self._conn.send_data(st, b"", end_stream=True)
            elif err:
                self._abort()
                await self._conn.flush()
            else:
                if self._sent_end:
                    raise TransportError("send after the request stream was closed")
                self._check_size(msg.body)
                await self._conn.send_data(st, frame_message(msg.body, self._transport.send_encoding))
        except StreamReset:
            raise TransportError("gRPC stream was reset by the server") from None

    def try_send(self, msg: Message) -> int:
        """One message of an open request stream written now without awaiting (see
        :meth:`_ClientConn.write_direct`), or ``NOT_SENT``: the first frame, EOS, an error or an
        oversized message take :meth:`send`, which knows what to do with them."""
        st = self._st
        if (
            st is None
            or self._finished
            or self._sent_end
            or self._closed
            or MICRO_ERROR in msg.header
            or len(msg.body) > self._transport.max_send_message_size
        ):
            return NOT_SENT
        return self._conn.write_direct(st, frame_message(msg.body, self._transport.send_encoding))

    async def flush(self) -> None:
        """Write what a ``PARTIAL`` :meth:`try_send` left (the stream's writer task calls this)."""
        await self._conn.flush()

    def _check_size(self, body: bytes) -> None:
        limit = self._transport.max_send_message_size
        if len(body) > limit:
            # gRPC's RESOURCE_EXHAUSTED (429 maps to it), before a byte is sent
            raise MicroError(
                "go.micro.client",
                429,
                f"request message of {len(body)} bytes exceeds the send limit of {limit}",
            )

    async def _start(self, msg: Message) -> None:
        header = msg.header
        conn = self._conn
        if not conn.usable:
            raise conn.closed or TransportError(f"{conn.address}: HTTP/2 connection is going away")
        self._release_stream()
        service = header.get(MICRO_SERVICE, "")
        endpoint = header.get(MICRO_ENDPOINT) or header.get(MICRO_METHOD, "")
        path = header.get(MICRO_GRPC_PATH) or path_for_endpoint(service, endpoint)
        if not path.startswith("/"):
            raise MicroError(CLIENT_ID, 400, f"cannot map endpoint {endpoint!r} to a gRPC path")
        mucp_ct = header.get(CONTENT_TYPE, "application/protobuf")
        grpc_ct = grpc_content_type(mucp_ct)
        headers = [
            (":method", "POST"),
            (":scheme", conn.scheme),
            (":path", path),
            (":authority", conn.authority),
            ("content-type", grpc_ct),
            ("te", "trailers"),
            ("user-agent", _USER_AGENT),
        ]
        timeout = decode_timeout(header.get(TIMEOUT))
        if timeout is not None:
            headers.append((GRPC_TIMEOUT, encode_grpc_timeout(timeout)))
        encoding = self._transport.send_encoding
        if encoding is not None:
            headers.append(("grpc-encoding", encoding))
        headers.append(("grpc-accept-encoding", _ACCEPT_ENCODING))
        try:
            headers.extend(outgoing_metadata(header))
        except ValueError as exc:
            raise MicroError(CLIENT_ID, 400, f"cannot send over gRPC: {exc}") from None
        self._streaming = MICRO_STREAM in header
        self._reply_header = {
            k: header[k] for k in (MICRO_ID, MICRO_SERVICE, MICRO_ENDPOINT, MICRO_STREAM) if k in header
        }
        self._reply_header[CONTENT_TYPE] = (
            mucp_ct if not mucp_ct.startswith("application/grpc") else mucp_content_type(mucp_ct)
        )
        self._decoder = GrpcFrameDecoder(self._transport.max_message_size)
        self._negotiated = False
        self._pending.clear()
        self._finished = False
        self._sent_end = False
        self._open_error = None
        self._opened = opened = trio.Event()
        try:
            st = await conn.open_stream(headers)
        except TransportError as exc:
            self._finished = True
            self._open_error = exc
            raise
        finally:
            opened.set()
        self._st = st
        try:
            if self._streaming:
                # mucp's first stream frame only routes; its body is discarded (wire/mucp.md).
                await conn.flush()
            else:
                self._sent_end = True
                self._check_size(msg.body)
                await conn.send_data(st, frame_message(msg.body, encoding), end_stream=True)
        except StreamReset:
            raise TransportError("gRPC stream was reset by the server") from None

    # -- receiving --
    async def receive(self) -> Message:
        if self._closed:
            raise TransportError("socket is closed")
        if self._st is None and self._opened is not None:
            await self._opened.wait()  # the first send is still waiting for a stream slot
            if self._open_error is not None:
                raise self._open_error
        if self._st is None or self._finished:
            raise trio.EndOfChannel
        msg = await self._receive()
        if self._rst_queued:
            await self._flush_aborts()
        return msg

    async def _flush_aborts(self) -> None:
        """Write a RST_STREAM that finishing the call queued (a bad or oversized reply, a server
        that ended first): the server's handler must hear of it now, not with some later call."""
        self._rst_queued = False
        await self._conn.flush_bounded()

    async def _receive(self) -> Message:
        try:
            if self._streaming:
                payload = await self._next_message()
                if payload is not None:
                    if self.metadata_out is not None and not self.metadata_out.header:
                        self._record_metadata()
                    return Message(self._header(), payload)
                return self._final(None)
            first = await self._next_message()
            if first is not None:
                try:
                    second = await self._next_message()
                except BaseException:  # cancelled (or lost) before the stream's end: keep the reply
                    self._pending.appendleft(first)
                    raise
                if second is not None:
                    return self._error(Status.INTERNAL, "grpc: unary reply carries more than one message")
            return self._final(first)
        except StreamReset as exc:
            code = _RST_TO_GRPC.get(exc.code, Status.INTERNAL)
            return self._error(code, f"grpc: stream reset by server (HTTP/2 error code {exc.code})")
        except ProtocolError as exc:
            status = Status.RESOURCE_EXHAUSTED if exc.code == 413 else Status.INTERNAL
            self._abort()
            return self._error(status, f"grpc: bad reply: {exc}")

    async def _next_message(self) -> bytes | None:
        st, decoder = self._st, self._decoder
        assert st is not None and decoder is not None
        while not self._pending:
            chunk = await self._conn.receive_chunk(st)
            if chunk is None:
                decoder.close()
                return None
            if not self._negotiated:
                # DATA follows the response headers: they name the messages' grpc-encoding.
                self._negotiated = True
                for k, v in st.headers or ():
                    if k == "grpc-encoding":
                        decoder.negotiate(v)
                        if self.metadata_out is not None:
                            self.metadata_out.compression = v
            self._pending.extend(decoder.feed(chunk))
        return self._pending.popleft()

    def _header(self) -> dict[str, str]:
        out = dict(self._reply_header)
        st = self._st
        if st is not None and st.headers:
            for k, v in incoming_metadata(st.headers).items():
                out.setdefault(k, v)
        return out

    def _record_metadata(self) -> None:
        """Copy the response headers and trailers into ``metadata_out``; a trailers-only response's
        metadata is trailing (it came with the status), as in gRPC."""
        st, out = self._st, self.metadata_out
        if st is None or out is None:
            return
        if st.trailers is None:
            if st.headers:
                trailers_only = any(k == "grpc-status" for k, _ in st.headers)
                (out.trailer if trailers_only else out.header).update(incoming_metadata(st.headers))
            return
        if st.headers:
            out.header.update(incoming_metadata(st.headers))
        out.trailer.update(incoming_metadata(st.trailers))

    def _final(self, payload: bytes | None) -> Message:
        """The reply (unary) or the terminal frame (streams), from the response status and trailers."""
        st = self._st
        assert st is not None
        self._record_metadata()
        trailers = st.trailers if st.trailers is not None else (st.headers or [])
        tmap = dict(trailers)
        http_status = dict(st.headers or []).get(":status", "200")
        if http_status != "200":
            code = _HTTP_TO_GRPC.get(int(http_status) if http_status.isdigit() else 0, Status.UNKNOWN)
            return self._error(code, f"grpc: HTTP status {http_status} from server")
        raw_status = tmap.get("grpc-status")
        if raw_status is None:
            return self._error(Status.INTERNAL, "grpc: reply ended without grpc-status")
        status = int(raw_status) if raw_status.isdigit() else Status.UNKNOWN
        if status != Status.OK:
            err = error_from_status(
                status,
                tmap.get("grpc-message", ""),
                default_id=CLIENT_ID,
                details=tmap.get("grpc-status-details-bin"),
            )
            header = {**self._header(), MICRO_ERROR: err.to_json()}
            if err.details:
                header[MICRO_ERROR_DETAILS] = encode_details(err.details)
            if GRPC_RETRY_PUSHBACK_MS in tmap:  # server pushback (gRFC A6), honoured by client/_retry.py
                header[GRPC_RETRY_PUSHBACK_MS] = tmap[GRPC_RETRY_PUSHBACK_MS]
            return self._done(Message(header, b""))
        header = self._header()
        if st.trailers:
            for k, v in incoming_metadata(st.trailers).items():
                header.setdefault(k, v)
        if self._streaming:
            header[MICRO_ERROR] = EOS
            return self._done(Message(header, b""))
        if payload is None:
            return self._error(Status.INTERNAL, "grpc: unary reply carries no message")
        return self._done(Message(header, payload))

    def _error(self, status: int, text: str) -> Message:
        err = error_from_status(status, encode_grpc_message(text), default_id=CLIENT_ID)
        return self._done(Message({**self._header(), MICRO_ERROR: err.to_json()}, b""))

    def _done(self, msg: Message) -> Message:
        self._finished = True
        st = self._st
        if st is not None and not st.ended and st.reset is None:
            self._abort()
        self._release_stream()
        return msg

    # -- closing --
    def _abort(self) -> None:
        st = self._st
        if st is not None and (st.reset is None and st.lost is None):
            self._conn.reset_stream(st, 8)  # CANCEL: the server's handler is cancelled
            st.reset = 8
            self._rst_queued = True

    def _release_stream(self) -> None:
        if self._st is not None:
            if self._conn.release(self._st):
                self._rst_queued = True
            self._st = None

    async def aclose(self) -> None:
        """Cancel an unfinished call (RST_STREAM CANCEL) and drop this slot; the last one closes the connection."""
        if self._closed:
            return
        self._closed = True
        if self._st is not None and not self._finished:
            self._abort()
        self._release_stream()
        if self._rst_queued:
            await self._flush_aborts()
        await self._transport._unref(self._conn)


@attrs.define(eq=False)
class GrpcTransport:
    """Client side of gRPC over HTTP/2; ``listen`` serves the one port via the HTTP transport."""

    ssl_context: ssl.SSLContext | None = None
    max_message_size: int = 4 * 1024 * 1024
    #: largest request message sent (``client_max_send_msg_size``; gRPC's default: 2 GiB - 1)
    max_send_message_size: int = 2**31 - 1
    name: str = "grpc"
    options: Any = None
    #: compress every request message with this (``client_compression``: gzip or deflate)
    compression: str = attrs.field(
        default="", validator=attrs.validators.in_(("", "identity", "gzip", "deflate"))
    )
    _conns: dict[str, _ClientConn] = attrs.field(factory=dict, init=False)
    _dialing: dict[str, trio.Lock] = attrs.field(factory=dict, init=False)

    @property
    def send_encoding(self) -> str | None:
        """The ``grpc-encoding`` requests carry (None: plain)."""
        return self.compression if self.compression not in ("", "identity") else None

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    async def listen(self, address: str, *, h2_handler: H2Handler | None = None) -> Listener:
        """The server's one port speaks both protocols; the HTTP transport sniffs for HTTP/2."""
        from . import http

        inner = http.from_options(self.options) if self.options is not None else http.HttpTransport()
        listener: Listener = await inner.listen(address, h2_handler=h2_handler)
        return listener

    async def dial(self, address: str, *, timeout: float | None = None) -> GrpcSocket:
        conn = self._conns.get(address)
        if conn is None or not conn.usable:
            lock = self._dialing.setdefault(address, trio.Lock())
            async with lock:
                conn = self._conns.get(address)
                if conn is None or not conn.usable:
                    conn = await self._connect(address, timeout)
                    self._conns[address] = conn
        conn.refs += 1
        return GrpcSocket(self, conn, remote_address=address)

    async def _connect(self, address: str, limit: float | None) -> _ClientConn:
        host, _, port_s = address.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        try:
            port = int(port_s)
        except ValueError:
            raise TransportError(f"bad address {address!r}: want host:port") from None
        try:
            with trio.fail_after(limit if limit is not None else 30.0):
                tcp: trio.abc.Stream = await trio.open_tcp_stream(host, port)
                stream = tcp
                if self.ssl_context is not None:
                    tls = trio.SSLStream(tcp, self.ssl_context, server_hostname=host)
                    await tls.do_handshake()
                    if tls.selected_alpn_protocol() != "h2":
                        await tls.aclose()
                        raise TransportError(f"{address}: server did not negotiate h2 via ALPN")
                    stream = tls
        except trio.TooSlowError:
            raise TransportError(f"{address}: connect timed out") from None
        except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
            raise _tls.describe_tls_error(address, exc) or TransportError(f"{address}: {exc}") from None
        conn = _ClientConn(stream, address, address, "https" if self.ssl_context is not None else "http")
        conn.start()
        await conn.flush()
        return conn

    async def _unref(self, conn: _ClientConn) -> None:
        conn.refs -= 1
        if conn.refs <= 0:
            if self._conns.get(conn.address) is conn:
                del self._conns[conn.address]
            await conn.aclose()

    async def aclose(self) -> None:
        """Close every connection (sockets still out fail with TransportError)."""
        conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            await conn.aclose()

    async def __aenter__(self) -> GrpcTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def client_ssl_context(ca_file: str = "", *, context: ssl.SSLContext | None = None) -> ssl.SSLContext:
    """A TLS client context offering ALPN ``h2`` (trusting ``ca_file`` when given)."""
    ctx = context or ssl.create_default_context(cafile=ca_file or None)
    ctx.set_alpn_protocols(["h2"])
    return ctx


def from_options(options: Any) -> GrpcTransport:
    """The ``grpc`` transport plugin: TLS when ``client_tls_ca`` is set (ALPN ``h2``)."""
    ctx = _tls.client_context(options, ["h2"])  # client_tls_ca, client_tls_cert/key (mTLS)
    return GrpcTransport(
        ssl_context=ctx,
        max_message_size=getattr(options, "client_max_recv_msg_size", 4 * 1024 * 1024),
        max_send_message_size=getattr(options, "client_max_send_msg_size", 2**31 - 1),
        options=options,
        compression=getattr(options, "client_compression", ""),
    )
