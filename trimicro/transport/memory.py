"""The ``memory`` transport: mucp (and sniffed HTTP/2) over in-process byte streams, no sockets.

Go Micro has a ``memory`` transport too (``transport/memory``); it passes whole messages over Go
channels. This one keeps the wire instead: a connection is a pair of bounded in-memory byte pipes,
and the listener and sockets are the very :class:`~trimicro.transport.http.HttpListener` and
:class:`~trimicro.transport.http.HttpSocket` of the ``http`` transport. So a service on ``memory``
runs the same framing, limits, timeouts, HTTP/2 sniffing and server connection loop as on ``http``
-- only the kernel is gone. That is what makes it worth testing against, and why it is not a mock.

Addresses are ``host:port`` strings in a :class:`MemoryNetwork` (one per process by default, so a
service and a client built separately in one process meet, as with the memory registry and broker).
An empty host means ``memory`` (``:0`` -> ``memory:1``); port 0 picks the lowest free port. Like TCP:

- dialling an address nobody listens on fails at once (``TransportError``: connection refused);
- each direction buffers at most ``buffer_size`` bytes; a writer waits for its reader (backpressure),
  so a slow peer costs bounded memory; at most ``backlog`` dialled connections wait to be accepted;
- closing the listener stops new dials and closes connections not yet accepted (their dialers see
  the connection end, a ``TransportError`` on use); accepted connections run on, so a server drains;
- closing one end gives the other end EOF on read and ``BrokenResourceError`` on write.

Only tasks of one ``trio.run`` can talk: a listener left behind by an earlier run is dropped when
dialled, instead of hanging the dialer.
"""

from __future__ import annotations

import itertools
import math
import operator
from typing import TYPE_CHECKING

import attrs
import trio

from ..errors import TransportError
from .http import H2Handler, HttpListener, HttpSocket, HttpTransport, split_address
from .mucp import DEFAULT_MAX_BODY_SIZE, DEFAULT_MAX_HEADER_SIZE, ClientConnection

if TYPE_CHECKING:
    from ..config import Options

__all__ = [
    "MemoryListener",
    "MemoryNetwork",
    "MemoryStream",
    "MemoryTransport",
    "default_network",
    "from_options",
    "memory_stream_pair",
]

DEFAULT_BUFFER_SIZE = 64 * 1024  # per direction, about a loopback socket's buffer
DEFAULT_BACKLOG = 128
_MAX_PORT = 65535


class _Pipe:
    """One direction of a connection: a bounded byte buffer between one writer and one reader.

    ``write_closed`` is the writer's EOF (or close); ``read_closed`` means the reader is gone, so
    further writes are an error, as a write to a closed TCP peer is.
    """

    __slots__ = ("_buf", "_capacity", "_data", "_space", "read_closed", "write_closed")

    def __init__(self, capacity: int) -> None:
        self._buf = bytearray()
        self._capacity = capacity
        self._data = trio.lowlevel.ParkingLot()  # readers waiting for bytes or EOF
        self._space = trio.lowlevel.ParkingLot()  # writers waiting for room
        self.read_closed = False
        self.write_closed = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        view = memoryview(data).cast("B")
        while True:
            if self.write_closed:
                raise trio.ClosedResourceError("this end was closed")
            if self.read_closed:
                raise trio.BrokenResourceError("the peer closed the connection")
            if not view:
                return
            free = self._capacity - len(self._buf)
            if free <= 0:
                await self._space.park()  # cancellable; bytes written so far stay written
                continue
            self._buf += view[:free]
            view = view[free:]
            self._data.unpark_all()

    async def wait_writable(self) -> None:
        await trio.lowlevel.checkpoint()
        while len(self._buf) >= self._capacity and not (self.write_closed or self.read_closed):
            await self._space.park()
        if self.write_closed:
            raise trio.ClosedResourceError("this end was closed")

    async def read(self, max_bytes: int | None) -> bytes:
        await trio.lowlevel.checkpoint()
        while True:
            if self.read_closed:
                raise trio.ClosedResourceError("this end was closed")
            if self._buf:
                n = len(self._buf) if max_bytes is None else min(max_bytes, len(self._buf))
                out = bytes(self._buf[:n])
                del self._buf[:n]
                self._space.unpark_all()
                return out
            if self.write_closed:
                return b""
            await self._data.park()

    def close_write(self) -> None:
        self.write_closed = True
        self._data.unpark_all()
        self._space.unpark_all()

    def close_read(self) -> None:
        self.read_closed = True
        self._buf.clear()  # nobody will read it: free it now
        self._data.unpark_all()
        self._space.unpark_all()


class MemoryStream(trio.abc.HalfCloseableStream):
    """One end of an in-memory connection: a ``trio.abc.HalfCloseableStream`` with bounded buffers."""

    def __init__(self, outgoing: _Pipe, incoming: _Pipe, local_address: str, remote_address: str) -> None:
        self._out = outgoing
        self._in = incoming
        self.local_address = local_address
        self.remote_address = remote_address
        self._sending = False
        self._receiving = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            await self._out.write(data)
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        await self._out.wait_writable()

    async def send_eof(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        if self._in.read_closed:
            raise trio.ClosedResourceError("this end was closed")
        self._out.close_write()
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)  # TypeError for 1.5, as a socket stream
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        self._receiving = True
        try:
            return await self._in.read(max_bytes)
        finally:
            self._receiving = False

    def close(self) -> None:
        """Close at once (synchronous): the peer reads EOF, its writes break."""
        self._out.close_write()
        self._in.close_read()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()


def memory_stream_pair(
    buffer_size: int = DEFAULT_BUFFER_SIZE, names: tuple[str, str] = ("memory-a", "memory-b")
) -> tuple[MemoryStream, MemoryStream]:
    """Two connected ends, each direction buffering at most ``buffer_size`` bytes."""
    if buffer_size < 1:
        raise ValueError("buffer_size must be >= 1")
    a_to_b, b_to_a = _Pipe(buffer_size), _Pipe(buffer_size)
    return (
        MemoryStream(a_to_b, b_to_a, names[0], names[1]),
        MemoryStream(b_to_a, a_to_b, names[1], names[0]),
    )


class MemoryListener(trio.abc.Listener[MemoryStream]):
    """A bound in-memory address: dialled connections wait here (at most ``backlog``) to be accepted."""

    def __init__(self, network: MemoryNetwork, address: str, backlog: int) -> None:
        self.address = address
        self._network = network
        self._token = trio.lowlevel.current_trio_token()
        self._send, self._receive = trio.open_memory_channel[MemoryStream](backlog)
        self.closed = False

    @property
    def stale(self) -> bool:
        """True if bound by another (finished) trio run, whose tasks can never accept."""
        try:
            return trio.lowlevel.current_trio_token() is not self._token
        except RuntimeError:
            return True

    async def accept(self) -> MemoryStream:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise trio.ClosedResourceError("listener closed") from None

    async def connect(self, dialer: MemoryStream, timeout: float | None) -> None:
        """Queue the server end of a new connection; TransportError if refused or the backlog stays full."""
        try:
            with trio.fail_after(math.inf if timeout is None else timeout):
                await self._send.send(dialer)
        except trio.TooSlowError:
            raise TransportError(f"dial {self.address}: timed out after {timeout}s (backlog full)") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise TransportError(f"dial {self.address}: connection refused (listener closed)") from None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._network._unbind(self)
        self._send.close()
        while True:  # connections dialled but never accepted: end them, as a closed TCP listener does
            try:
                self._receive.receive_nowait().close()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
        self._receive.close()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()


@attrs.define(eq=False)
class MemoryNetwork:
    """An address space of in-memory listeners. Transports sharing one can dial each other's listeners."""

    _listeners: dict[str, MemoryListener] = attrs.field(factory=dict, init=False)
    _connections: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1), init=False)

    @staticmethod
    def normalize(address: str) -> tuple[str, int]:
        """``":0"`` -> ``("memory", 0)``; TransportError if not ``host:port``."""
        if address.startswith(":"):
            address = "memory" + address
        try:
            host, port = split_address(address)
        except ValueError as exc:
            raise TransportError(str(exc)) from None
        if port > _MAX_PORT:
            raise TransportError(f"invalid address {address!r}: port out of range")
        return host, port

    def bind(self, address: str, backlog: int = DEFAULT_BACKLOG) -> MemoryListener:
        """Listen on ``address`` (port 0: the lowest free port); TransportError if it is taken."""
        host, port = self.normalize(address)
        if port == 0:
            for candidate in range(1, _MAX_PORT + 1):
                if self._free(_join(host, candidate)):
                    port = candidate
                    break
            else:
                raise TransportError(f"listen on {address}: no free memory port")
        bound = _join(host, port)
        if not self._free(bound):
            raise TransportError(f"listen on {address}: address already in use")
        listener = MemoryListener(self, bound, backlog)
        self._listeners[bound] = listener
        return listener

    def _free(self, address: str) -> bool:
        existing = self._listeners.get(address)
        if existing is None:
            return True
        if existing.stale:
            del self._listeners[address]
            return True
        return False

    def _unbind(self, listener: MemoryListener) -> None:
        if self._listeners.get(listener.address) is listener:
            del self._listeners[listener.address]

    async def connect(
        self, address: str, *, buffer_size: int = DEFAULT_BUFFER_SIZE, timeout: float | None = None
    ) -> MemoryStream:
        """Dial ``address``: the client end of a new connection; TransportError (refused) if nobody listens."""
        await trio.lowlevel.checkpoint()
        host, port = self.normalize(address)
        target = _join(host, port)
        if self._free(target):
            raise TransportError(f"dial {address}: connection refused (nothing listens there)")
        listener = self._listeners[target]
        client, server = memory_stream_pair(buffer_size, (f"memory-client:{next(self._connections)}", target))
        try:
            await listener.connect(server, timeout)
        except BaseException:
            client.close()
            raise
        return client

    @property
    def addresses(self) -> list[str]:
        """The bound addresses (for diagnostics)."""
        return sorted(a for a in list(self._listeners) if not self._free(a))


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_DEFAULT: MemoryNetwork | None = None


def default_network() -> MemoryNetwork:
    """The process-wide network, so services and clients built separately in one process meet."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = MemoryNetwork()
    return _DEFAULT


@attrs.define(eq=False)
class MemoryTransport:
    """The ``memory`` transport: ``http``'s mucp framing (and HTTP/2 sniffing) over in-memory streams.

    The limits and timeouts mean what they mean for :class:`~trimicro.transport.http.HttpTransport`.
    ``network`` defaults to the process-wide one; give a fresh :class:`MemoryNetwork` to isolate.
    """

    max_header_size: int = DEFAULT_MAX_HEADER_SIZE
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    header_timeout: float = 10.0
    idle_timeout: float = 300.0
    buffer_size: int = DEFAULT_BUFFER_SIZE
    backlog: int = DEFAULT_BACKLOG
    network: MemoryNetwork = attrs.field(factory=default_network)
    name: str = attrs.field(default="memory", init=False)
    # The http transport's listener reads its limits and timeouts from an HttpTransport: this one.
    _framing: HttpTransport = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        if self.buffer_size < 1 or self.backlog < 1:
            raise ValueError("buffer_size and backlog must be >= 1")
        self._framing = HttpTransport(
            max_header_size=self.max_header_size,
            max_body_size=self.max_body_size,
            header_timeout=self.header_timeout,
            idle_timeout=self.idle_timeout,
        )

    async def listen(self, address: str, *, h2_handler: H2Handler | None = None) -> HttpListener:
        """Bind ``address`` in the network (port 0 picks one, reported in ``listener.address``)."""
        await trio.lowlevel.checkpoint()
        listener = self.network.bind(address, self.backlog)
        return HttpListener(listener.address, [listener], self._framing, h2_handler)

    async def dial(self, address: str, *, timeout: float | None = None) -> HttpSocket:
        """Connect to ``address``; TransportError at once if nothing listens there."""
        stream = await self.network.connect(address, buffer_size=self.buffer_size, timeout=timeout)
        conn = ClientConnection(
            stream.remote_address, max_header_size=self.max_header_size, max_body_size=self.max_body_size
        )
        return HttpSocket(stream, conn, stream.local_address, stream.remote_address)


def from_options(options: Options) -> MemoryTransport:
    """Build the transport from service options (limits, timeouts), on the process-wide network."""
    return MemoryTransport(
        max_header_size=options.server_max_header_size,
        max_body_size=options.server_max_body_size,
        header_timeout=options.server_header_timeout,
        idle_timeout=options.server_idle_timeout,
    )
