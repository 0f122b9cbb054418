"""NATS transport in Go Micro v5's ``transport/nats`` protocol: mucp frames as NATS request/reply.

Wire facts (go-micro v5 ``transport/nats``):

- A server listens on one **subject**, its node address in the registry. Go picks a fresh
  ``_INBOX.<id>`` when the server address is the default ``:0``; here any address ending in ``:0``
  (trimicro's default ``127.0.0.1:0``) does the same, and any other address is used as the subject.
- A client socket (``dial``) is a fresh inbox subject: every frame is published to the server subject
  with that inbox as its reply subject, and the server's frames come back on the inbox.
- A frame is Go's ``json.Marshal(&transport.Message{Header, Body})``:
  ``{"Header": {...}, "Body": "<base64>"}``, the same envelope Go's nats broker uses.
- The server keeps one socket per reply subject: frames with the same reply belong to the same
  "connection", in order. That is how a pooled Go client's sequential calls, and mucp streams
  (``Micro-Stream`` first frame, ``Micro-Error: EOS`` to end a direction), work unchanged.
- Nothing on the wire opens or closes a socket. A server socket ends after ``idle_timeout`` seconds
  without a frame either way (Go: the transport timeout, one minute), except that a unary request
  being handled is never cut short by it.

So that mucp's server loop (trimicro/server/_server.py) serves this transport as it serves a TCP
one, :meth:`NatsListener.serve` turns each new reply subject into a :class:`NatsServerSocket` and runs
the handler for it in a task of its own; the handler sees frames, never NATS.

Beyond Go (compatible with it): both sides use NATS's *no responders* status. A client frame to a
subject nobody serves comes back at once as a 503 status on the inbox, which ``receive`` reports as
:class:`~trimicro.errors.TransportError` (the client then tries another node) instead of waiting out
the deadline. Server replies carry a per-socket reply subject of their own, so a reply to an inbox
that is gone (the client left) produces that status too and the server socket ends, cancelling a
stream handler that would otherwise keep sending into the void.

Limits: a frame must fit the server's ``max_payload`` (1 MiB by default, base64 included), which NATS
enforces; a socket buffers at most ``max_pending`` unread frames (more are dropped and logged, NATS's
slow-consumer rule).
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .. import errors
from .._lifecycle import NurseryOwner
from .._metadata import (
    CONTENT_TYPE,
    MICRO_ENDPOINT,
    MICRO_ERROR,
    MICRO_ID,
    MICRO_METHOD,
    MICRO_SERVICE,
    MICRO_STREAM,
)
from .._nats import nats_servers, open_nats
from ..broker._base import BrokerMessage
from ..broker._envelope import decode_envelope, encode_envelope
from ..broker._nats_client import NatsClient, NatsSubscription
from ..broker._nats_protocol import Msg, validate_subject
from ..errors import BrokerError, CodecError, ProtocolError, TransportError
from ._base import Message

if TYPE_CHECKING:
    from ..config import Options

__all__ = [
    "NatsClientSocket",
    "NatsListener",
    "NatsServerSocket",
    "NatsTransport",
    "decode_frame",
    "encode_frame",
    "from_options",
]

log = logging.getLogger("trimicro.transport.nats")

_NO_RESPONDERS = 503
_SERVER_ID = "go.micro.server"  # Go Micro's server error id (trimicro/server/_router.py's SERVER_ID)
_ECHO = (MICRO_ID, MICRO_SERVICE, MICRO_ENDPOINT, MICRO_METHOD, MICRO_STREAM, CONTENT_TYPE)


def encode_frame(msg: Message) -> bytes:
    """``json.Marshal(&transport.Message{Header, Body})``: ``{"Header": {...}, "Body": "<base64>"}``."""
    return encode_envelope(BrokerMessage(header=msg.header, body=msg.body))


def decode_frame(data: bytes) -> Message:
    """A frame from its JSON; ProtocolError (400) when it is not Go's transport.Message shape."""
    try:
        env = decode_envelope(data)
    except CodecError as exc:
        raise ProtocolError(
            f"nats transport: bad frame: {exc}".replace("broker envelope", "message"), code=400
        ) from None
    return Message(dict(env.header), env.body)


def _new_inbox() -> str:
    return "_INBOX." + secrets.token_hex(11)


def _is_no_responders(msg: Msg) -> bool:
    return msg.status == _NO_RESPONDERS and not msg.payload


@attrs.define(eq=False)
class NatsClientSocket:
    """A dialled socket: frames go to the server subject with our inbox as reply; replies come back."""

    _client: NatsClient
    _sub: NatsSubscription
    local_address: str  # our inbox
    remote_address: str  # the server subject
    _closed: bool = attrs.field(default=False, init=False)

    @property
    def closed(self) -> bool:
        return self._closed

    async def send(self, msg: Message) -> None:
        if self._closed:
            raise TransportError(f"nats socket to {self.remote_address} is closed")
        try:
            await self._client.publish(self.remote_address, encode_frame(msg), reply=self.local_address)
        except BrokerError as exc:
            raise TransportError(f"nats: cannot send to {self.remote_address}: {exc}") from None
        except ValueError as exc:
            raise ProtocolError(f"nats: unsendable frame: {exc}", code=400) from None

    async def receive(self) -> Message:
        try:
            msg = await self._sub.next()
        except trio.EndOfChannel:
            raise TransportError(f"nats socket to {self.remote_address} closed") from None
        if _is_no_responders(msg):
            raise TransportError(f"nats: nobody serves {self.remote_address} (no responders)")
        return decode_frame(msg.payload)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            await self._sub.unsubscribe()


@attrs.define(eq=False)
class NatsServerSocket:
    """The server's side of one client inbox: frames delivered by the listener, replies published back."""

    _client: NatsClient
    local_address: str  # the listener subject
    remote_address: str  # the client's inbox (the reply subject of its frames)
    _status_subject: str  # reply subject of our frames, so a vanished inbox reports back
    _idle_timeout: float
    _send_frames: trio.MemorySendChannel[Message | ProtocolError]
    _frames: trio.MemoryReceiveChannel[Message | ProtocolError]
    _streaming: bool = attrs.field(default=False, init=False)
    _unanswered: bool = attrs.field(default=False, init=False)
    _last: float = attrs.field(factory=trio.current_time, init=False)
    _gone: bool = attrs.field(default=False, init=False)
    _closed: bool = attrs.field(default=False, init=False)
    dropped: int = attrs.field(default=0, init=False)

    @property
    def closed(self) -> bool:
        return self._closed

    def _deliver(self, frame: Message | ProtocolError) -> None:
        try:
            self._send_frames.send_nowait(frame)
        except trio.WouldBlock:
            self.dropped += 1
            if self.dropped == 1:
                log.warning("nats transport: socket %s is not reading; dropping frames", self.remote_address)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def _peer_gone(self) -> None:
        """The client's inbox has no subscriber any more (a no-responders status for our reply)."""
        self._gone = True
        self._send_frames.close()

    async def receive(self) -> Message:
        if self._gone:
            raise TransportError(f"nats: client {self.remote_address} went away")
        if self._unanswered and not self._streaming:
            deadline = math.inf  # a unary call in progress: its handler decides how long it takes
        else:
            deadline = self._last + self._idle_timeout
        with trio.move_on_at(deadline):
            try:
                frame = await self._frames.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                if self._gone:
                    raise TransportError(f"nats: client {self.remote_address} went away") from None
                raise trio.EndOfChannel from None
            self._last = trio.current_time()
            self._unanswered = True
            if isinstance(frame, ProtocolError):
                raise frame
            if MICRO_STREAM in frame.header:
                self._streaming = True
            return frame
        raise trio.EndOfChannel  # idle: the socket's clean end

    async def send(self, msg: Message) -> None:
        if self._gone:
            raise TransportError(f"nats: client {self.remote_address} went away")
        try:
            await self._client.publish(self.remote_address, encode_frame(msg), reply=self._status_subject)
        except BrokerError as exc:
            raise TransportError(f"nats: cannot reply to {self.remote_address}: {exc}") from None
        except ValueError as exc:
            raise ProtocolError(f"nats: unsendable frame: {exc}", code=500) from None
        self._last = trio.current_time()
        self._unanswered = False

    async def _refuse_unread(self) -> None:
        """Answer frames the handler left unread with 503, so their callers retry elsewhere at once.

        Over TCP a server that stops (drains) or idles out closes the connection and the client sees
        it; over NATS a frame that reaches a socket whose handler has returned would otherwise wait
        for its caller's deadline."""
        self._send_frames.close()
        while not self._gone:
            try:
                frame = self._frames.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return
            if isinstance(frame, ProtocolError) or MICRO_ERROR in frame.header:
                continue
            header = {k: frame.header[k] for k in _ECHO if k in frame.header}
            header[MICRO_ERROR] = errors.service_unavailable(
                _SERVER_ID, "server is not taking requests"
            ).to_json()
            try:
                await self.send(Message(header, b""))
            except (TransportError, ProtocolError):
                return

    async def aclose(self) -> None:
        self._closed = True
        self._send_frames.close()
        await trio.lowlevel.checkpoint()


@attrs.define(eq=False)
class NatsListener:
    """Serves one subject; ``serve`` runs one handler task per client inbox until cancelled.

    ``serve`` uses the transport's connection when the transport is open (a Service opens it), else it
    opens one of its own, as Go's listener does. ``aclose`` stops taking new sockets; ``serve`` then
    returns once the running handlers finish.
    """

    address: str
    _transport: NatsTransport
    _sockets: dict[str, NatsServerSocket] = attrs.field(factory=dict, init=False)
    _status: dict[str, NatsServerSocket] = attrs.field(factory=dict, init=False)
    _sub: NatsSubscription | None = attrs.field(default=None, init=False)
    _stopped: bool = attrs.field(default=False, init=False)
    accepted: int = attrs.field(default=0, init=False)

    @property
    def open_connections(self) -> int:
        return len(self._sockets)

    async def serve(
        self,
        handler: Callable[[NatsServerSocket], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        t = self._transport
        async with t._connection() as nc:
            await self._serve(nc, handler, task_status)

    async def _serve(
        self,
        nc: NatsClient,
        handler: Callable[[NatsServerSocket], Awaitable[None]],
        task_status: trio.TaskStatus[Any],
    ) -> None:
        status_prefix = _new_inbox()
        try:
            sub = await nc.subscribe(self.address)
            status = await nc.subscribe(status_prefix + ".*")
        except (BrokerError, ValueError) as exc:
            raise TransportError(f"nats: cannot listen on {self.address!r}: {exc}") from None
        try:
            try:
                with trio.fail_after(self._transport.connect_timeout):
                    await nc.flush()
            except (BrokerError, trio.TooSlowError) as exc:
                raise TransportError(f"nats: cannot listen on {self.address!r}: {exc!r}") from None
            self._sub = sub
            if self._stopped:
                await sub.unsubscribe()
            async with trio.open_nursery() as outer:
                outer.start_soon(self._statuses, status)
                task_status.started(self.address)
                async with trio.open_nursery() as nursery:
                    n = 0
                    async for msg in sub:
                        if not msg.reply:
                            log.debug(
                                "nats transport: frame on %s without reply subject dropped", self.address
                            )
                            continue
                        try:
                            frame: Message | ProtocolError = decode_frame(msg.payload)
                        except ProtocolError as exc:
                            frame = exc
                        sock = self._sockets.get(msg.reply)
                        if sock is None:
                            if isinstance(frame, Message) and MICRO_ERROR in frame.header:
                                # An end-of-stream (or error) frame cannot open a conversation: it is
                                # the tail of one already over. Go's client sends its EOS after the
                                # server's stream has ended; it must not start a ghost stream.
                                continue
                            n += 1
                            sock = self._open(nc, msg.reply, f"{status_prefix}.{n}")
                            nursery.start_soon(self._run, handler, sock)
                        sock._deliver(frame)
                outer.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await sub.unsubscribe()
                await status.unsubscribe()

    def _open(self, nc: NatsClient, reply: str, status_subject: str) -> NatsServerSocket:
        send, receive = trio.open_memory_channel[Message | ProtocolError](self._transport.max_pending)
        sock = NatsServerSocket(
            nc, self.address, reply, status_subject, self._transport.idle_timeout, send, receive
        )
        self._sockets[reply] = sock
        self._status[status_subject] = sock
        self.accepted += 1
        return sock

    async def _run(
        self, handler: Callable[[NatsServerSocket], Awaitable[None]], sock: NatsServerSocket
    ) -> None:
        try:
            await handler(sock)
        except (TransportError, trio.EndOfChannel) as exc:
            log.debug("nats socket %s ended: %r", sock.remote_address, exc)
        except Exception:
            log.exception("connection handler for %s failed", sock.remote_address)
        finally:
            if self._sockets.get(sock.remote_address) is sock:
                del self._sockets[sock.remote_address]
            self._status.pop(sock._status_subject, None)
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                await sock._refuse_unread()
            await sock.aclose()

    async def _statuses(self, sub: NatsSubscription) -> None:
        async for msg in sub:
            if _is_no_responders(msg):
                sock = self._status.get(msg.subject)
                if sock is not None:
                    log.debug("nats transport: client %s is gone", sock.remote_address)
                    sock._peer_gone()

    async def aclose(self) -> None:
        """Stop taking frames for new sockets (and, NATS being one subject, for running ones too)."""
        self._stopped = True
        if self._sub is not None:
            await self._sub.unsubscribe()
        else:
            await trio.lowlevel.checkpoint()


@attrs.define(eq=False)
class NatsTransport(NurseryOwner):
    """The ``nats`` transport. ``async with transport:`` opens the connection ``dial`` and listeners
    use (a Service does this itself); a listener served outside it opens its own."""

    servers: Sequence[str] = attrs.field(default=(), converter=nats_servers)
    idle_timeout: float = 60.0
    max_pending: int = 1024
    connect_timeout: float = 5.0
    connect_attempts: int = 4
    client_options: dict[str, Any] = attrs.field(factory=dict)
    name: str = attrs.field(default="nats", init=False)
    _client: NatsClient | None = attrs.field(default=None, init=False, repr=False)

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        if self._client is not None:  # entered again: share the connection
            yield
            return
        async with open_nats(
            self.servers, error=TransportError, attempts=self.connect_attempts, **self.client_options
        ) as client:
            self._client = client
            try:
                yield
            finally:
                self._client = None

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[NatsClient]:
        """For a listener: the transport's connection when it is open (whose orderly close, after the
        server's, flushes the last replies), else one of the listener's own, as Go's listener has."""
        if self._client is not None:
            yield self._client
            return
        async with open_nats(
            self.servers, error=TransportError, attempts=self.connect_attempts, **self.client_options
        ) as client:
            yield client

    @property
    def client(self) -> NatsClient:
        if self._client is None:
            raise TransportError("nats transport used outside `async with transport:`")
        return self._client

    async def listen(self, address: str, **_: Any) -> NatsListener:
        """A listener on subject ``address``; ``host:0`` / ``:0`` / empty picks a fresh inbox (Go's habit)."""
        await trio.lowlevel.checkpoint()
        subject = address.strip()
        if not subject or subject.endswith(":0"):
            subject = _new_inbox()
        try:
            validate_subject(subject)
        except ValueError as exc:
            raise TransportError(f"nats transport: cannot listen on {address!r}: {exc}") from None
        return NatsListener(subject, self)

    async def dial(self, address: str, *, timeout: float | None = None) -> NatsClientSocket:
        """A socket to the server on subject ``address`` (no round trip: NATS has no connection to set
        up; a subject nobody serves shows at the first ``receive``)."""
        client = self.client
        try:
            validate_subject(address)
        except ValueError as exc:
            raise TransportError(f"nats transport: cannot dial {address!r}: {exc}") from None
        inbox = _new_inbox()
        try:
            sub = await client.subscribe(inbox)
        except BrokerError as exc:
            raise TransportError(f"nats transport: dial {address}: {exc}") from None
        return NatsClientSocket(client, sub, inbox, address)


def from_options(options: Options) -> NatsTransport:
    """Transport plugin ``nats``: ``--transport_address`` (default ``127.0.0.1:4222``)."""
    return NatsTransport(servers=list(options.transport_address))
