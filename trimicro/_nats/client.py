"""A trio-native NATS client: one TCP connection, a reader, a writer and a pinger, all in one nursery.

``async with NatsClient(["127.0.0.1:4222"]) as nc:`` connects (trying the servers in order) and returns
once the server has answered ``CONNECT`` + ``PING`` with ``PONG``. Inside:

- ``await nc.publish(subject, payload, headers=None, reply=None)`` queues the message for the writer.
  The write buffer is bounded: past ``write_high_water`` bytes a publisher waits for the writer
  (backpressure). While reconnecting, publishes go to the same buffer up to ``reconnect_buffer_size``
  bytes and are sent after the next successful handshake; beyond that ``publish`` raises
  :class:`~trimicro.errors.BrokerError` -- never a silent drop.
- ``await nc.subscribe(subject, queue=None)`` -> :class:`NatsSubscription`, an async iterator of
  :class:`~.protocol.Msg`. Each subscription buffers at most ``pending_msgs_limit`` messages and
  ``pending_bytes_limit`` payload bytes. A consumer that falls behind is a *slow consumer*: like NATS's
  own clients, the newest message is dropped, ``subscription.dropped`` counts it and one warning per
  episode is logged; the connection and the other subscriptions are unaffected.
- ``await nc.request(subject, payload, timeout)`` publishes with a reply subject under one shared
  ``_INBOX.<id>.*`` wildcard subscription, so a request costs no SUB/UNSUB round trip.
- ``await nc.flush()`` returns once the server has processed everything sent so far (PING/PONG).

When the connection drops (server restart, stale PINGs) the client reconnects with jittered exponential
backoff, re-sends ``SUB`` for every live subscription with the same sid, then flushes what was buffered.
``INFO.connect_urls`` are deliberately ignored: the client only ever talks to the servers it was given.
"""

from __future__ import annotations

import logging
import random
import secrets
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, Protocol
from urllib.parse import urlsplit

import attrs
import trio

from .._lifecycle import NurseryOwner
from ..errors import BrokerError, ProtocolError, TransportError
from . import protocol as proto
from .protocol import NEED_DATA, Err, Info, MalformedMsg, Msg, NatsParser, Ping, Pong

__all__ = ["NatsClient", "NatsSubscription", "NoResponders", "RequestTimeout", "parse_server", "str_list"]

log = logging.getLogger("trimicro.broker")

# A PING in the write queue whose PONG someone waits for; a distinct object so it can be found by
# identity and dropped when the connection it was meant for dies.
_QUEUED_PING = bytes(bytearray(proto.PING))

_COALESCE_BYTES = 64 * 1024

_CONNECT_ERRORS = (
    OSError,
    trio.TooSlowError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    ProtocolError,
    TransportError,
    BrokerError,
)


class NoResponders(BrokerError):
    """A request found no subscriber on its subject (the server's 503 status)."""


class RequestTimeout(BrokerError):
    """A request got no reply within its timeout."""


def str_list(value: Iterable[str]) -> list[str]:
    """Server addresses from a list or a comma-separated string."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if item.strip()]


def parse_server(address: str) -> tuple[str, int, str | None, str | None]:
    """``[nats://][user:pass@]host[:port]`` -> (host, port, user, password); port defaults to 4222."""
    text = address.strip()
    parts = urlsplit(text if "://" in text else "nats://" + text)
    if not parts.hostname:
        raise ValueError(f"invalid NATS server address {address!r}")
    try:
        port = parts.port or 4222
    except ValueError:
        raise ValueError(f"invalid NATS server address {address!r}") from None
    return parts.hostname, port, parts.username, parts.password


class _Sink(Protocol):
    @property
    def sid(self) -> int: ...

    @property
    def subject(self) -> str: ...

    @property
    def queue(self) -> str | None: ...

    def _deliver(self, msg: Msg) -> None: ...

    def _malformed(self, event: MalformedMsg) -> None: ...

    def _close(self) -> None: ...


@attrs.define(eq=False)
class _PongWaiter:
    event: trio.Event = attrs.field(factory=trio.Event)
    ok: bool = False

    def resolve(self, ok: bool) -> None:
        self.ok = ok
        self.event.set()


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class NatsSubscription:
    """One ``SUB``: an async iterator of :class:`Msg` with a bounded pending buffer (see module doc)."""

    sid: int
    subject: str
    queue: str | None
    _client: NatsClient = attrs.field(repr=False)
    pending_msgs_limit: int
    pending_bytes_limit: int
    _send: trio.MemorySendChannel[Msg] = attrs.field(init=False, repr=False)
    _receive: trio.MemoryReceiveChannel[Msg] = attrs.field(init=False, repr=False)
    pending_bytes: int = attrs.field(default=0, init=False)
    received: int = attrs.field(default=0, init=False)
    dropped: int = attrs.field(default=0, init=False)
    malformed: int = attrs.field(default=0, init=False)
    _slow: bool = attrs.field(default=False, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[Msg](self.pending_msgs_limit)

    @property
    def pending(self) -> int:
        """Messages buffered and not yet taken by the consumer."""
        return self._send.statistics().current_buffer_used

    def _deliver(self, msg: Msg) -> None:
        size = len(msg.payload)
        if self.pending_bytes + size > self.pending_bytes_limit:
            self._drop()
            return
        try:
            self._send.send_nowait(msg)
        except trio.WouldBlock:
            self._drop()
            return
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return
        self.received += 1
        self.pending_bytes += size
        self._slow = False

    def _drop(self) -> None:
        self.dropped += 1
        if not self._slow:
            self._slow = True
            log.warning(
                "NATS slow consumer on %r (sid %d): buffer full (%d msgs, %d bytes), dropping newest "
                "messages (%d dropped so far)",
                self.subject,
                self.sid,
                self.pending,
                self.pending_bytes,
                self.dropped,
            )

    def _malformed(self, event: MalformedMsg) -> None:
        self.malformed += 1
        log.error("NATS message on %r with a malformed header block skipped: %s", event.subject, event.reason)

    def _close(self) -> None:
        self._send.close()

    async def next(self) -> Msg:
        """The next message; ``trio.EndOfChannel`` once unsubscribed or the client closed."""
        try:
            msg = await self._receive.receive()
        except trio.ClosedResourceError:
            raise trio.EndOfChannel from None
        self.pending_bytes -= len(msg.payload)
        return msg

    def __aiter__(self) -> NatsSubscription:
        return self

    async def __anext__(self) -> Msg:
        try:
            return await self.next()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def unsubscribe(self) -> None:
        """Stop delivery: ``UNSUB`` to the server, end the iterator after what is already buffered."""
        await trio.lowlevel.checkpoint()
        self._client._unsubscribe(self)


@attrs.define(eq=False)
class _Inbox:
    """The shared ``_INBOX.<id>.*`` subscription that routes replies to waiting requests by token."""

    sid: int
    prefix: str
    queue: str | None = None
    waiters: dict[str, list[Msg]] = attrs.field(factory=dict)
    events: dict[str, trio.Event] = attrs.field(factory=dict)

    @property
    def subject(self) -> str:
        return self.prefix + ".*"

    def _deliver(self, msg: Msg) -> None:
        token = msg.subject[len(self.prefix) + 1 :]
        box = self.waiters.get(token)
        if box is not None and not box:
            box.append(msg)
            self.events[token].set()

    def _malformed(self, event: MalformedMsg) -> None:
        log.error("NATS reply on %r with a malformed header block skipped: %s", event.subject, event.reason)

    def _close(self) -> None:
        for event in self.events.values():
            event.set()


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)  # hot counters: plain setattr
class NatsClient(NurseryOwner):
    """A NATS connection with reconnect, bounded buffers and request/reply (see the module doc)."""

    servers: list[str] = attrs.field(factory=lambda: ["127.0.0.1:4222"], converter=str_list)
    name: str = "trimicro"
    connect_timeout: float = 2.0
    ping_interval: float = 120.0
    max_outstanding_pings: int = 2
    reconnect_wait: float = 0.05  # first retry delay; doubles per round up to reconnect_wait_max
    reconnect_wait_max: float = 2.0
    max_reconnect_attempts: int | None = None  # rounds over all servers; None: forever
    reconnect_buffer_size: int = 8 * 1024 * 1024
    write_high_water: int = 1024 * 1024
    pending_msgs_limit: int = 65536
    pending_bytes_limit: int = 64 * 1024 * 1024
    close_timeout: float = 2.0

    reconnects: int = attrs.field(default=0, init=False)
    _targets: list[tuple[str, int, str | None, str | None]] = attrs.field(init=False, repr=False)
    _server: str = attrs.field(default="", init=False)
    _info: dict[str, Any] = attrs.field(factory=dict, init=False, repr=False)
    _connected: bool = attrs.field(default=False, init=False)
    _closed: bool = attrs.field(default=False, init=False)
    _entered: bool = attrs.field(default=False, init=False, repr=False)
    _conn_scope: trio.CancelScope | None = attrs.field(default=None, init=False, repr=False)
    _out: list[bytes] = attrs.field(factory=list, init=False, repr=False)
    _out_bytes: int = attrs.field(default=0, init=False, repr=False)
    _ctrl: list[bytes] = attrs.field(factory=list, init=False, repr=False)
    _data_lot: trio.lowlevel.ParkingLot = attrs.field(
        factory=trio.lowlevel.ParkingLot, init=False, repr=False
    )
    _space_lot: trio.lowlevel.ParkingLot = attrs.field(
        factory=trio.lowlevel.ParkingLot, init=False, repr=False
    )
    _pongs: deque[_PongWaiter | None] = attrs.field(factory=deque, init=False, repr=False)
    _pings_out: int = attrs.field(default=0, init=False, repr=False)
    _subs: dict[int, _Sink] = attrs.field(factory=dict, init=False, repr=False)
    _next_sid: int = attrs.field(default=1, init=False, repr=False)
    _inbox: _Inbox | None = attrs.field(default=None, init=False, repr=False)
    _next_token: int = attrs.field(default=0, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not self.servers:
            raise ValueError("NatsClient needs at least one server address")
        self._targets = [parse_server(s) for s in self.servers]

    # ------------------------------------------------------------------ lifecycle

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def server(self) -> str:
        """``host:port`` of the server currently (or last) connected."""
        return self._server

    @property
    def server_info(self) -> dict[str, Any]:
        return dict(self._info)

    @property
    def max_payload(self) -> int:
        value = self._info.get("max_payload")
        return value if isinstance(value, int) and value > 0 else proto.DEFAULT_MAX_PAYLOAD

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        """Connect, run the connection supervisor until the body ends, flush on a clean exit."""
        if self._entered:
            raise RuntimeError("a NatsClient can be entered only once")
        self._entered = True
        stream, parser = await self._connect_round()
        self._connected = True
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._supervise, stream, parser)
            try:
                yield
                if self._connected and not self._closed:
                    with trio.move_on_after(self.close_timeout):
                        try:
                            await self.flush()
                        except BrokerError:
                            pass
            finally:
                self._shutdown()
                nursery.cancel_scope.cancel()

    def _shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._connected = False
        unsent = sum(1 for chunk in self._out if chunk is not _QUEUED_PING)
        if unsent:
            log.warning(
                "NATS client closed with %d unsent operations (%d bytes) discarded", unsent, self._out_bytes
            )
        for sink in list(self._subs.values()):
            sink._close()
        self._subs.clear()
        self._fail_pongs()
        self._space_lot.unpark_all()

    async def _connect_round(self) -> tuple[trio.SocketStream, NatsParser]:
        """Try every server once, in order; BrokerError naming the last failure if none answers."""
        last: BaseException | None = None
        for target in self._targets:
            try:
                return await self._open(target)
            except _CONNECT_ERRORS as exc:
                last = exc
                log.debug("NATS connect to %s:%d failed: %r", target[0], target[1], exc)
        raise BrokerError(f"cannot connect to NATS at {', '.join(self.servers)}: {last!r}")

    async def _open(
        self, target: tuple[str, int, str | None, str | None]
    ) -> tuple[trio.SocketStream, NatsParser]:
        host, port, user, password = target
        with trio.fail_after(self.connect_timeout):
            stream = await trio.open_tcp_stream(host, port)
            try:
                parser = NatsParser()
                event = await self._next_event(stream, parser)
                if not isinstance(event, Info):
                    raise ProtocolError(f"NATS: expected INFO, got {event!r}")
                info = dict(event.info)
                if info.get("tls_required"):
                    raise BrokerError(f"NATS server {host}:{port} requires TLS, which is not supported")
                headers = bool(info.get("headers", False))
                options: dict[str, Any] = {
                    "verbose": False,
                    "pedantic": False,
                    "tls_required": False,
                    "name": self.name,
                    "lang": "python-trio",
                    "version": "0.1.0",
                    "protocol": 1,
                    "headers": headers,
                    "no_responders": headers,
                }
                if user is not None:
                    options["user"] = user
                    options["pass"] = password or ""
                self._ctrl.clear()
                resub = b"".join(proto.sub(s.subject, sid, s.queue) for sid, s in self._subs.items())
                await stream.send_all(proto.connect(options) + resub + proto.PING)
                while True:
                    event = await self._next_event(stream, parser)
                    if isinstance(event, Pong):
                        break
                    if isinstance(event, Err):
                        raise BrokerError(
                            f"NATS server {host}:{port} refused the connection: {event.message}"
                        )
                    self._handle(event)
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        self._info = info
        self._server = f"{host}:{port}"
        return stream, parser

    async def _next_event(self, stream: trio.SocketStream, parser: NatsParser) -> proto.Event:
        while True:
            event = parser.next_event()
            if event is not NEED_DATA:
                assert not isinstance(event, proto._NeedData)
                return event
            data = await stream.receive_some(65536)
            if not data:
                raise TransportError("NATS server closed the connection")
            parser.receive_data(data)

    async def _supervise(self, stream: trio.SocketStream, parser: NatsParser) -> None:
        """Run one connection at a time; when it dies, reconnect until closed or out of attempts."""
        try:
            while True:
                await self._run_connection(stream, parser)
                await trio.aclose_forcefully(stream)
                if self._closed:
                    return
                reconnected = await self._reconnect()
                if reconnected is None:
                    log.error("NATS: giving up reconnecting to %s", ", ".join(self.servers))
                    self._shutdown()
                    return
                stream, parser = reconnected
                self._connected = True
                self.reconnects += 1
                log.info("NATS reconnected to %s", self._server)
        finally:
            await trio.aclose_forcefully(stream)

    async def _reconnect(self) -> tuple[trio.SocketStream, NatsParser] | None:
        rounds = 0
        while not self._closed:
            try:
                return await self._connect_round()
            except BrokerError as exc:
                log.debug("NATS reconnect round %d failed: %s", rounds + 1, exc)
            rounds += 1
            if self.max_reconnect_attempts is not None and rounds >= self.max_reconnect_attempts:
                return None
            delay = min(self.reconnect_wait * 2 ** (rounds - 1), self.reconnect_wait_max)
            await trio.sleep(delay * random.uniform(0.5, 1.0))
        return None

    async def _run_connection(self, stream: trio.SocketStream, parser: NatsParser) -> None:
        async with trio.open_nursery() as nursery:
            self._conn_scope = nursery.cancel_scope
            self._pings_out = 0
            self._data_lot.unpark_all()
            nursery.start_soon(self._reader, stream, parser)
            nursery.start_soon(self._writer, stream)
            nursery.start_soon(self._pinger)
        self._conn_scope = None

    def _lost(self, reason: BaseException) -> None:
        if not self._connected:
            return
        self._connected = False
        if not self._closed:
            log.warning("NATS connection to %s lost: %r; reconnecting", self._server, reason)
        if self._conn_scope is not None:
            self._conn_scope.cancel()
        # PINGs still queued belong to the dead connection; their waiters fail below.
        self._out = [chunk for chunk in self._out if chunk is not _QUEUED_PING]
        self._out_bytes = sum(len(chunk) for chunk in self._out)
        self._ctrl.clear()
        self._fail_pongs()
        self._space_lot.unpark_all()

    def _fail_pongs(self) -> None:
        while self._pongs:
            waiter = self._pongs.popleft()
            if waiter is not None:
                waiter.resolve(False)
        self._pings_out = 0

    # ------------------------------------------------------------------ connection tasks

    async def _reader(self, stream: trio.SocketStream, parser: NatsParser) -> None:
        try:
            while True:
                while (event := parser.next_event()) is not NEED_DATA:
                    assert not isinstance(event, proto._NeedData)
                    self._handle(event)
                data = await stream.receive_some(65536)
                if not data:
                    raise TransportError("NATS server closed the connection")
                parser.receive_data(data)
        except _CONNECT_ERRORS as exc:
            self._lost(exc)

    def _handle(self, event: proto.Event) -> None:
        if isinstance(event, Msg):
            sink = self._subs.get(event.sid)
            if sink is not None:
                sink._deliver(event)
        elif isinstance(event, MalformedMsg):
            sink = self._subs.get(event.sid)
            if sink is not None:
                sink._malformed(event)
        elif isinstance(event, Ping):
            self._ctrl.append(proto.PONG)
            self._data_lot.unpark_all()
        elif isinstance(event, Pong):
            self._pings_out = 0
            if self._pongs:
                waiter = self._pongs.popleft()
                if waiter is not None:
                    waiter.resolve(True)
        elif isinstance(event, Info):
            self._info.update(event.info)
        elif isinstance(event, Err):
            log.warning("NATS server %s: -ERR %s", self._server, event.message)

    async def _writer(self, stream: trio.SocketStream) -> None:
        try:
            while True:
                while not (self._out or self._ctrl):
                    await self._data_lot.park()
                # Coalesce: while publishers keep adding (a burst), give them more scheduling rounds
                # before writing, so a burst costs a few syscalls rather than one per message. Trio
                # runs a round's tasks in random order, so stop only after two rounds without growth;
                # a lone message waits two rounds.
                seen, idle, rounds = self._out_bytes, 0, 0
                while idle < 2 and self._out_bytes < _COALESCE_BYTES and rounds < 256:
                    await trio.lowlevel.checkpoint()
                    idle = idle + 1 if self._out_bytes == seen else 0
                    seen = self._out_bytes
                    rounds += 1
                data = b"".join(self._ctrl + self._out)
                self._ctrl = []
                self._out = []
                self._out_bytes = 0
                self._space_lot.unpark_all()
                await stream.send_all(data)
        except _CONNECT_ERRORS as exc:
            self._lost(exc)

    async def _pinger(self) -> None:
        while True:
            await trio.sleep(self.ping_interval)
            if self._pings_out >= self.max_outstanding_pings:
                self._lost(TransportError(f"stale connection: {self._pings_out} PINGs unanswered"))
                return
            self._pings_out += 1
            self._queue_ping(None)

    def _queue_ping(self, waiter: _PongWaiter | None) -> None:
        self._pongs.append(waiter)
        self._out.append(_QUEUED_PING)
        self._out_bytes += len(_QUEUED_PING)
        self._data_lot.unpark_all()

    # ------------------------------------------------------------------ public API

    async def publish(
        self,
        subject: str,
        payload: bytes,
        headers: dict[str, str] | None = None,
        reply: str | None = None,
    ) -> None:
        """Queue one message (``PUB``, or ``HPUB`` when ``headers`` is given, even empty).

        ValueError for an invalid subject/header; BrokerError if it exceeds the server's max_payload,
        the server has no header support, the reconnect buffer is full, or the client is closed.
        """
        if headers is None:
            data = proto.pub(subject, payload, reply)
            size = len(payload)
        else:
            if self._info and not self._info.get("headers", False):
                raise BrokerError("this NATS server does not support headers")
            data = proto.hpub(subject, headers, payload, reply)
            size = len(proto.encode_headers(headers)) + len(payload)
        if size > self.max_payload:
            raise BrokerError(
                f"NATS message of {size} bytes exceeds the server's max_payload {self.max_payload}"
            )
        await self._enqueue(data)

    async def _enqueue(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._closed:
                raise BrokerError("NATS client is closed")
            if not self._connected:
                if self._out_bytes + len(data) > self.reconnect_buffer_size:
                    raise BrokerError(
                        f"NATS reconnect buffer full ({self._out_bytes} of {self.reconnect_buffer_size} "
                        "bytes) while disconnected; message not sent"
                    )
                break
            if self._out_bytes < self.write_high_water:
                break
            await self._space_lot.park()
        self._out.append(data)
        self._out_bytes += len(data)
        self._data_lot.unpark_all()
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def flush(self) -> None:
        """Wait until the server has processed everything sent so far (bound it with a cancel scope);
        BrokerError if not connected or the connection is lost meanwhile."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self._connected:
            raise BrokerError("NATS client is not connected")
        waiter = _PongWaiter()
        self._queue_ping(waiter)
        await waiter.event.wait()
        if not waiter.ok:
            raise BrokerError("NATS connection lost before flush completed")

    def _new_sid(self) -> int:
        sid = self._next_sid
        self._next_sid += 1
        return sid

    def _add_sink(self, sink: _Sink) -> None:
        self._subs[sink.sid] = sink
        if self._connected:  # otherwise the next handshake sends it
            self._out.append(proto.sub(sink.subject, sink.sid, sink.queue))
            self._data_lot.unpark_all()

    async def subscribe(
        self,
        subject: str,
        queue: str | None = None,
        *,
        pending_msgs_limit: int | None = None,
        pending_bytes_limit: int | None = None,
    ) -> NatsSubscription:
        """Subscribe (``SUB``); the server knows of it once a later :meth:`flush` returns."""
        await trio.lowlevel.checkpoint_if_cancelled()
        proto.sub(subject, 0, queue)  # validate before taking a sid
        if self._closed:
            raise BrokerError("NATS client is closed")
        sub = NatsSubscription(
            self._new_sid(),
            subject,
            queue,
            self,
            pending_msgs_limit or self.pending_msgs_limit,
            pending_bytes_limit or self.pending_bytes_limit,
        )
        self._add_sink(sub)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return sub

    def _unsubscribe(self, sink: _Sink) -> None:
        if self._subs.pop(sink.sid, None) is None:
            return
        sink._close()
        if self._connected:
            self._out.append(proto.unsub(sink.sid))
            self._data_lot.unpark_all()

    async def request(
        self,
        subject: str,
        payload: bytes,
        timeout: float = 5.0,
        headers: dict[str, str] | None = None,
    ) -> Msg:
        """Publish with a reply subject and return the first reply.

        Raises :class:`NoResponders` when no one subscribes to ``subject`` (server status 503) and
        :class:`RequestTimeout` when no reply comes within ``timeout`` seconds.
        """
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = _Inbox(self._new_sid(), "_INBOX." + secrets.token_hex(11))
            self._add_sink(inbox)
        self._next_token += 1
        token = str(self._next_token)
        box: list[Msg] = []
        inbox.waiters[token] = box
        inbox.events[token] = event = trio.Event()
        try:
            await self.publish(subject, payload, headers, reply=f"{inbox.prefix}.{token}")
            with trio.move_on_after(timeout):
                await event.wait()
        finally:
            inbox.waiters.pop(token, None)
            inbox.events.pop(token, None)
        if not box:
            if self._closed:
                raise BrokerError("NATS client closed during request")
            raise RequestTimeout(f"NATS request to {subject!r}: no reply within {timeout}s")
        reply = box[0]
        if reply.status == 503 and not reply.payload:
            raise NoResponders(f"NATS request to {subject!r}: no responders")
        return reply
