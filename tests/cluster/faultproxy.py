"""A small fault-injecting TCP proxy on trio (no trimicro inside): put it between a client and a node
and switch what the network does, mid-test.

Modes (``proxy.set(mode, latency=...)``; from another process, lines ``mode <name> [seconds]`` on stdin
of ``python -m tests.cluster.faultproxy LISTEN_HOST:PORT UPSTREAM_HOST:PORT``):

- ``pass``: forward both ways;
- ``latency``: forward, each chunk held ``latency`` seconds (per direction, order kept);
- ``drop``: close connections (FIN): new ones at once, open ones on the switch;
- ``reset``: abort connections (RST, SO_LINGER 0): new ones at once, open ones on the switch;
- ``blackhole``: accept and read everything, forward and answer nothing (a partition in which
  the peer still looks alive — what a SIGSTOPped process or a dead middlebox looks like).

Only for loopback or for namespaces a test made (see netns.py): it connects where it is told to.
"""

from __future__ import annotations

import json
import math
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any, Literal

import attrs
import trio

__all__ = ["FaultProxy", "Mode"]

Mode = Literal["pass", "latency", "drop", "reset", "blackhole"]
MODES: tuple[Mode, ...] = ("pass", "latency", "drop", "reset", "blackhole")


def _abort(stream: trio.SocketStream) -> None:
    """Close with RST instead of FIN."""
    try:
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


@attrs.define(eq=False)
class _Conn:
    client: trio.SocketStream
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)


@attrs.define(eq=False)
class FaultProxy:
    """``await nursery.start(proxy.serve)`` returns the bound ``host:port``."""

    upstream: tuple[str, int]
    listen: tuple[str, int] = ("127.0.0.1", 0)
    mode: Mode = "pass"
    latency: float = 0.0
    connections: int = 0
    _conns: set[_Conn] = attrs.field(factory=set)

    def set(self, mode: Mode, *, latency: float | None = None) -> None:
        """Switch the fault; drop/reset also end the connections open now."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        if latency is not None:
            self.latency = latency
        if mode in ("drop", "reset"):
            for conn in list(self._conns):
                if mode == "reset":
                    _abort(conn.client)
                conn.scope.cancel()

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.listen[1], host=self.listen[0])
        host, port = listeners[0].socket.getsockname()[:2]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(f"{host}:{port}")

    async def _handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        conn = _Conn(client)
        self._conns.add(conn)
        try:
            with conn.scope:
                if self.mode in ("drop", "reset"):
                    if self.mode == "reset":
                        _abort(client)
                    return
                upstream: trio.SocketStream | None = None
                if self.mode != "blackhole":
                    try:
                        upstream = await trio.open_tcp_stream(*self.upstream)
                    except OSError:
                        _abort(client)
                        return
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._pipe, client, lambda: upstream, nursery.cancel_scope)
                        if upstream is not None:
                            nursery.start_soon(self._pipe, upstream, lambda: client, nursery.cancel_scope)
                finally:
                    if upstream is not None:
                        if self.mode == "reset":
                            _abort(upstream)
                        with trio.CancelScope(shield=True):
                            await upstream.aclose()
        finally:
            self._conns.discard(conn)
            with trio.CancelScope(shield=True):
                await client.aclose()

    async def _pipe(
        self, src: trio.SocketStream, dst: Callable[[], trio.SocketStream | None], done: trio.CancelScope
    ) -> None:
        """Copy src to dst as the mode says; chunks are delayed by a writer task so order is kept."""
        send, recv = trio.open_memory_channel[tuple[float, bytes]](math.inf)

        async def writer() -> None:
            async for due, chunk in recv:
                await trio.sleep_until(due)
                target = dst()
                if self.mode == "blackhole" or target is None:
                    continue  # swallowed
                try:
                    await target.send_all(chunk)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    done.cancel()
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            try:
                while chunk := await src.receive_some(65536):
                    delay = self.latency if self.mode == "latency" else 0.0
                    send.send_nowait((trio.current_time() + delay, chunk))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            send.close()
        if self.mode != "blackhole":
            done.cancel()  # one side ended: end the connection (a blackhole keeps it open, silent)


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def _main(argv: list[str]) -> None:
    proxy = FaultProxy(_addr(argv[1]), _addr(argv[0]))
    async with trio.open_nursery() as nursery:
        address = await nursery.start(proxy.serve)
        print(json.dumps({"event": "listening", "address": address}), flush=True)
        stdin = trio.lowlevel.FdStream(0)
        buf = b""
        while chunk := await stdin.receive_some(4096):
            buf += chunk
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                words: list[Any] = line.decode().split()
                if len(words) >= 2 and words[0] == "mode":
                    proxy.set(words[1], latency=float(words[2]) if len(words) > 2 else None)
                    print(json.dumps({"event": "mode", "mode": proxy.mode}), flush=True)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(_main, sys.argv[1:])
