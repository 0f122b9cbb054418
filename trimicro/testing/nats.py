"""A real nats-server as a trio child process, for loopback tests.

``async with open_nats_server() as nats:`` starts ``nats-server -a 127.0.0.1 -p PORT`` (no cluster, no
monitoring port) on a free loopback port and yields a :class:`NatsServerProcess` once the server logs
that it is ready; on exit the process is terminated (SIGTERM, SIGKILL after a bound). ``stop()`` /
``start()`` restart it on the same port so tests can simulate a broker outage.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

__all__ = [
    "NatsServerNotFound",
    "NatsServerProcess",
    "NatsStartError",
    "find_nats_server",
    "open_nats_server",
]

_STOP_GRACE = 5.0
_START_TIMEOUT = 10.0
_LOG_KEEP = 64 * 1024
_READY = b"Server is ready"


class NatsServerNotFound(RuntimeError):
    """No ``nats-server`` binary on this machine (tests skip on it)."""


class NatsStartError(RuntimeError):
    """nats-server exited or never became ready; the message carries the tail of its log."""


def find_nats_server() -> str:
    """Path of nats-server (``$NATS_SERVER_BINARY``, ``PATH``, ``/usr/sbin/nats-server``)."""
    for candidate in (
        os.environ.get("NATS_SERVER_BINARY"),
        shutil.which("nats-server"),
        "/usr/sbin/nats-server",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise NatsServerNotFound("nats-server binary not found (set NATS_SERVER_BINARY)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@attrs.define(eq=False)
class NatsServerProcess:
    """One nats-server on 127.0.0.1, owned by the nursery that :func:`open_nats_server` opened."""

    binary: str
    port: int
    _nursery: trio.Nursery
    _scope: trio.CancelScope | None = attrs.field(default=None, init=False)
    _done: trio.Event | None = attrs.field(default=None, init=False)
    _ready: trio.Event | None = attrs.field(default=None, init=False)
    _is_ready: bool = attrs.field(default=False, init=False)
    _log: bytearray = attrs.field(factory=bytearray, init=False)

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the form ``broker_address`` takes."""
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._done is not None and not self._done.is_set()

    @property
    def log(self) -> str:
        return self._log.decode("utf-8", "replace")

    def command(self) -> list[str]:
        return [self.binary, "-a", "127.0.0.1", "-p", str(self.port)]

    async def start(self) -> None:
        """Start (again, same port) and return once the server is ready; NatsStartError if not."""
        if self.running:
            return
        self._log.clear()
        self._is_ready = False
        ready = self._ready = trio.Event()
        await self._nursery.start(self._run)
        with trio.move_on_after(_START_TIMEOUT):
            await ready.wait()  # set by the log drain on "Server is ready", or by _run on exit
        if self._is_ready and self.running:
            return
        await self.stop()
        raise NatsStartError(f"nats-server on {self.address} did not become ready:\n{self.log[-4000:]}")

    async def stop(self) -> None:
        """Stop the server and wait until it has exited."""
        if self._scope is not None:
            self._scope.cancel()
        if self._done is not None:
            await self._done.wait()

    async def _run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        done = self._done = trio.Event()
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                proc = await trio.lowlevel.open_process(
                    self.command(),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._drain, proc)
                        task_status.started()
                        await proc.wait()
                finally:
                    with trio.CancelScope(shield=True):
                        await _terminate(proc)
        finally:
            self._scope = None
            done.set()
            if self._ready is not None:
                self._ready.set()

    async def _drain(self, proc: trio.Process) -> None:
        assert proc.stderr is not None
        async with proc.stderr:
            async for chunk in proc.stderr:
                self._log += chunk
                if not self._is_ready and _READY in self._log:
                    self._is_ready = True
                    if self._ready is not None:
                        self._ready.set()
                del self._log[:-_LOG_KEEP]


async def _terminate(proc: trio.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        with trio.move_on_after(_STOP_GRACE):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@asynccontextmanager
async def open_nats_server(*, attempts: int = 3) -> AsyncIterator[NatsServerProcess]:
    """Start nats-server on a free 127.0.0.1 port; terminate it on exit.

    The port is picked by binding port 0 and releasing it; if another process grabs it first the start
    fails and is retried on a new port, up to ``attempts`` times.
    """
    binary = find_nats_server()
    async with trio.open_nursery() as nursery:
        for attempt in range(attempts):
            server = NatsServerProcess(binary, _free_port(), nursery)
            try:
                await server.start()
                break
            except NatsStartError:
                if attempt == attempts - 1:
                    raise
        try:
            yield server
        finally:
            await server.stop()
