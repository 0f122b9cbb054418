"""Idle-connection pool per address: Go Micro's default is 100 idle per address, one minute TTL."""

from __future__ import annotations

from collections import deque

import attrs
import trio

from ..transport import Socket, Transport

__all__ = ["Pool"]


@attrs.define(eq=False)
class Pool:
    """Reuses unary connections. A connection is checked out for exactly one call at a time."""

    transport: Transport
    size: int = 100
    ttl: float = 60.0
    _idle: dict[str, deque[tuple[float, Socket]]] = attrs.field(factory=dict, init=False)
    dialed: int = attrs.field(default=0, init=False)

    async def get(self, address: str, *, timeout: float | None = None) -> tuple[Socket, bool]:
        """A connection to ``address`` and whether it came from the pool (may be stale)."""
        idle = self._idle.get(address)
        now = trio.current_time()
        while idle:
            created, sock = idle.pop()
            if now - created < self.ttl:
                return sock, True
            await _close(sock)
        self.dialed += 1
        return await self.transport.dial(address, timeout=timeout), False

    async def put(self, address: str, sock: Socket, created: float | None = None) -> None:
        idle = self._idle.setdefault(address, deque())
        if len(idle) >= self.size:
            await _close(sock)
            return
        idle.append((trio.current_time() if created is None else created, sock))

    async def discard(self, sock: Socket) -> None:
        await _close(sock)

    @property
    def idle_count(self) -> int:
        return sum(len(d) for d in self._idle.values())

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for _, sock in conns:
                await _close(sock)


async def _close(sock: Socket) -> None:
    with trio.CancelScope(shield=True):
        try:
            await sock.aclose()
        except Exception:
            pass
