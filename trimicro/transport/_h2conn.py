"""One HTTP/2 connection driven by trio: the machinery both gRPC ends share.

The server side (reader and writer tasks, handler slots, GOAWAY) is :mod:`._h2server`, the client
side :mod:`.grpc`; the wakeup primitives both wait on are :mod:`._sync`.

``_http2.H2Protocol`` is the sans-IO state machine (called ``h2`` here, as it has h2's shape); this
adapter adds exactly three things:

- **Serialised writes.** Any task may change the protocol state (``send_headers``, ``send_data``,
  ...) — those calls are synchronous — and then ``await flush()``, which takes one lock and writes
  whatever is queued, so concurrent writers coalesce into one ``send_all``. A write that
  cancellation cuts off half-way loses the connection (part of a frame may be on the wire).
- **Per-stream inboxes bounded by flow control.** DATA is queued per stream and *acknowledged only when
  the stream's consumer takes it* (``receive_chunk``), so a slow handler or a client that never reads
  stops the peer at its stream window instead of growing memory. The connection window is opened wide
  once, so one stalled stream never starves the others.
- **Waiting for windows.** ``send_data`` writes at most what the peer's windows allow and otherwise
  waits for WINDOW_UPDATE, never buffering without bound.

Who reads the socket differs: the server runs one reader task per connection (``run_reader`` in
:mod:`._h2server`); the client has no background task at all. There, one waiting caller holds the
*read baton* and reads for everyone, while every other waiter sleeps on its own condition **or** the
baton coming free (:meth:`H2Conn.wait`). A waiter whose data arrives therefore wakes at once, not when the reader
happens to let go: the reader may be a stream that waits for a message that never comes. (Queuing
the others on a read lock, as httpcore does for request/response, deadlocked idle bidi streams.)
"""

from __future__ import annotations

import collections
import os
from typing import Any, Final

import trio

from ..errors import TransportError
from . import _http2 as h2p
from . import _tls
from ._sockio import receive_tcp
from ._sync import Notifier, Signal, wait_any

__all__ = [
    "FLUSH_AT",
    "MAX_STREAMS",
    "H2Conn",
    "StreamReset",
    "StreamState",
]

#: Receive window per stream: the most a stalled stream can hold in memory.
STREAM_WINDOW: Final = 1024 * 1024
#: Connection receive window, opened once at start (stream windows do the bounding).
CONNECTION_WINDOW: Final = 2**31 - 1
#: Concurrent streams a server allows per connection.
MAX_STREAMS: Final = 256
#: Largest frame we accept: a 64 KiB message then crosses as one DATA frame, not five.
MAX_FRAME: Final = 1024 * 1024
_READ_SIZE: Final = 256 * 1024
#: A sender waits for the writer once h2's outgoing buffer holds this much (server side).
FLUSH_AT: Final = 256 * 1024


class StreamReset(TransportError):
    """The peer reset the stream (RST_STREAM); ``code`` is the HTTP/2 error code."""

    def __init__(self, stream_id: int, code: int) -> None:
        super().__init__(f"HTTP/2 stream {stream_id} reset by peer (error code {code})")
        self.code = code


def _close_now(stream: trio.abc.Stream) -> None:
    """Close the socket under ``stream`` without awaiting: a task blocked reading it wakes with
    ClosedResourceError (trio notifies waiters on close). TLS layers are skipped, not shut down."""
    while not isinstance(stream, trio.SocketStream):
        inner = getattr(stream, "transport_stream", None)
        if inner is None:
            return
        stream = inner
    stream.socket.close()


class StreamState:
    """What arrived on one stream, and how far its consumer got."""

    __slots__ = (
        "changed",
        "chunks",
        "ended",
        "headers",
        "id",
        "lost",
        "out",
        "out_len",
        "reset",
        "scope",
        "trailers",
    )

    def __init__(self, stream_id: int, headers: list[tuple[str, str]] | None = None) -> None:
        self.id = stream_id
        self.headers = headers
        self.trailers: list[tuple[str, str]] | None = None
        self.chunks: collections.deque[tuple[bytes, int]] = collections.deque()
        self.ended = False
        self.reset: int | None = None
        self.lost: TransportError | None = None
        self.changed = Notifier()
        #: the server cancels this scope (the handler) when the peer resets the stream
        self.scope: trio.CancelScope | None = None
        #: DATA queued for this stream but not yet handed to h2 (see :meth:`H2Conn.queue_data`)
        self.out: list[bytes] = []
        self.out_len = 0

    @property
    def buffered(self) -> int:
        return sum(n for _, n in self.chunks)


class H2Conn:
    """An h2 connection over a trio stream; subclasses decide who reads (see the module docstring)."""

    def __init__(self, sock: trio.abc.Stream, *, client_side: bool, max_header_list_size: int) -> None:
        self.sock = sock
        self.h2 = h2p.H2Protocol(
            client_side=client_side,
            initial_window_size=STREAM_WINDOW,
            max_frame_size=MAX_FRAME,
            max_header_list_size=max_header_list_size,
            max_concurrent_streams=None if client_side else MAX_STREAMS,
        )
        self.streams: dict[int, StreamState] = {}
        self.closed: TransportError | None = None
        self.goaway = False
        self._write_lock = trio.Lock()
        #: bytes a direct write left unwritten (``grpc._ClientConn.write_direct``,
        #: ``_h2server.H2ServerConn.write_direct``): the next write sends them first
        self._unsent = b""
        #: the descriptor direct writes go to (:meth:`write_nowait`): plain TCP on POSIX, else -1
        #: (TLS goes through its stream)
        self._fd = sock.socket.fileno() if os.name == "posix" and type(sock) is trio.SocketStream else -1
        #: a task is reading the socket (client side: the baton holder, see wait())
        self._reading = False
        self._baton = Notifier()
        self._window = Notifier()
        self._slots = Notifier()
        #: who is at the other end, for errors (a client names the address it dialled)
        self.peer = "HTTP/2 peer"

    # -- lifecycle --
    def start(self) -> None:
        """Queue our preface/SETTINGS and open the connection window (written by the next flush)."""
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)

    def lose(self, error: TransportError) -> None:
        """The connection is gone: every stream learns it and every waiter wakes."""
        if self.closed is None:
            self.closed = error
        for st in self.streams.values():
            if st.lost is None:
                st.lost = error
            st.changed.fire()
        self._window.fire()
        self._slots.fire()
        self._baton.fire()

    async def aclose(self) -> None:
        """Send GOAWAY (best effort, bounded) and close the socket."""
        with trio.CancelScope(shield=True):
            if self.closed is None:
                self.h2.close_connection()
                await self.flush_bounded()
            self.lose(TransportError("HTTP/2 connection closed"))
            # TLS sends close_notify, which can block on a peer that stops reading; a cut-off
            # SSLStream.aclose() falls back to closing the socket forcefully.
            with trio.move_on_after(1):
                try:
                    await self.sock.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass

    # -- writing --
    def write_nowait(self, data: bytes) -> int | None:
        """One non-blocking ``os.write`` of ``data`` on :attr:`_fd` (the caller checked it is set):
        the bytes written (0 when the socket buffer is full), or None when the connection broke,
        which is then lost here as when ``send_all`` fails. Never awaits, so a cancelled caller
        cannot cut a frame in half (the point of the direct writes that use it)."""
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            self.lose(TransportError(f"HTTP/2 connection lost: {exc}"))
            return None

    async def flush_bounded(self) -> None:
        """Write what is queued even while being cancelled, for at most a second: frames that must
        reach the peer on the way out (RST_STREAM, GOAWAY), best effort."""
        if self.closed is not None:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            try:
                await self.flush()
            except TransportError:
                pass

    async def flush(self) -> None:
        if not self.h2.pending and not self._unsent:
            # Nothing queued (e.g. an acknowledgement that did not reach the WINDOW_UPDATE
            # threshold): no lock to take. Bytes another task is writing are its to deliver.
            # Not a schedule point: every caller's next wait is one, and a yield here cost each
            # call a trip through the scheduler.
            await trio.lowlevel.checkpoint_if_cancelled()
            return
        lock = self._write_lock
        if lock.locked():
            await lock.acquire()
        else:
            # trio.Lock.acquire yields even when the lock is free; send_all below yields anyway.
            await trio.lowlevel.checkpoint_if_cancelled()
            lock.acquire_nowait()
        try:
            # Cancellation is taken here, before the bytes leave h2's buffer (plain TCP: a small
            # write then cannot be cut off)...
            await trio.lowlevel.checkpoint_if_cancelled()
            data = self.h2.data_to_send()
            if self._unsent:
                data, self._unsent = self._unsent + data, b""
            if not data:
                return
            if self._fd >= 0:
                # Plain TCP: one non-blocking write first, and no yield when the socket takes it
                # all (trio's send_all yields after every successful send: one more trip through
                # the scheduler per call). The rest, if any, goes through send_all below.
                n = self.write_nowait(data)
                if n is None:
                    raise self.closed or TransportError("HTTP/2 connection lost")
                if n == len(data):
                    return
                data = data[n:]
            try:
                await self.sock.send_all(data)
            except trio.Cancelled:
                # ...except inside send_all (waiting for a peer that reads slowly, or TLS taking
                # its lock): then part of a frame may be on the wire, and the connection is out of
                # step for good. Close the socket now, so a caller reading it wakes up and the
                # peer's handlers learn it, rather than waiting for the last user to let go.
                self.lose(TransportError("HTTP/2 connection lost: a write was cut off by cancellation"))
                _close_now(self.sock)
                raise
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                err = TransportError(f"HTTP/2 connection lost: {exc}")
                self.lose(err)
                raise err from None
        finally:
            lock.release()

    def _check(self, st: StreamState) -> None:
        if st.reset is not None:
            raise StreamReset(st.id, st.reset)
        if st.lost is not None:
            raise st.lost
        if self.closed is not None:
            raise self.closed

    async def send_data(
        self, st: StreamState, data: bytes, *, end_stream: bool = False, flush: bool = True
    ) -> None:
        """Write ``data`` (after anything queued) as the peer's windows allow, waiting for WINDOW_UPDATE
        when they are shut."""
        self._check(st)
        if data:
            self.queue_data(st, data)
        await self.push(st)
        if end_stream:
            self._call(self.h2.end_stream, st)
        if flush:
            await self.flush()

    def queue_data(self, st: StreamState, data: bytes) -> None:
        """Queue DATA for ``st`` without touching h2 yet: consecutive messages then go out as one
        DATA frame (:meth:`move_out`) instead of one frame each."""
        st.out.append(data)
        st.out_len += len(data)

    def move_out(self, st: StreamState) -> bool:
        """Hand ``st``'s queued DATA to h2 as far as the peer's windows allow; True once none is left
        (also when the stream can no longer send: :meth:`_check` tells the sender why)."""
        out = st.out
        if not out:
            return True
        if st.reset is not None or st.lost is not None or self.closed is not None:
            out.clear()
            st.out_len = 0
            return True
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        h2conn = self.h2
        sent, total = 0, len(data)
        try:
            window = h2conn.local_flow_control_window(st.id)
            frame = h2conn.max_outbound_frame_size
            while sent < total and window > 0:
                n = min(window, frame, total - sent)
                h2conn.send_data(st.id, data if n == total else data[sent : sent + n])
                sent += n
                window -= n
        except h2p.H2Error:
            # The stream is closed. If the peer ended it and then said stop (RST_STREAM NO_ERROR
            # after a complete response, RFC 9113 8.1), what we still had to send is moot, not an
            # error: the caller reads the peer's answer next.
            if st.reset is None and st.lost is None and not self._answered(st):
                st.reset = 0
            st.out_len = 0
            return True
        if sent < total:
            out.append(data[sent:])
        st.out_len = total - sent
        return sent == total

    async def push(self, st: StreamState) -> None:
        """Hand all of ``st``'s queued DATA to h2, writing and waiting for WINDOW_UPDATE as needed."""
        while True:
            ev = self._window.event
            changed = st.changed.event
            if self.move_out(st):
                break
            self._check(st)
            if self._answered(st):
                # The server answered in full without reading all of it (and may never open its
                # window again): the rest is moot, the caller reads the answer next.
                st.out.clear()
                st.out_len = 0
                break
            await self.flush()
            await self.wait(ev, changed)
        self._check(st)

    def _answered(self, st: StreamState) -> bool:
        """Client side: the server sent its whole response, so what we still send is moot."""
        return st.ended and self.h2.client_side

    def _call(self, fn: Any, st: StreamState, *args: Any, **kw: Any) -> None:
        try:
            fn(st.id, *args, **kw)
        except h2p.StreamClosedError:
            if self._answered(st) and st.reset is None and st.lost is None:
                return  # the peer already answered in full and stopped us: see move_out
            raise StreamReset(st.id, st.reset or 0) from None
        except h2p.H2Error as exc:
            if self.closed is not None:
                raise self.closed from None
            raise StreamReset(st.id, st.reset or 0) from exc

    def send_headers(
        self, st: StreamState, headers: list[tuple[str, str]], *, end_stream: bool = False
    ) -> None:
        """Queue HEADERS (call :meth:`flush` after)."""
        self._check(st)
        self._call(self.h2.send_header_block, st, h2p.encode_str_headers(headers), end_stream=end_stream)

    def reset_stream(self, st: StreamState, code: int = 8) -> None:
        """Queue RST_STREAM (default CANCEL) unless the stream is already closed."""
        if self.closed is not None:
            return
        try:
            self.h2.reset_stream(st.id, code)
        except h2p.H2Error:
            pass
        self._slots.fire()

    def stream_open_remote(self, st: StreamState) -> bool:
        """Whether the peer may still send on ``st`` (we would need to reset to stop it)."""
        return not st.ended and st.reset is None and st.lost is None

    # -- reading --
    async def receive_chunk(self, st: StreamState) -> bytes | None:
        """The next DATA of ``st`` (acknowledged to the peer now), ``None`` at END_STREAM.

        Safe to cancel: the chunk leaves the stream only once the flush of its acknowledgement is
        over. A receive cancelled in that flush leaves it queued, marked acknowledged (its count 0),
        so the next receive returns it without acknowledging it twice, and :meth:`release` does not
        hand its window back again. The acknowledgement itself stays queued for the next flush."""
        while True:
            if st.chunks:
                entry = st.chunks[0]
                data, n = entry
                if n and self.closed is None:
                    st.chunks[0] = entry = (data, 0)
                    try:
                        self.h2.acknowledge_received_data(n, st.id)
                    except h2p.H2Error:
                        pass
                    await self.flush()
                if st.chunks and st.chunks[0] is entry:  # (release() in the meantime emptied it)
                    st.chunks.popleft()
                return data
            if st.ended:  # complete, even if a RST_STREAM followed
                return None
            if st.reset is not None:
                raise StreamReset(st.id, st.reset)
            if st.lost is not None:
                raise st.lost
            await self.wait(st.changed.event)

    def release(self, st: StreamState) -> bool:
        """Forget ``st``: hand back the connection window its unread DATA still holds, and cancel it
        if it is still open either way (a peer that ended its side without a RST_STREAM must not
        keep the stream counted against MAX_CONCURRENT_STREAMS). True if that queued a RST_STREAM
        (the caller should see it written)."""
        self.streams.pop(st.id, None)
        reset = False
        if st.id in self.h2.streams and self.closed is None:
            try:
                self.h2.reset_stream(st.id, h2p.ErrorCode.CANCEL)
                reset = True
            except h2p.H2Error:
                pass
        left = st.buffered
        st.chunks.clear()
        st.out.clear()
        st.out_len = 0
        if left and self.closed is None:
            try:
                self.h2.acknowledge_received_data(left, st.id)
            except h2p.H2Error:
                pass
        self._slots.fire()
        return reset

    async def wait(self, ev: Signal, other: Signal | None = None) -> None:
        """Wait until ``ev`` (or ``other``) fires, reading the socket for everyone if nobody else is
        (client side).

        The baton holder reads until *its own* signal fires, then hands the baton on; every read
        fires the signals of the streams it touched, so the other waiters never depend on it."""
        while not (ev.flag or (other is not None and other.flag)):
            if self._reading:
                if other is None:
                    await wait_any(ev, self._baton.event)
                else:
                    await wait_any(ev, other, self._baton.event)
                continue
            self._reading = True
            try:
                while not (ev.flag or (other is not None and other.flag)):
                    await self.read_once()
            finally:
                self._reading = False
                self._baton.fire()

    async def receive_some(self, max_bytes: int = _READ_SIZE) -> bytes | bytearray:
        """One read of the socket: :func:`._sockio.receive_tcp` on plain TCP, else the stream's own."""
        if self._fd >= 0:
            return await receive_tcp(self.sock, self._fd, max_bytes)  # type: ignore[arg-type]
        return await self.sock.receive_some(max_bytes)

    async def read_once(self) -> bool:
        """Read and dispatch one batch of bytes; False at EOF or on a connection error."""
        if self.closed is not None:
            raise self.closed
        try:
            data = await self.receive_some()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.lose(
                _tls.describe_tls_error(self.peer, exc)
                or TransportError(f"HTTP/2 connection lost: {exc}")
            )
            return False
        if not data:
            self.lose(TransportError("HTTP/2 connection closed by peer"))
            return False
        return await self.feed(data)

    async def feed(self, data: bytes | bytearray) -> bool:
        try:
            events = self.h2.receive_data(data)
        except h2p.H2ProtocolError as exc:
            # h2p queued a GOAWAY: hand it to whoever writes (never wait: the peer may not be
            # reading), then the connection is over.
            try:
                await self.flush_control()
            except TransportError:
                pass
            self.lose(TransportError(f"HTTP/2 protocol error from peer: {exc}"))
            return False
        for event in events:
            self.dispatch(event)
        await self.flush_control()
        return self.closed is None

    async def flush_control(self) -> None:
        """Write what reading queued (acks, WINDOW_UPDATE, RST_STREAM); the server's reader only
        hands it to its writer (see ``_h2server.H2ServerConn.flush_control``)."""
        await self.flush()

    def dispatch(self, event: h2p.Event) -> None:
        if isinstance(event, h2p.DataReceived):
            st = self.streams.get(event.stream_id)
            if st is not None and st.reset is None:
                st.chunks.append((event.data, event.flow_controlled_length))
                st.changed.fire()
            elif event.flow_controlled_length:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2p.StreamEnded):
            st = self.streams.get(event.stream_id)
            if st is not None:
                st.ended = True
                st.changed.fire()
            self._slots.fire()
        elif isinstance(event, h2p.StreamReset):
            st = self.streams.get(event.stream_id)
            if st is not None and st.ended and not event.error_code and self.h2.client_side:
                # RST_STREAM(NO_ERROR) after a complete response just tells us to stop sending
                # (RFC 9113 8.1): what was received stands, it is not a failure. (A client that
                # does this to a server still cancels its handler: below.)
                st.changed.fire()
            elif st is not None:
                st.reset = event.error_code
                # Cancel first: a handler blocked on this stream then sees trio.Cancelled, not an error.
                self.on_reset(st)
                st.changed.fire()
            self._window.fire()
            self._slots.fire()
        elif isinstance(event, (h2p.WindowUpdated, h2p.RemoteSettingsChanged)):
            self._window.fire()
            self._slots.fire()
        elif isinstance(event, h2p.ConnectionTerminated):
            self.goaway = True
            last = event.last_stream_id
            err = TransportError(f"HTTP/2 GOAWAY from peer (error code {event.error_code})")
            # ``last`` counts only streams *we* started: the peer's own streams go on.
            mine = 1 if self.h2.client_side else 0
            for st in self.streams.values():
                if (st.id & 1) == mine and st.id > last and st.lost is None:
                    st.lost = err
                    st.changed.fire()
            if event.error_code:
                self.lose(err)
            self._slots.fire()
        else:
            self.on_event(event)

    # -- hooks --
    def on_event(self, event: h2p.Event) -> None:
        """Request/response/trailer events: the subclass decides."""

    def on_reset(self, st: StreamState) -> None:
        """The peer reset ``st``."""
