"""RPC streams that behave like trio channels, over any frame socket (mucp).

A stream owns two bounded memory channels: incoming decoded messages (filled by a reader task) and
outgoing frames (drained by a writer task that coalesces whatever is queued into one write). A slow
consumer therefore applies backpressure to the peer instead of growing memory, and a burst of sends
costs one syscall. Both tasks live in a nursery owned by whoever opened the stream (the server's
connection task or the client's ``async with``), so no task outlives its stream.

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

__all__ = ["ClientStream", "MucpStreamCore", "Stream", "StreamCore"]

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
        #: True only while the writer waits on an empty queue with nothing of ours in flight: then a
        #: sender may write its frame itself without overtaking anything (see :meth:`send`)
        self._writer_idle = False
        #: a direct write is allowed once per received message (and for the first send): a sender that
        #: answers what it received (ping-pong) writes itself, while a burst of sends (server
        #: streaming) still goes through the writer, which coalesces it into one write
        self._may_write = True
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

    # -- tasks (started by the owner in its nursery) --
    async def reader(self) -> None:
        try:
            while True:
                try:
                    msg = await self._sock.receive()
                except trio.EndOfChannel:
                    self._lost()
                    await self._in_send.send(TransportError("stream ended before EOS (unexpected EOF)"))
                    return
                except (TransportError, errors.ProtocolError) as exc:
                    self._lost()
                    await self._in_send.send(TransportError(f"stream connection lost: {exc}"))
                    return
                err = msg.header.get(MICRO_ERROR)
                if err:
                    if err != EOS:
                        details = msg.header.get(MICRO_ERROR_DETAILS)
                        await self._in_send.send(errors.parse(err, default_id=self._error_id, details=details))
                    return
                try:
                    value = self._codec.decode(msg.body, self._recv_type)
                except errors.CodecError as exc:
                    await self._in_send.send(errors.bad_request(self._error_id, str(exc)))
                    return
                self.received += 1
                await _send_fast(self._in_send, value)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            self.peer_done.set()
            self._in_send.close()

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
        try:
            item = await _receive_fast(self._in_recv)
        except trio.ClosedResourceError:
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
