"""A real nats-server as a trio child process, for loopback tests.

``async with open_nats_server() as nats:`` starts ``nats-server -a 127.0.0.1 -p PORT`` (no cluster, no
monitoring port) on a free loopback port and yields a :class:`NatsServerProcess` once the server logs
that it is ready; on exit the process is terminated (SIGTERM, SIGKILL after a bound). ``stop()`` /
``start()`` restart it on the same port so tests can simulate a broker outage.
``open_nats_server(jetstream=True)`` adds ``-js`` with a private store directory (kept across
restarts, removed on exit).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from ._process import ChildProcess, free_port

__all__ = [
    "NatsServerNotFound",
    "NatsServerProcess",
    "NatsStartError",
    "find_nats_server",
    "open_nats_server",
]

_START_TIMEOUT = 10.0
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


@attrs.define(eq=False)
class NatsServerProcess:
    """One nats-server on 127.0.0.1, owned by the nursery that :func:`open_nats_server` opened."""

    binary: str
    port: int
    _nursery: trio.Nursery
    store_dir: str | None = None  # JetStream store (``-js -sd``) when set
    _proc: ChildProcess = attrs.field(factory=ChildProcess, init=False)
    _ready: trio.Event | None = attrs.field(default=None, init=False)
    _is_ready: bool = attrs.field(default=False, init=False)

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the form ``broker_address`` takes."""
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc.running

    @property
    def log(self) -> str:
        return self._proc.log

    def command(self) -> list[str]:
        command = [self.binary, "-a", "127.0.0.1", "-p", str(self.port)]
        if self.store_dir is not None:
            command += ["-js", "-sd", self.store_dir]
        return command

    async def start(self) -> None:
        """Start (again, same port) and return once the server is ready; NatsStartError if not."""
        if self.running:
            return
        self._is_ready = False
        ready = self._ready = trio.Event()
        await self._proc.spawn(
            self._nursery, self.command(), on_output=self._on_output, on_exit=self._on_exit
        )
        with trio.move_on_after(_START_TIMEOUT):
            await ready.wait()  # set on "Server is ready" in the log, or when the process exits
        if self._is_ready and self.running:
            return
        await self.stop()
        raise NatsStartError(f"nats-server on {self.address} did not become ready:\n{self.log[-4000:]}")

    async def stop(self) -> None:
        """Stop the server and wait until it has exited."""
        await self._proc.stop()

    def _on_output(self, log: bytearray) -> None:
        if not self._is_ready and _READY in log:
            self._is_ready = True
            if self._ready is not None:
                self._ready.set()

    def _on_exit(self) -> None:
        if self._ready is not None:
            self._ready.set()


@asynccontextmanager
async def open_nats_server(*, attempts: int = 3, jetstream: bool = False) -> AsyncIterator[NatsServerProcess]:
    """Start nats-server on a free 127.0.0.1 port; terminate it on exit.

    The port is picked by binding port 0 and releasing it; if another process grabs it first the start
    fails and is retried on a new port, up to ``attempts`` times.
    """
    binary = find_nats_server()
    with tempfile.TemporaryDirectory(prefix="trimicro-nats-js-") as store:
        async with _nats_server(binary, attempts, store if jetstream else None) as server:
            yield server


@asynccontextmanager
async def _nats_server(binary: str, attempts: int, store_dir: str | None) -> AsyncIterator[NatsServerProcess]:
    async with trio.open_nursery() as nursery:
        for attempt in range(attempts):
            server = NatsServerProcess(binary, free_port(), nursery, store_dir)
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
