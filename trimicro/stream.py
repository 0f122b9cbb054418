"""RPC streams that behave like trio channels, over any frame socket (mucp).

A stream owns two bounded memory channels: incoming decoded messages and outgoing frames (drained
by a writer task that coalesces whatever is queued into one write). A consumer waiting in
``receive`` reads the socket itself; a reader task fills the incoming channel only while the
consumer stays away from ``receive`` (busy, or sending a burst) for ``READ_GRACE``, so the peer's
frames and its departure are still seen, and hands reading back once the consumer returns. A slow
consumer therefore applies backpressure to the peer instead of growing memory, a burst of sends
costs one syscall, and a ping-pong costs one task step per message. Both tasks live in a nursery
owned by whoever opened the stream (the server's connection task or the client's ``async with``),
so no task outlives its stream.

End of stream follows wire/mucp.md: a frame with ``Micro-Error: EOS`` ends a direction cleanly; any
other ``Micro-Error`` ends it with that error; a connection that ends before EOS is an error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, Protocol, TypeVar

import trio

from . import errors
from ._metadata import MICRO_ERROR, MICRO_ERROR_DETAILS
from .codec import Codec
from .errors import MicroError, TransportError
from .transport import Message, Socket

__all__ = ["READ_GRACE", "ClientStream", "MucpStreamCore", "Stream", "StreamCore"]

ReqT = TypeVar("ReqT")
RspT = TypeVar("RspT")
SendT = TypeVar("SendT")
RecvT = TypeVar("RecvT")

EOS = "EOS"
_CLOSE = object()
#: queued after a frame the sender wrote only in part: the writer sends the rest (``Socket.flush``)
_FLUSH = object()
#: ``try_send``'s answers (transport/http.py)
_SENT, _PARTIAL = 1, 2
#: the peer ended its direction cleanly (EOS)
_END = object()
#: how long the consumer may stay out of ``receive`` before the reader task reads for it (seconds):
#: the server's sweeper interval for unary calls (server/_server.py), the same bound on noticing a
#: departed peer while a handler is busy
READ_GRACE = 0.05


class MucpStreamCore(Generic[SendT, RecvT]):
    """Direction-neutral stream machinery shared by both ends."""

    def __init__(
        self,
        sock: Socket,
        codec: Codec,
        recv_type: Any,
        header: dict[str, str],
        *,
        error_id: str,
        buffer: int = 64,
    ) -> None:
        self._sock = sock
        self._codec = codec
        self._recv_type = recv_type
        self._header = header
        self._error_id = error_id
        self._in_send, self._in_recv = trio.open_memory_channel[Any](buffer)
        self._out_send, self._out_recv = trio.open_memory_channel[Any](buffer)
        self._send_closed = False
        self._writer_done = trio.Event()
        #: the socket's ``try_send`` (None: every frame goes through the writer task)
        self._try_send: Callable[[Message], int] | None = getattr(sock, "try_send", None)
        #: the consumer reads the socket itself (:meth:`_read_self`) only if a cancelled receive
        #: there loses nothing (``RECEIVE_CANCEL_SAFE``: mucp's HttpSocket and the gRPC client's
        #: GrpcSocket); any other socket is read by the reader task alone, where only the stream's
        #: own end cancels a receive.
        self._self_read = bool(getattr(sock, "RECEIVE_CANCEL_SAFE", False))
        #: a terminal error read by the consumer, kept until a receive() has raised it (a
        #: cancellation between reading and raising it must not turn it into a clean end)
        self._final: BaseException | None = None
        #: True only while the writer waits on an empty queue with nothing of ours in flight: then a
        #: sender may write its frame itself without overtaking anything (see :meth:`send`)
        self._writer_idle = False
        #: a direct write is allowed once per received message (and for the first send): a sender that
        #: answers what it received (ping-pong) writes itself, while a burst of sends (server
        #: streaming) still goes through the writer, which coalesces it into one write
        self._may_write = True
        #: who reads the socket (see :meth:`reader` and :meth:`_read_self`): consumers in a read of
        #: their own, the reader task, consumers waiting on the channel for the reader task, when
        #: the last consumer left ``receive``, and the reader task while it waits for that (parked
        #: bare rather than on a trio.Event, which would be one more object and parking lot per
        #: stream, made again every time the reader waits)
        self._consumers_reading = 0
        self._reader_reading = False
        self._waiting = 0
        self._left_at = trio.current_time()
        self._reader_parked: trio.lowlevel.Task | None = None
        #: the peer's direction is over: nobody reads the socket for this stream any more
        self._peer_ended = False
        #: set when the peer ended its direction (EOS, error, or connection loss)
        self.peer_done = trio.Event()
        #: set when the connection died (not a clean EOS): the owner cancels work that needs the peer
        self.connection_lost = trio.Event()
        self.sent = 0
        self.received = 0
        #: called (synchronously) when the connection dies, e.g. to cancel the server handler
        self.on_connection_lost: Callable[[], None] | None = None

    def _lost(self) -> None:
        if not self.connection_lost.is_set():
            self.connection_lost.set()
            if self.on_connection_lost is not None:
                self.on_connection_lost()

    # -- reading: the consumer reads the socket itself, the reader task only while it is away --
    def _item(self, msg: Message) -> tuple[Any, bool]:
        """A received frame as what ``receive`` hands out: (message or error or ``_END``, whether
        it ends the peer's direction)."""
        err = msg.header.get(MICRO_ERROR)
        if err:
            if err == EOS:
                return _END, True
            details = msg.header.get(MICRO_ERROR_DETAILS)
            return errors.parse(err, default_id=self._error_id, details=details), True
        try:
            value = self._codec.decode(msg.body, self._recv_type)
        except errors.CodecError as exc:
            return errors.bad_request(self._error_id, str(exc)), True
        self.received += 1
        return value, False

    async def _read_frame(self) -> tuple[Any, bool]:
        """The next frame from the socket as ``_item`` makes it; a connection that ended or broke
        is reported (``_lost``) and becomes a terminal TransportError."""
        try:
            msg = await self._sock.receive()
        except trio.EndOfChannel:
            self._lost()
            return TransportError("stream ended before EOS (unexpected EOF)"), True
        except (TransportError, errors.ProtocolError) as exc:
            self._lost()
            return TransportError(f"stream connection lost: {exc}"), True
        return self._item(msg)

    def _peer_ends(self) -> None:
        self._peer_ended = True
        self.peer_done.set()
        self._in_send.close()
        self._wake_reader()  # if it waits for the consumer: let it see the end and leave

    def _wake_reader(self) -> None:
        task = self._reader_parked
        if task is not None:
            self._reader_parked = None
            trio.lowlevel.reschedule(task)

    def _unpark_reader(self, _: Any) -> trio.lowlevel.Abort:
        """The parked reader task was cancelled (``wait_task_rescheduled``'s abort)."""
        self._reader_parked = None
        return trio.lowlevel.Abort.SUCCEEDED

    async def _read_self(self) -> RecvT:
        """``receive`` with nothing queued and the reader task not reading: read the socket here,
        sparing the reader task's wakeup and the hand-over through the channel (bidi ping-pong:
        one task step per message instead of two). The reader task takes over only if the consumer
        stays away (:meth:`reader`), so a peer that goes away is still noticed while nobody
        receives. Cancellation is safe: ``Socket.receive`` keeps a frame it has not returned."""
        self._consumers_reading += 1
        try:
            item, terminal = await self._read_frame()
        finally:
            self._consumers_reading -= 1
            self._left_at = trio.current_time()
            if self._reader_parked is not None:
                self._wake_reader()
        if not terminal:
            return item  # type: ignore[no-any-return]
        self._peer_ends()
        if item is _END:
            raise trio.EndOfChannel
        self._in_recv.close()
        if self.connection_lost.is_set():
            self._final = item  # (if cancelled just below, the next receive() raises it)
            await trio.lowlevel.checkpoint()  # a cancelled owner sees Cancelled, as from the reader
            self._final = None
        raise item

    # -- tasks (started by the owner in its nursery) --
    async def reader(self) -> None:
        """Reads for the consumer while it is away from ``receive`` (busy, sending, or gone) for
        :data:`READ_GRACE` seconds, so a peer's frames and its departure (which cancels a server
        handler, ``on_connection_lost``) are seen without a consumer; hands reading back once it
        delivered a frame to a consumer waiting for it. Idle while the consumer reads itself."""
        try:
            while True:
                # Wait until the consumer has stayed out of receive() for READ_GRACE (unless the
                # consumer never reads itself: then this task does all the reading, at once).
                while self._self_read:
                    if self._peer_ended:
                        return
                    if self._consumers_reading:
                        # Parked until it leaves (or the peer's end): see _wake_reader.
                        self._reader_parked = trio.lowlevel.current_task()
                        await trio.lowlevel.wait_task_rescheduled(self._unpark_reader)
                        # It may be reading again already (ping-pong): look again only after the
                        # grace, so a busy stream wakes this task at most twice per READ_GRACE.
                        await trio.sleep_until(self._left_at + READ_GRACE)
                        continue
                    deadline = self._left_at + READ_GRACE
                    if trio.current_time() >= deadline:
                        break
                    await trio.sleep_until(deadline)
                self._reader_reading = True
                try:
                    while True:
                        item, terminal = await self._read_frame()
                        if terminal and item is _END:
                            return
                        if terminal:
                            await self._in_send.send(item)
                            return
                        await _send_fast(self._in_send, item)
                        if self._waiting and self._self_read:  # the consumer is back: it reads next
                            self._left_at = trio.current_time()  # (active now: the grace starts here)
                            break
                finally:
                    self._reader_reading = False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            self._peer_ends()

    async def writer(self) -> None:
        send_many = getattr(self._sock, "send_many", None)
        out = self._out_recv
        try:
            while True:
                try:
                    first = out.receive_nowait()
                except trio.WouldBlock:
                    self._writer_idle = True  # only now: the queue is empty and we are about to park
                    try:
                        first = await out.receive()
                    finally:
                        self._writer_idle = False
                if first is _FLUSH:  # only sockets with try_send (and so flush) get one
                    await self._sock.flush()  # type: ignore[attr-defined]
                    continue
                batch = [first]
                while True:
                    try:
                        item = out.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    batch.append(item)  # (never _FLUSH: a partial write needs an idle writer)
                if send_many is not None and len(batch) > 1:
                    await send_many(batch)
                else:
                    for m in batch:
                        await self._sock.send(m)
        except trio.EndOfChannel:
            pass
        except (TransportError, trio.BrokenResourceError, trio.ClosedResourceError):
            # Report the loss before closing the channel below: a sender that then finds it closed must
            # already be cancelled (the owner's on_connection_lost), not see a bare TransportError.
            self._lost()
        finally:
            self._out_recv.close()  # no checkpoint (``aclose`` would let a sender run in between)
            self._writer_done.set()

    # -- channel-like API --
    async def send(self, msg: SendT) -> None:
        if self._send_closed:
            raise trio.ClosedResourceError("send side of the stream is closed")
        if self.connection_lost.is_set():
            await trio.lowlevel.checkpoint()  # a cancelled owner sees Cancelled, not this error
            raise TransportError("stream connection lost")
        body = self._codec.encode(msg)
        self.sent += 1
        # Frames share the stream's header dict (nothing downstream changes it): no copy each.
        frame = Message(self._header, body)
        if self._writer_idle and self._may_write and self._try_send is not None:
            # Nothing queued and the writer parked: write it ourselves, sparing the writer's task
            # switch per message (ping-pong). Still a cancellation point, checked before writing.
            await trio.lowlevel.checkpoint_if_cancelled()
            if self._writer_idle:  # (unchanged: nothing above yielded)
                self._may_write = False
                done = self._try_send(frame)
                if done == _SENT:
                    return
                if done == _PARTIAL:  # the writer finishes it (it is parked: this cannot block); later
                    self._writer_idle = False  # frames queue behind it
                    try:
                        self._out_send.send_nowait(_FLUSH)
                    except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                        raise TransportError("stream connection lost") from None
                    return
        self._writer_idle = False  # something is on its way to the writer: no direct write may overtake it
        try:
            await _send_fast(self._out_send, frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise TransportError("stream connection lost") from None

    async def receive(self) -> RecvT:
        self._may_write = True
        # Before an item is taken: a cancelled consumer loses nothing.
        await trio.lowlevel.checkpoint_if_cancelled()
        channel = self._in_recv
        try:
            try:
                item = channel.receive_nowait()
            except trio.WouldBlock:
                if self._self_read and not self._reader_reading and not self._peer_ended:
                    return await self._read_self()
                self._waiting += 1
                try:
                    item = await channel.receive()
                finally:
                    self._waiting -= 1
        except trio.ClosedResourceError:
            final, self._final = self._final, None
            if final is not None:
                raise final from None
            raise trio.EndOfChannel from None
        if isinstance(item, BaseException):
            self._in_recv.close()
            raise item
        return item  # type: ignore[no-any-return]

    async def close_send(self, error: MicroError | None = None) -> None:
        """End our direction with EOS (or with ``error``); waits until it is written."""
        if self._send_closed:
            return
        self._send_closed = True
        header = dict(self._header)
        header[MICRO_ERROR] = error.to_json() if error is not None else EOS
        if error is not None and error.details:
            header[MICRO_ERROR_DETAILS] = errors.encode_details(error.details)
        try:
            await self._out_send.send(Message(header, b""))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        self._out_send.close()
        await self._writer_done.wait()

    def abort(self) -> None:
        self._send_closed = True
        self._out_send.close()
        self._in_recv.close()


async def _send_fast(channel: trio.MemorySendChannel[Any], item: Any) -> None:
    """``channel.send(item)`` that only yields when the buffer is full.

    Still a cancellation point (``checkpoint_if_cancelled``), and a full buffer still blocks, but a
    burst of sends no longer hands control to the other side after every message: the writer then
    finds several frames queued and coalesces them into one write, and a reader parses a whole
    received chunk before the consumer wakes (docs/benchmarks.md has the measured gain).
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    try:
        channel.send_nowait(item)
    except trio.WouldBlock:
        await channel.send(item)


async def _receive_fast(channel: trio.MemoryReceiveChannel[Any]) -> Any:
    """``channel.receive()`` that only yields when nothing is queued.

    The counterpart of :func:`_send_fast`: a consumer drains a burst of queued messages without a trip
    through the scheduler per message (``receive`` yields even when an item is ready). Still a
    cancellation point, checked before an item is taken, so a cancelled consumer loses nothing.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    try:
        return channel.receive_nowait()
    except trio.WouldBlock:
        return await channel.receive()


SendT_contra = TypeVar("SendT_contra", contravariant=True)
RecvT_co = TypeVar("RecvT_co", covariant=True)


class StreamCore(Protocol[SendT_contra, RecvT_co]):
    """What a stream needs from its transport: mucp's :class:`MucpStreamCore`, or the gRPC/h2 one."""

    sent: int
    received: int

    async def send(self, msg: SendT_contra) -> None: ...

    async def receive(self) -> RecvT_co: ...

    async def close_send(self, error: MicroError | None = None) -> None: ...


class _Base(Generic[SendT, RecvT]):
    def __init__(self, core: StreamCore[SendT, RecvT]) -> None:
        self._core = core
        self._terminal: BaseException | None = None

    async def send(self, msg: SendT) -> None:
        """Send one message; waits while the outgoing buffer is full (backpressure)."""
        await self._core.send(msg)

    async def receive(self) -> RecvT:
        """Next message; ``trio.EndOfChannel`` at a clean end, the peer's error otherwise."""
        if self._terminal is not None:
            raise self._terminal
        try:
            return await self._core.receive()
        except trio.EndOfChannel:
            raise
        except BaseException as exc:
            if isinstance(exc, (MicroError, TransportError)):
                self._terminal = exc
            raise

    def __aiter__(self) -> AsyncIterator[RecvT]:
        return self

    async def __anext__(self) -> RecvT:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    @property
    def messages_sent(self) -> int:
        return self._core.sent

    @property
    def messages_received(self) -> int:
        return self._core.received


class Stream(_Base[RspT, ReqT], Generic[ReqT, RspT]):
    """The handler's end of a stream: ``receive()`` requests (``ReqT``), ``send()`` responses (``RspT``).

    Annotate a handler parameter as ``Stream[ChatIn, ChatOut]`` to make the endpoint streaming.
    """

    async def close_send(self) -> None:
        """Nothing more to send; the server also ends the stream when the handler returns."""
        await self._core.close_send()


class ClientStream(_Base[ReqT, RspT], Generic[ReqT, RspT]):
    """The caller's end: ``send()`` requests (``ReqT``), ``receive()``/``async for`` responses (``RspT``)."""

    async def close_send(self) -> None:
        """Tell the server no more requests will come (EOS); responses can still be received."""
        await self._core.close_send()

    async def close_and_receive(self) -> RspT:
        """Client streaming: end the requests and return the single response (gRPC's CloseAndRecv)."""
        await self.close_send()
        return await self.receive()
