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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
import trio

__all__ = ["Listener", "Message", "Socket", "Transport"]


@attrs.define(slots=True)
class Message:
    """One frame: canonical header names -> values, and the body bytes."""

    header: dict[str, str] = attrs.field(factory=dict)
    body: bytes = b""


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


class Transport(Protocol):
    """Creates listeners and dials connections for one wire protocol."""

    name: str

    async def listen(self, address: str) -> Listener: ...

    async def dial(self, address: str, *, timeout: float | None = None) -> Socket: ...
