"""The Transport contract: framed messages over connections (Go Micro's ``transport.Transport``).

A :class:`Message` is one frame: headers plus an opaque body. Over mucp/HTTP/1.1 a client frame is an
HTTP request and a server frame an HTTP ``200 OK`` response (wire/mucp.md). Header names are kept in
canonical MIME form (``Micro-Endpoint``, ``Content-Type``); use :func:`canonical` on input (it and
the header names live in trimicro/_metadata.py).

- ``Transport.listen(address)`` binds and returns a :class:`Listener`; ``await listener.serve(handler)``
  runs one task per connection (``handler(socket)``) until cancelled, closing each socket afterwards.
- ``Transport.dial(address)`` connects and returns a client :class:`Socket`.
- ``Socket.receive()`` returns the next frame, raises ``trio.EndOfChannel`` when the peer closed cleanly
  *between* frames, :class:`~trimicro.errors.ProtocolError` on malformed or oversized input (carrying an
  HTTP-style ``code``), and :class:`~trimicro.errors.TransportError` when the connection dies.
- ``Socket.send(msg)`` writes one frame; raises :class:`TransportError` if the connection is gone.

**One port, two protocols.** ``Transport.listen(address, h2_handler=handler)`` also serves HTTP/2 on
the same port: a connection that opens with the HTTP/2 client preface (h2c, prior knowledge), or
negotiates ALPN ``h2`` under TLS, is handed to ``await handler(stream, initial_bytes)`` (the raw
trio stream and the bytes already read from it, the preface included) instead of becoming a
:class:`Socket`; everything else is mucp as usual. The server uses it to answer gRPC and mucp on
one address (Go Micro's servers each want a port of their own). A transport that cannot tell the
protocols apart raises :class:`~trimicro.errors.TransportError` when given an ``h2_handler``;
without one, ``listen`` serves its own protocol only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
import trio

__all__ = ["H2Handler", "Listener", "Message", "Socket", "Transport"]


@attrs.define(slots=True)
class Message:
    """One frame: canonical header names -> values, and the body bytes."""

    header: dict[str, str] = attrs.field(factory=dict)
    body: bytes = b""


#: what a socket's optional ``try_send(msg)`` did: a non-blocking write of one frame from the caller
#: (``HttpSocket``, ``GrpcSocket``); after ``PARTIAL`` the rest is kept and written first by the
#: socket's ``flush()`` or next send. Streams use it to skip their writer task (trimicro/stream.py).
NOT_SENT, SENT, PARTIAL = 0, 1, 2


class Socket(Protocol):
    """One connection carrying frames each way."""

    local_address: str
    remote_address: str

    async def send(self, msg: Message) -> None: ...

    async def receive(self) -> Message: ...

    async def aclose(self) -> None: ...


class Listener(Protocol):
    """A bound server socket. ``address`` is the real ``host:port`` (port 0 resolved)."""

    address: str

    async def serve(
        self,
        handler: Callable[[Socket], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None: ...

    async def aclose(self) -> None: ...


H2Handler = Callable[[trio.abc.Stream, bytes], Awaitable[None]]
"""``await h2_handler(stream, initial_bytes)``: serve one HTTP/2 connection whose first bytes were
already read; the transport closes the stream afterwards (see "One port" above)."""


class Transport(Protocol):
    """Creates listeners and dials connections for one wire protocol."""

    name: str

    async def listen(self, address: str, *, h2_handler: H2Handler | None = None) -> Listener:
        """Bind ``address``; with ``h2_handler``, HTTP/2 connections on the port go to it."""
        ...

    async def dial(self, address: str, *, timeout: float | None = None) -> Socket: ...
