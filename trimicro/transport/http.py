"""mucp over HTTP/1.1 on trio: the default transport (``--transport http``).

A thin adapter around the sans-IO framing in :mod:`trimicro.transport.mucp`: it moves bytes between
trio streams and the parser, and turns the parser's states into timeouts:

- a server socket waits up to ``idle_timeout`` for the first byte of a frame (then reports a clean
  close, ``trio.EndOfChannel``) and up to ``header_timeout`` for the rest of its headers
  (``ProtocolError(code=408)``); body bytes must keep arriving within ``idle_timeout`` each and the
  whole body within ``body_timeout`` (408), so a trickled body cannot hold a connection for long;
- a new connection gets ``header_timeout`` from accept, not ``idle_timeout``, for its first frame's
  headers (and the HTTP/2 preface sniff): one that sends nothing, or half a preface, is closed;
- the listener serves at most ``max_connections`` at once (0: derived from ``RLIMIT_NOFILE``); beyond
  it new connections are accepted and closed at once, with a rate-limited log line, so idle sockets
  cannot exhaust descriptors and lock every client out;
- body and header limits raise ``ProtocolError`` (413 / 431) as soon as they are known, and the socket
  still accepts ``send`` so the server can write an error reply before closing;
- EOF inside a frame is a :class:`~trimicro.errors.TransportError`; between frames ``EndOfChannel``.

One port can also serve HTTP/2: with ``listen(address, h2_handler=...)`` a connection that starts with
the HTTP/2 preface (or negotiates ALPN ``h2`` under TLS) is handed to ``h2_handler(stream, initial)``.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import resource
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self

import attrs
import trio

from ..errors import ProtocolError, TransportError
from . import _tls
from ._base import NOT_SENT, PARTIAL, SENT, H2Handler, Message
from ._sockio import receive_tcp
from .mucp import (
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_MAX_HEADER_SIZE,
    H2_PREFACE,
    NEED_DATA,
    ClientConnection,
    EndOfStream,
    FrameState,
    ServerConnection,
)

if TYPE_CHECKING:
    from ..config import Options

__all__ = ["H2Handler", "HttpListener", "HttpSocket", "HttpTransport", "from_options", "split_address"]

log = logging.getLogger("trimicro.transport.http")

_RECEIVE_SIZE = 256 * 1024  # a 64 KiB body and its headers in one read
_LINGER = 1.0  # seconds to drain unread input after a protocol error, so the error reply is not reset
_LINGER_BYTES = 1 << 20
_ACCEPT_RETRY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
_LOG_EVERY = 10.0  # seconds between two log lines about refused connections or failing accepts
_FD_RESERVE = 100  # descriptors kept for everything but accepted connections (registry, broker, files)
_DEFAULT_MAX_CONNECTIONS = 10_000


def default_max_connections() -> int:
    """Connections a listener accepts at once when none is configured: the descriptor limit minus a
    reserve (a tenth, at least ``_FD_RESERVE``), at most 10,000; so a flood of idle sockets hits this
    cap, refused cleanly, before ``EMFILE`` locks out every new client and outgoing call."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return _DEFAULT_MAX_CONNECTIONS
    return max(16, min(_DEFAULT_MAX_CONNECTIONS, soft - max(_FD_RESERVE, soft // 10)))


@attrs.define(eq=False)
class _RateLimitedLog:
    """At most one log line per ``every`` seconds, saying how many events it stands for."""

    every: float = _LOG_EVERY
    _next: float = attrs.field(default=-math.inf, init=False)
    _count: int = attrs.field(default=0, init=False)

    def event(self, level: int, message: str, *args: object) -> None:
        self._count += 1
        now = trio.current_time()
        if now < self._next:
            return
        log.log(level, message + " (%d time(s) in the last %gs)", *args, self._count, self.every)
        self._count = 0
        self._next = now + self.every


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` / ``"[::1]:port"`` / ``":port"`` -> ``(host, port)``; ValueError if malformed.

    An empty host (Go's ``:8080`` habit) means loopback, not every interface: listening beyond this
    machine is opt-in, by naming the address (``0.0.0.0:8080``).
    """
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"invalid address {address!r}: want host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "127.0.0.1", int(port)


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _sockname(stream: trio.abc.Stream, peer: bool) -> str:
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        try:
            name = stream.socket.getpeername() if peer else stream.socket.getsockname()
        except OSError:
            return ""
        if isinstance(name, tuple):
            return _join(str(name[0]), int(name[1]))
        return str(name)
    # Other streams may name their ends (the memory transport's do).
    return str(getattr(stream, "remote_address" if peer else "local_address", ""))


@attrs.define(eq=False)
class HttpSocket:
    """One mucp connection (server or client side): frames in, frames out.

    Receives and sends may run in different tasks (one of each at a time). ``closed`` turns true when
    the socket was closed or a write was interrupted midway (the byte stream is then unusable), which
    is what a connection pool checks before reuse.
    """

    #: a cancelled ``receive`` loses nothing (the parser keeps a frame it has not returned): so a
    #: stream's consumer may read this socket itself (trimicro/stream.py)
    RECEIVE_CANCEL_SAFE: ClassVar[bool] = True

    _stream: trio.abc.Stream
    _conn: ServerConnection | ClientConnection
    local_address: str = ""
    remote_address: str = ""
    _idle_timeout: float = math.inf
    _header_timeout: float = math.inf
    #: the whole body of one frame must arrive within this many seconds (server sockets)
    _body_timeout: float = math.inf
    #: the first frame's headers must be complete by this absolute time (set at accept), so a new
    #: connection that sends nothing or trickles is closed after ``header_timeout``, not ``idle_timeout``
    _first_deadline: float = math.inf
    _error: ProtocolError | None = attrs.field(default=None, init=False)
    _broken: bool = attrs.field(default=False, init=False)
    _closed: bool = attrs.field(default=False, init=False)
    _send_lock: trio.StrictFIFOLock = attrs.field(factory=trio.StrictFIFOLock, init=False)
    _receive_lock: trio.StrictFIFOLock = attrs.field(factory=trio.StrictFIFOLock, init=False)
    _idle_wait: trio.CancelScope | None = attrs.field(default=None, init=False)
    _stop_idle: bool = attrs.field(default=False, init=False)
    _server_side: bool = attrs.field(default=False, init=False)
    #: bytes of a frame that :meth:`try_send` could only partly write; every later write sends them first
    _pending: bytes = attrs.field(default=b"", init=False)
    #: the descriptor :meth:`try_send` writes to: plain TCP on POSIX only (TLS must go through its stream)
    _fd: int = attrs.field(default=-1, init=False)

    def __attrs_post_init__(self) -> None:
        self._server_side = isinstance(self._conn, ServerConnection)  # only a server socket drains
        if os.name == "posix" and type(self._stream) is trio.SocketStream:
            self._fd = self._stream.socket.fileno()

    @property
    def closed(self) -> bool:
        return self._closed or self._broken

    @property
    def errored(self) -> bool:
        """True once ``receive`` raised ProtocolError (input can no longer be read)."""
        return self._error is not None

    @property
    def stream(self) -> trio.abc.Stream:
        """The underlying trio stream (TCP or TLS)."""
        return self._stream

    def interrupt_idle(self) -> None:
        """End a ``receive`` waiting for the first byte of a frame, now and from now on, as a clean close
        (``trio.EndOfChannel``); a frame already partly received is still read. A draining server calls
        this instead of wrapping every receive in a cancel scope of its own. Server sockets only."""
        self._stop_idle = True
        if self._idle_wait is not None:
            self._idle_wait.cancel()

    async def receive(self) -> Message:
        """The next frame. See the module docstring for timeouts and errors."""
        if self._error is not None:
            raise self._error
        lock = self._receive_lock
        # Uncontended (the usual case): take the lock without the extra yield ``acquire`` makes; the
        # socket read below is the checkpoint (and a frame already buffered checks for cancellation).
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            return await self._receive_locked()
        finally:
            lock.release()

    async def _receive_locked(self) -> Message:
        # Before anything is consumed: a cancelled caller loses no buffered frame.
        await trio.lowlevel.checkpoint_if_cancelled()
        conn = self._conn
        header_deadline = self._first_deadline
        body_deadline = math.inf
        while True:
            try:
                msg = conn.next_message()
            except EndOfStream:
                raise trio.EndOfChannel from None
            except ProtocolError as exc:
                self._error = exc
                raise
            except TransportError as exc:
                raise TransportError(f"{exc} (peer {self.remote_address})") from None
            if msg is not NEED_DATA:
                self._first_deadline = math.inf
                return msg
            state = conn.state
            if state is FrameState.HEADERS:
                if header_deadline == math.inf:
                    header_deadline = trio.current_time() + self._header_timeout
                deadline = header_deadline
            elif state is FrameState.IDLE:
                deadline = min(header_deadline, trio.current_time() + self._idle_timeout)
            else:
                if body_deadline == math.inf:
                    body_deadline = trio.current_time() + self._body_timeout
                deadline = min(body_deadline, trio.current_time() + self._idle_timeout)
            idle = state is FrameState.IDLE
            if idle and self._stop_idle:
                raise trio.EndOfChannel
            if deadline == math.inf and not (idle and self._server_side):
                # No timeout (client sockets): no cancel scope to enter and leave per read.
                conn.receive_data(await self._receive_some())
                continue
            with trio.move_on_at(deadline) as scope:
                if idle:
                    self._idle_wait = scope
                try:
                    data = await self._receive_some()
                finally:
                    self._idle_wait = None
            if scope.cancelled_caught:
                if state is FrameState.IDLE:
                    raise trio.EndOfChannel  # idle connection: a clean close
                part = "headers" if state is FrameState.HEADERS else "body"
                self._error = ProtocolError(f"timed out reading frame {part}", code=408)
                raise self._error
            conn.receive_data(data)

    async def _receive_some(self) -> bytes | bytearray:
        try:
            if self._fd >= 0:
                return await receive_tcp(self._stream, self._fd, _RECEIVE_SIZE)  # type: ignore[arg-type]
            return await self._stream.receive_some(_RECEIVE_SIZE)
        except _STREAM_ERRORS as exc:  # a TLS 1.3 server refusing our certificate says so here
            tls = _tls.describe_tls_error(self.remote_address, exc)
            raise tls or TransportError(f"connection to {self.remote_address} lost: {exc}") from exc

    async def send(self, msg: Message) -> None:
        """Write one frame. ProtocolError for unsendable headers; TransportError if the connection is gone."""
        await self._write(self._conn.send(msg))

    async def send_many(self, msgs: Iterable[Message]) -> None:
        """Write several frames in one write (fewer syscalls and packets for streams)."""
        await self._write(self._conn.send_many(msgs))

    def try_send(self, msg: Message) -> int:
        """Write one frame now, without waiting, if nothing else is writing: ``SENT``, ``PARTIAL`` (the
        rest is kept and goes out first on the next write, so the caller must make one: :meth:`flush`),
        or ``NOT_SENT`` (nothing written: the caller sends it the usual way).

        Why: a stream's writer task costs a task switch per message when messages go out one at a
        time (ping-pong); a frame that fits in the socket buffer can be written by the sender itself.
        Nothing here awaits, so a cancelled sender can never leave half a frame on the wire.
        Plain TCP on POSIX only; a TLS stream, or a socket already writing, answers ``NOT_SENT``."""
        if self._fd < 0 or self._pending or self._broken or self._closed or self._send_lock.locked():
            return NOT_SENT
        data = self._conn.send(msg)
        try:
            n = self._write_nowait(data)
        except OSError:
            return NOT_SENT  # the usual path reports it (and marks the connection broken) the usual way
        if n == len(data):
            return SENT
        self._pending = data[n:]  # (a write of 0 bytes left the whole frame here: still ours to send)
        return PARTIAL

    def _write_nowait(self, data: bytes) -> int:
        """One non-blocking ``os.write`` on the TCP descriptor: bytes written, 0 when the socket
        buffer is full; OSError when the connection is gone."""
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0

    async def flush(self) -> None:
        """Write what :meth:`try_send` left over (nothing to do when it wrote everything)."""
        if self._pending:
            await self._write(b"")

    async def _write(self, data: bytes) -> None:
        lock = self._send_lock
        try:
            lock.acquire_nowait()  # as in receive: no extra yield when uncontended
        except trio.WouldBlock:
            await lock.acquire()
        try:
            if self._broken:
                raise TransportError(f"connection to {self.remote_address} broken by an interrupted write")
            # Plain TCP with no request of the peer waiting in our buffer: one non-blocking write
            # first, and no yield when it takes everything. Why: trio's send_all yields after every
            # successful send, one more trip through the scheduler per frame (a unary call paid it
            # on both ends: 4 task steps instead of 2). Still a cancellation point, taken before a
            # byte is written (so a send cancelled there leaves the connection usable). With frames
            # of the peer already buffered (pipelined requests) the send yields as before, so a
            # connection that sends many requests at once cannot keep the scheduler to itself.
            direct = self._fd >= 0 and not self._conn.buffered
            if direct:
                await trio.lowlevel.checkpoint_if_cancelled()
            if self._pending:
                data, self._pending = self._pending + data, b""
            try:
                if direct:
                    n = self._write_nowait(data)
                    if n == len(data):
                        return
                    data = data[n:]
                await self._stream.send_all(data)
            except _STREAM_ERRORS as exc:
                self._broken = True
                raise TransportError(f"connection to {self.remote_address} lost: {exc}") from exc
            except BaseException:
                self._broken = True  # cancelled midway: part of a frame may be on the wire
                raise
        finally:
            lock.release()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await trio.aclose_forcefully(self._stream)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


@attrs.define(eq=False)
class HttpListener:
    """Bound listening socket(s); ``serve`` runs one task per connection until cancelled.

    Closing the listener (``aclose``) stops accepting; ``serve`` then returns once the open
    connections have finished, which is how a server drains. ``open_connections`` counts live ones.
    """

    address: str
    _listeners: Sequence[trio.abc.Listener[trio.abc.HalfCloseableStream]]  # TCP, or memory.py's
    _transport: HttpTransport
    _h2_handler: H2Handler | None = None
    open_connections: int = attrs.field(default=0, init=False)
    accepted: int = attrs.field(default=0, init=False)
    #: connections closed at accept because ``max_connections`` were open
    refused: int = attrs.field(default=0, init=False)
    _refused_log: _RateLimitedLog = attrs.field(factory=_RateLimitedLog, init=False)
    _accept_log: _RateLimitedLog = attrs.field(factory=_RateLimitedLog, init=False)

    async def serve(
        self,
        handler: Callable[[HttpSocket], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with trio.open_nursery() as nursery:
            for listener in self._listeners:
                nursery.start_soon(self._accept_loop, listener, handler, nursery)
            task_status.started(self.address)

    async def _accept_loop(
        self,
        listener: trio.abc.Listener[trio.abc.HalfCloseableStream],
        handler: Callable[[HttpSocket], Awaitable[None]],
        nursery: trio.Nursery,
    ) -> None:
        limit = self._transport.max_connections or default_max_connections()
        while True:
            try:
                stream = await listener.accept()
            except trio.ClosedResourceError:
                return
            except OSError as exc:
                if exc.errno not in _ACCEPT_RETRY_ERRNOS:
                    raise
                self._accept_log.event(logging.ERROR, "accept on %s failed (%s); retrying", self.address, exc)
                await trio.sleep(0.1)  # out of descriptors/memory: back off, as trio.serve_listeners
                continue
            if self.open_connections >= limit:
                # Over the cap: close at once (the peer sees a clean close and may retry elsewhere);
                # the listen backlog is drained so it does not fill with connections we never serve.
                self.refused += 1
                self._refused_log.event(
                    logging.WARNING,
                    "%s: %d connections open (server_max_connections); refusing new ones",
                    self.address,
                    self.open_connections,
                )
                await trio.aclose_forcefully(stream)
                continue
            self.accepted += 1
            self.open_connections += 1
            nursery.start_soon(self._connection, stream, handler)

    async def _connection(
        self, tcp: trio.abc.HalfCloseableStream, handler: Callable[[HttpSocket], Awaitable[None]]
    ) -> None:
        stream: trio.abc.Stream = tcp
        t = self._transport
        first_deadline = trio.current_time() + t.header_timeout
        try:
            if t.ssl_context is not None:
                ssl_stream = trio.SSLStream(tcp, t.ssl_context, server_side=True)
                stream = ssl_stream
                handshook = False
                with trio.move_on_after(t.header_timeout):
                    try:
                        await ssl_stream.do_handshake()
                        handshook = True
                    except trio.BrokenResourceError as exc:
                        log.debug("TLS handshake from %s failed: %s", _sockname(tcp, True), exc)
                        await _tls.send_alert(ssl_stream, tcp)
                if not handshook:
                    return
                if self._h2_handler is not None and ssl_stream.selected_alpn_protocol() == "h2":
                    await self._h2_handler(stream, b"")
                    return
            initial = b""
            if self._h2_handler is not None:
                initial = await self._sniff(stream, first_deadline)
                if initial.startswith(H2_PREFACE):
                    await self._h2_handler(stream, initial)
                    return
                if not initial:
                    return
            conn = ServerConnection(max_header_size=t.max_header_size, max_body_size=t.max_body_size)
            if initial:
                conn.receive_data(initial)
            sock = HttpSocket(
                stream,
                conn,
                _sockname(tcp, False),
                _sockname(tcp, True),
                t.idle_timeout,
                t.header_timeout,
                t.body_timeout,
                first_deadline,
            )
            await handler(sock)
            if sock.errored and not sock.closed:
                await _linger(tcp)
        except (TransportError, trio.EndOfChannel) as exc:
            log.debug("connection from %s ended: %r", _sockname(tcp, True), exc)  # the peer went away
        except Exception:
            # One connection's failure must not stop the listener (the server keeps serving).
            log.exception("connection handler for %s failed", _sockname(tcp, True))
        finally:
            self.open_connections -= 1
            await trio.aclose_forcefully(stream)

    async def _sniff(self, stream: trio.abc.Stream, deadline: float) -> bytes:
        """Read until the bytes cannot be (or are) the HTTP/2 preface; b"" if the peer left, or sent
        nothing or only part of the preface by ``deadline`` (accept + ``header_timeout``).

        mucp requests start with a method such as ``POST``, which differs from ``PRI`` at the second
        byte, so this usually costs exactly the one read the parser needed anyway.
        """
        data = b""
        while len(data) < len(H2_PREFACE) and H2_PREFACE.startswith(data):
            with trio.move_on_at(deadline) as scope:
                try:
                    chunk = await stream.receive_some(_RECEIVE_SIZE)
                except _STREAM_ERRORS:
                    return b""
            if scope.cancelled_caught or not chunk:
                return b""  # silent, a partial preface too slow, or gone: nothing to answer
            data += chunk
        return data

    async def aclose(self) -> None:
        """Stop accepting (connections already accepted keep running)."""
        for listener in self._listeners:
            await listener.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


async def _linger(tcp: trio.abc.HalfCloseableStream) -> None:
    """Half-close and drain input briefly, so our last reply is not destroyed by a TCP reset."""
    with trio.move_on_after(_LINGER):
        try:
            await tcp.send_eof()
            drained = 0
            while drained < _LINGER_BYTES:
                chunk = await tcp.receive_some(_RECEIVE_SIZE)
                if not chunk:
                    return
                drained += len(chunk)
        except _STREAM_ERRORS:
            return


@attrs.define(eq=False)
class HttpTransport:
    """The ``http`` transport: Go Micro's mucp framing over HTTP/1.1, optionally under TLS.

    ``ssl_context`` makes listeners serve TLS; ``listen`` sets its ALPN protocols (``http/1.1``, with
    ``h2`` first when an ``h2_handler`` is given). ``client_ssl_context`` is the default for ``dial``
    and is used as given (callers sharing one context with an h2 client set ALPN themselves).
    ``reuse_port`` binds with ``SO_REUSEPORT`` so several worker processes share one port
    (``server_workers``).
    """

    max_header_size: int = DEFAULT_MAX_HEADER_SIZE
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    header_timeout: float = 10.0
    idle_timeout: float = 300.0
    body_timeout: float = 60.0
    max_connections: int = 0  # 0: default_max_connections()
    ssl_context: ssl.SSLContext | None = None
    client_ssl_context: ssl.SSLContext | None = None
    reuse_port: bool = False
    name: str = attrs.field(default="http", init=False)

    async def listen(self, address: str, *, h2_handler: H2Handler | None = None) -> HttpListener:
        """Bind ``address`` (``host:port``; port 0 picks one, reported in ``listener.address``)."""
        try:
            host, port = split_address(address)
        except ValueError as exc:
            raise TransportError(str(exc)) from None
        if self.ssl_context is not None:
            self.ssl_context.set_alpn_protocols(["h2", "http/1.1"] if h2_handler else ["http/1.1"])
        try:
            if self.reuse_port:
                listeners = [await _reuse_port_listener(host or "127.0.0.1", port)]
            else:
                listeners = await trio.open_tcp_listeners(port, host=host or None)
        except OSError as exc:
            raise TransportError(f"listen on {address}: {exc}") from exc
        name = listeners[0].socket.getsockname()
        bound = _join(str(name[0]), int(name[1]))
        return HttpListener(bound, listeners, self, h2_handler)

    async def dial(
        self,
        address: str,
        *,
        timeout: float | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> HttpSocket:
        """Connect to ``address``; TransportError (naming it) if that fails or exceeds ``timeout``."""
        try:
            host, port = split_address(address)
        except ValueError as exc:
            raise TransportError(str(exc)) from None
        ctx = ssl_context if ssl_context is not None else self.client_ssl_context
        stream: trio.abc.Stream | None = None
        try:
            with trio.fail_after(math.inf if timeout is None else timeout):
                tcp = await trio.open_tcp_stream(host, port)
                stream = tcp
                if ctx is not None:
                    stream = trio.SSLStream(tcp, ctx, server_hostname=host)
                    await stream.do_handshake()
        except trio.TooSlowError:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            raise TransportError(f"dial {address}: timed out after {timeout}s") from None
        except _STREAM_ERRORS as exc:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            raise _tls.describe_tls_error(address, exc) or TransportError(f"dial {address}: {exc}") from exc
        assert stream is not None
        conn = ClientConnection(
            address, max_header_size=self.max_header_size, max_body_size=self.max_body_size
        )
        return HttpSocket(stream, conn, _sockname(tcp, False), _sockname(tcp, True))


async def _reuse_port_listener(host: str, port: int) -> trio.SocketListener:
    """One listening socket that shares its port with the other workers (``SO_REUSEPORT``)."""
    family = trio.socket.AF_INET6 if ":" in host else trio.socket.AF_INET
    sock = trio.socket.socket(family, trio.socket.SOCK_STREAM)
    try:
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEPORT, 1)
        await sock.bind((host.strip("[]"), port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    return trio.SocketListener(sock)


def from_options(options: Options) -> HttpTransport:
    """Build the transport from service options (limits, timeouts, TLS cert/key, client CA)."""
    server_ctx = _tls.server_context(options)  # mTLS with server_tls_client_ca
    client_ctx = _tls.client_context(options, ["http/1.1"])
    return HttpTransport(
        max_header_size=options.server_max_header_size,
        max_body_size=options.server_max_body_size,
        header_timeout=options.server_header_timeout,
        idle_timeout=options.server_idle_timeout,
        body_timeout=options.server_body_timeout,
        max_connections=options.server_max_connections,
        ssl_context=server_ctx,
        client_ssl_context=client_ctx,
        reuse_port=options.server_reuse_port,
    )
