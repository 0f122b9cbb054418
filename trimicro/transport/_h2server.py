"""The server side of an HTTP/2 connection: accept streams, run one handler task each, write for them.

:class:`H2Server` serves accepted connections (``handle_connection`` is what the HTTP transport's
one-port ``h2_handler`` calls) for an application, an :class:`H2App`. Per connection it runs, in one
nursery owned by the connection's task, a reader task (feeding :mod:`._http2`, hypercorn-style), a
writer task (:class:`H2ServerConn`) and one task per request stream, so nothing outlives the
connection: a peer's RST_STREAM cancels that stream's task, a lost connection cancels them all.

The boundary to the application is small and explicit:

- :class:`H2App` is what the server asks of the application: whether it is draining, and
  ``serve_stream``; :class:`H2Server`'s optional ``on_accept``/``on_retire`` hooks let it count a
  stream in flight from the moment it is accepted until it is retired (served or not);
- :class:`H2ServerStream` is what the application gets for one stream: the request ``headers``, the
  peer's address, ``receive`` for request DATA, and ``send_headers`` / ``send_message`` /
  ``send_data`` / ``send_trailers`` / ``flush`` for the response.

The gRPC mapping (paths, metadata, status, message framing) is the application's business and
lives in :mod:`trimicro.server._grpc`; this module knows HTTP/2 only. The machinery both ends share
(flow-controlled inboxes, window waits, serialised writes) is :mod:`._h2conn`; the client side is
:mod:`.grpc`.

Connection limits (all per connection): at most ``MAX_STREAMS`` open streams (``_http2`` refuses
more) and at most ``MAX_STREAMS`` handler tasks; a stream accepted while every slot is busy waits
for one, and one reset while waiting never starts ("rapid reset", CVE-2023-44487). While the
application drains, new streams are refused (REFUSED_STREAM, safe to retry elsewhere) and new
connections get GOAWAY at once; :meth:`H2Server.goaway` tells the open ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

import attrs
import trio

from ..errors import TransportError
from . import _http2 as h2p
from ._h2conn import FLUSH_AT, MAX_STREAMS, H2Conn, StreamState
from ._h2policy import H2Policy, read_loop
from ._sync import Notifier, Signal, wait_any

__all__ = ["H2App", "H2Server", "H2ServerConn", "H2ServerStream", "peer_address"]

#: After a drained connection's last reply, how long we wait for the client to close first.
_GOAWAY_LINGER: Final = 1.0
#: How long a closing connection reads what its peer still sends (see _linger).
_CLOSE_LINGER: Final = 0.25
_CLOSE_LINGER_BYTES: Final = 1 << 20


class H2App(Protocol):
    """What :class:`H2Server` needs from the application it serves (the gRPC server, on the Router)."""

    @property
    def draining(self) -> bool:
        """True once no new stream may start: they are refused, new connections get GOAWAY."""
        ...

    async def serve_stream(self, stream: H2ServerStream) -> None:
        """Answer one request stream. Runs in the connection's nursery, inside a cancel scope that a
        peer's RST_STREAM or a lost connection cancels. ``stream``'s methods raise
        :class:`~trimicro.errors.TransportError` once the stream or connection is gone: catch it,
        since anything escaping ends the whole connection."""


class H2ServerStream:
    """One request stream, as the application sees it (see :class:`H2App`).

    Sending queues: nothing is written until the connection's writer task wakes, so messages of one
    stream coalesce into one DATA frame and replies of concurrent streams into one ``send_all``;
    except one message sent in answer to one received, which is written at once when nobody is
    writing (:meth:`send_message`).
    """

    __slots__ = ("_conn", "_may_write", "_st", "finished", "headers", "remote")

    def __init__(self, conn: H2ServerConn, st: StreamState) -> None:
        self._conn = conn
        self._st = st
        #: the request headers, pseudo-headers (``:method``, ``:path``, ...) included, in order
        self.headers: list[tuple[str, str]] = st.headers or []
        #: peer ``host:port`` ("" if unknown)
        self.remote = conn.remote
        #: the application began its final answer: if the peer is still sending when the handler
        #: ends, it is told to stop with NO_ERROR rather than CANCEL (set it before answering)
        self.finished = False
        #: one message may be written by the handler itself per message received (ping-pong; see
        #: :meth:`send_message`)
        self._may_write = False

    async def receive(self) -> bytes | None:
        """The next request DATA (granted back to the peer's window now); ``None`` at END_STREAM.
        Raises :class:`~._h2conn.StreamReset` or :class:`TransportError` if the stream is gone."""
        self._may_write = True
        return await self._conn.receive_chunk(self._st)

    def send_headers(self, headers: list[tuple[str, str]]) -> None:
        """Queue the response HEADERS (``:status`` first); they go out with the next write."""
        self._conn.send_headers(self._st, headers)

    def send_trailers(self, trailers: list[tuple[str, str]]) -> None:
        """Queue HEADERS with END_STREAM: the trailers after the DATA handed over so far (call
        :meth:`send_data` first for messages still queued), or a headers-only response."""
        self._conn.send_headers(self._st, trailers, end_stream=True)

    async def send_message(self, data: bytes) -> None:
        """Queue one message for the writer. Waits only for the peer's window once a frame's worth
        is queued on this stream, and for the writer past ``FLUSH_AT`` bytes on the connection."""
        conn, st = self._conn, self._st
        if self._may_write:
            # Answering what it received: write it now if nobody is writing, sparing the writer
            # task's wakeup per message (bidi ping-pong). A burst of sends (server streaming)
            # writes only its first this way; the rest coalesce in the writer as before.
            self._may_write = False
            await trio.lowlevel.checkpoint_if_cancelled()  # before anything is queued
            if conn.write_direct(st, data):
                if conn.closed is not None:
                    raise conn.closed
                return
        if conn.queue_message(st, data):
            await conn.push(st)
        await conn.flush()

    async def send_data(self, data: bytes, *, end_stream: bool = False, flush: bool = True) -> None:
        """Hand the queued messages and then ``data`` to HTTP/2 now, waiting for WINDOW_UPDATE as
        needed (so trailers queued next follow them); ``end_stream`` ends the response with it (no
        trailers); ``flush=False`` leaves the writing to a later :meth:`flush`."""
        await self._conn.send_data(self._st, data, end_stream=end_stream, flush=flush)

    async def flush(self, *, last: bool = False) -> None:
        """Have the writer write what is queued; waits for it only past ``FLUSH_AT`` bytes.
        ``last``: the handler returns right after (its answer is complete), so below
        ``FLUSH_AT`` the write is left to its leaving (:meth:`H2ServerConn.write_now`)."""
        await self._conn.flush(wake=not last)


class H2ServerConn(H2Conn):
    """One accepted HTTP/2 connection: a reader task, a writer task, plus one task per stream.

    Handlers mostly do not write to the socket themselves (the exceptions, where there is nothing
    to coalesce: :meth:`write_now` and :meth:`write_direct`): they queue (h2's buffer, and per-stream message
    queues that coalesce into one DATA frame) and wake the writer, which writes whatever piled up
    since its last write in one ``send_all``. So a streaming handler's burst of small messages, or
    the replies of many concurrent unary calls, cost one DATA frame / one syscall instead of one
    each. A handler waits for the writer only when more than ``FLUSH_AT`` bytes are queued, and for
    WINDOW_UPDATE when its stream's queue exceeds a frame and the peer's window is shut: memory stays
    bounded and a slow client still pushes back.
    """

    def __init__(self, server: H2Server, sock: trio.abc.Stream, nursery: trio.Nursery, remote: str) -> None:
        super().__init__(sock, client_side=False, max_header_list_size=server.max_header_size)
        self.h2.guard.clock = trio.current_time
        self.h2.guard.min_ping_interval = server.policy.min_ping_interval
        self.server = server
        self.nursery = nursery
        self.remote = remote
        #: streams with messages queued (StreamState.out) that the writer has not handed to h2
        self.dirty: dict[StreamState, None] = {}
        self._wake = Signal()
        self._written = Notifier()
        self._sending = False
        #: handler tasks started and not yet finished (bounded by MAX_STREAMS)
        self.handlers = 0
        #: streams waiting for a handler slot, oldest first (see on_event)
        self.unstarted: dict[StreamState, None] = {}

    def wake(self) -> None:
        """Have the writer write what h2 has queued (e.g. a GOAWAY)."""
        self._wake.set()

    def send_goaway(self) -> None:
        """Queue GOAWAY (NO_ERROR): no new stream here. The writer writes it, and closes the
        connection once no handler is left."""
        self.h2.close_connection(h2p.ErrorCode.NO_ERROR)
        self.wake()

    async def wait(self, ev: Signal, other: Signal | None = None) -> None:
        # The reader task fires every notifier, including when the connection dies.
        await (ev.wait() if other is None else wait_any(ev, other))

    def queue_message(self, st: StreamState, frame: bytes) -> bool:
        """Queue one message on ``st`` for the writer; True once a frame's worth is queued
        (then the sender should :meth:`push` it itself, waiting for the window if need be)."""
        self._check(st)
        self.queue_data(st, frame)
        self.dirty[st] = None
        self._wake.set()
        return st.out_len >= self.h2.max_outbound_frame_size

    async def flush_control(self) -> None:
        # The reader never waits for the writer: a client that is itself blocked writing to us
        # (its request bodies) would then never read our replies, and neither side could move.
        # What the reader queues (acks, WINDOW_UPDATE, RST) is bounded by _http2's control cap.
        # No yield here: the reader's next receive_some is its schedule point.
        if self.h2.pending:
            self._wake.set()
        await trio.lowlevel.checkpoint_if_cancelled()

    async def flush(self, *, wake: bool = True) -> None:
        """Have the writer task write what is queued; wait for it only past ``FLUSH_AT`` bytes.
        ``wake=False``: below ``FLUSH_AT`` the caller writes it itself soon (write_now)."""
        if self.closed is not None:
            raise self.closed
        if self.h2.pending < FLUSH_AT:
            if wake and (self.h2.pending or self.dirty):  # else the writer's turn is wasted
                self._wake.set()
            await trio.lowlevel.checkpoint_if_cancelled()
            return
        self._wake.set()
        while self.h2.pending >= FLUSH_AT and self.closed is None:
            await self._written.event.wait()
        if self.closed is not None:
            raise self.closed

    def _take(self) -> bytes:
        """Hand the dirty streams' queued DATA to h2 (as windows allow) and take h2's output (after
        what :meth:`write_direct` left over)."""
        if self.dirty:
            self.h2.guard.forgive_pings()  # replies' DATA: the peer may probe with PINGs
            for st in list(self.dirty):
                if self.move_out(st):
                    del self.dirty[st]
        data = self.h2.data_to_send()
        if self._unsent:  # (what write_direct could not write at once goes first)
            data, self._unsent = self._unsent + data, b""
        return data

    def write_direct(self, st: StreamState, message: bytes) -> bool:
        """Queue ``message`` on ``st`` and write everything queued now, from the calling task, with
        one non-blocking ``os.write``: False (nothing done) when that is not possible (TLS, a write
        in progress, a message of a frame or more). What the socket does not take, or what the
        peer's window holds back, is left to the writer task (woken), ahead of anything later.
        Nothing here awaits, so a cancelled caller cannot cut a frame in half."""
        if (
            self._fd < 0
            or self._sending
            or self.closed is not None
            or len(message) >= self.h2.max_outbound_frame_size
        ):
            return False
        self._check(st)
        self.queue_data(st, message)
        self.dirty[st] = None
        data = self._take()
        if data:
            n = self.write_nowait(data)
            if n is None:  # lost: the caller raises conn.closed
                return True
            if n < len(data):
                self._unsent = data[n:]
                self._wake.set()
            else:
                self._written.fire()
        if self.dirty:  # held back by a shut window: the writer waits for WINDOW_UPDATE
            self._wake.set()
        return True

    async def write_now(self) -> None:
        """Write what is queued from the calling task if nobody is writing, else leave it to the
        writer task (woken by whoever queued it).

        A handler calls this after its stream's task scope is left (``_run_stream``), so only the
        connection's own cancellation can cut the write off — and then the connection is going
        anyway. Writing there saves the writer task's wakeup on every call, the one hop mucp does
        not have. Only when this is the connection's last running handler, though: concurrent
        replies are left to the writer, which coalesces them into one ``send_all`` (one syscall
        for many calls, which matters more than the hop)."""
        if self.closed is not None:
            return
        if self._sending or self.handlers:
            # Someone is writing (the writer waits for that write, then writes ours), or other
            # handlers are running: their replies are likely to follow in this same scheduler
            # pass, and the writer, waking after them, sends them all with ours in one write.
            if self.h2.pending or self.dirty:
                self._wake.set()
            await trio.lowlevel.checkpoint_if_cancelled()
            return
        # Cancelled before a byte is taken: the writer task still has it all.
        await trio.lowlevel.checkpoint_if_cancelled()
        data = self._take()
        if not data:
            return
        if self._fd >= 0:
            # One non-blocking write first: no yield after it when the socket takes it all (as in
            # H2Conn.flush); the rest, if any, goes through send_all below.
            n = self.write_nowait(data)
            if n is None:  # lost
                return
            if n == len(data):
                self._written.fire()
                return
            data = data[n:]
        self._sending = True
        try:
            await self.sock.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._sending = False
            self.lose(TransportError(f"HTTP/2 connection lost: {exc}"))
            return
        # (Cancelled inside send_all leaves _sending set: part of a frame may be on the wire, so
        # nothing else may be written after it; the connection is being torn down anyway.)
        self._sending = False
        self._written.fire()

    async def run_writer(self) -> None:
        """Write whatever is queued, in one ``send_all`` per wakeup, until the connection ends."""
        try:
            while self.closed is None:
                self._wake = wake = Signal()
                if self._sending:
                    # A handler is writing (write_now): wait for it, then write what piled up.
                    written = self._written.event
                    if self._sending:
                        await written.wait()
                    continue
                window = self._window.event
                data = self._take()
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
                    data = self._unsent + self.h2.data_to_send()
                    self._unsent = b""
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
            self.nursery.start_soon(self._run_stream, st)
        if self.h2.closed and not self.handlers:
            self._wake.set()  # drained after our GOAWAY: the writer closes the connection

    async def _run_stream(self, st: StreamState) -> None:
        """One stream's task: the application's ``serve_stream`` in a scope the peer's RST_STREAM
        cancels; afterwards stop a peer still sending, and free the stream's slot."""
        stream = H2ServerStream(self, st)
        try:
            with trio.CancelScope() as st.scope:
                if st.reset is not None:
                    return
                await self.server.app.serve_stream(stream)
        finally:
            if self.closed is None and self.stream_open_remote(st) and st.reset is None:
                # Finished while the client still sends: stop it with NO_ERROR, as gRPC servers do;
                # unfinished (cancelled, e.g. shutdown): CANCEL, so the client sees an error.
                self.reset_stream(st, 0 if stream.finished else 8)
                await self.flush_bounded()
            self.release(st)
            self.handler_done()
            self.server._retire()
        # The reply is queued: write it from here if the writer is idle (see write_now).
        await self.write_now()

    def on_event(self, event: h2p.Event) -> None:
        if isinstance(event, h2p.RequestReceived):
            st = StreamState(event.stream_id, event.headers)
            self.streams[st.id] = st
            if event.stream_ended:
                st.ended = True
            if self.server.app.draining:
                self.reset_stream(st, 7)  # REFUSED_STREAM: safe for the client to retry elsewhere
                self.release(st)
                return
            # Handler tasks are counted, not HTTP/2 streams: a stream's slot frees when its last
            # frame is queued, a little before its task ends, so a client that keeps to
            # MAX_CONCURRENT_STREAMS may open the next one early: it waits for a slot (as Go's
            # unstartedHandlers do). The queue is bounded by that same limit, which _http2
            # enforces on open streams (REFUSED_STREAM beyond it). A stream reset while it waits
            # leaves the queue unstarted, so a peer that opens and at once resets streams ("rapid
            # reset", CVE-2023-44487) costs no task.
            self.server._admit()
            if self.handlers >= MAX_STREAMS:
                self.unstarted[st] = None
                return
            self.handlers += 1
            self.nursery.start_soon(self._run_stream, st)
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
            self.server._retire()

    def lose(self, error: TransportError) -> None:
        # Cancel the handlers before waking them, so they see trio.Cancelled rather than an error.
        self.nursery.cancel_scope.cancel()
        waiting, self.unstarted = list(self.unstarted), {}
        for st in waiting:  # admitted, never started: they end with the connection
            self.release(st)
            self.server._retire()
        super().lose(error)
        self.dirty.clear()
        self._wake.set()
        self._written.fire()

    async def run_reader(self) -> None:
        await read_loop(self, self.server.policy)


def _nothing() -> None:
    pass


@attrs.define(eq=False)
class H2Server:
    """Serves HTTP/2 connections for one :class:`H2App`; counts what is open (leak tests, drain)."""

    app: H2App
    #: largest request header block accepted (SETTINGS_MAX_HEADER_LIST_SIZE)
    max_header_size: int = 64 * 1024
    #: called when a stream is accepted: it counts as in flight from then on (the gRPC server's
    #: drain waits for it), also while it waits for a handler slot
    on_accept: Callable[[], None] = _nothing
    #: called when an accepted stream is done, whether its handler ran or not (reset while
    #: waiting for a slot, connection lost)
    on_retire: Callable[[], None] = _nothing
    #: header-block, idle and keepalive time limits (see :mod:`._h2policy`)
    policy: H2Policy = attrs.field(factory=H2Policy)
    #: live counters, for leak tests and Debug.Stats-style reporting
    open_connections: int = attrs.field(default=0, init=False)
    open_streams: int = attrs.field(default=0, init=False)
    _quiet: trio.Event = attrs.field(factory=trio.Event, init=False)
    _conns: set[H2ServerConn] = attrs.field(factory=set, init=False)

    def goaway(self) -> None:
        """Drain: tell every client (GOAWAY, NO_ERROR) that no new stream will be served here, so
        its next calls go to a new connection (elsewhere, once this server stops accepting) instead
        of being refused one by one. Streams in flight finish; an idle connection closes now."""
        for conn in list(self._conns):
            conn.send_goaway()

    async def wait_idle(self) -> None:
        """Return once no connection or stream is open (leak tests; graceful shutdown)."""
        while self.open_connections or self.open_streams:
            self._quiet = trio.Event()
            await self._quiet.wait()

    def _check_quiet(self) -> None:
        if not (self.open_connections or self.open_streams):
            self._quiet.set()

    def _admit(self) -> None:
        """A stream was accepted (it counts as in flight from now, even while it waits for a
        handler slot, so a drain waits for it too)."""
        self.open_streams += 1
        self.on_accept()

    def _retire(self) -> None:
        self.open_streams -= 1
        self._check_quiet()
        self.on_retire()

    async def handle_connection(self, stream: trio.abc.Stream, initial_bytes: bytes = b"") -> None:
        """Serve one connection whose first bytes (the HTTP/2 preface, maybe more) were already read."""
        self.open_connections += 1
        remote = peer_address(stream)
        conn: H2ServerConn | None = None
        try:
            async with trio.open_nursery() as nursery:
                conn = H2ServerConn(self, stream, nursery, remote)
                self._conns.add(conn)
                conn.start()
                if self.app.draining:  # accepted while draining: no new streams here either
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
                    await _linger(stream)
                    await stream.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
            self.open_connections -= 1
            self._check_quiet()


async def _linger(stream: trio.abc.Stream) -> None:
    """Half-close a plain TCP connection and read (and drop) what the peer still sends, for a
    bounded moment, before it is closed: closing a socket with unread input makes the kernel send a
    TCP reset, which can destroy the peer's copy of our last frames (a GOAWAY, final replies)
    before it reads them (h2spec http2/7/1 met one). A peer that already closed costs nothing; one
    that keeps sending past a bound (a flood) gets the reset after all."""
    if not isinstance(stream, trio.SocketStream):
        return  # TLS: aclose() sends close_notify; nothing to half-close separately
    left = _CLOSE_LINGER_BYTES
    with trio.move_on_after(_CLOSE_LINGER):
        await stream.send_eof()
        while left > 0:
            data = await stream.receive_some(65536)
            if not data:
                return
            left -= len(data)


def peer_address(stream: trio.abc.Stream) -> str:
    """The peer's ``host:port`` under ``stream`` (through TLS layers), or "" if it has none."""
    while not isinstance(stream, trio.SocketStream):
        inner = getattr(stream, "transport_stream", None)
        if not isinstance(inner, trio.abc.Stream):
            return ""
        stream = inner
    try:
        host, port = stream.socket.getpeername()[:2]
    except Exception:
        return ""
    return f"{host}:{port}"
