"""A real etcd server as a trio child process, for loopback tests.

``async with open_etcd() as etcd:`` starts ``etcd`` on free 127.0.0.1 ports with a fresh data dir and
yields an :class:`EtcdProcess` once ``/health`` answers; on exit the process is terminated (SIGTERM, then
SIGKILL after a bound) and the data dir removed. ``stop()`` / ``start()`` restart it on the same ports and
data dir so tests can simulate a registry outage; ``wipe()`` (while stopped) simulates losing the cluster.
"""

from __future__ import annotations

import os
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

from ._process import ChildProcess, free_port

__all__ = [
    "EtcdNotFound",
    "EtcdProcess",
    "EtcdStartError",
    "find_etcd",
    "open_etcd",
    "open_etcd_cluster",
    "run_etcd",
]

_START_TIMEOUT = 15.0


class EtcdNotFound(RuntimeError):
    """No ``etcd`` binary on this machine (tests skip on it)."""


class EtcdStartError(RuntimeError):
    """etcd exited or did not become healthy; the message carries the tail of its log."""


def find_etcd() -> str:
    """Path of the etcd binary (``$ETCD_BINARY``, ``PATH``, ``/usr/bin/etcd``) or :class:`EtcdNotFound`."""
    for candidate in (os.environ.get("ETCD_BINARY"), shutil.which("etcd"), "/usr/bin/etcd"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise EtcdNotFound("etcd binary not found (set ETCD_BINARY or install etcd-server)")


async def _healthy(port: int, ssl_context: ssl.SSLContext | None) -> bool:
    """One ``GET /health`` over a fresh connection: True iff etcd answers ``"health":"true"``."""
    try:
        stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return False
    if ssl_context is not None:
        stream = trio.SSLStream(stream, ssl_context, server_hostname="127.0.0.1")
    async with stream:
        try:
            await stream.send_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while chunk := await stream.receive_some(4096):
                data += chunk
        except (OSError, trio.BrokenResourceError, ssl.SSLError):
            return False
    return b'"health":"true"' in data


@attrs.define(eq=False)
class EtcdProcess:
    """One etcd member on loopback; a resource owned by the nursery that :func:`open_etcd` opened."""

    binary: str
    data_dir: Path
    client_port: int
    peer_port: int
    _nursery: trio.Nursery
    name: str = "t"
    cert_file: str | None = None  # serve clients over TLS with this certificate (and key_file)
    key_file: str | None = None
    initial_cluster: str = ""  # ``name=peer-url,...`` of every member (open_etcd_cluster); "" alone
    _proc: ChildProcess = attrs.field(factory=ChildProcess, init=False)

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``, the form ``registry_address`` takes."""
        return f"127.0.0.1:{self.client_port}"

    @property
    def url(self) -> str:
        scheme = "https" if self.cert_file else "http"
        return f"{scheme}://{self.endpoint}"

    @property
    def running(self) -> bool:
        return self._proc.running

    @property
    def log(self) -> str:
        """The tail of etcd's stderr (for failure messages)."""
        return self._proc.log

    def command(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [
            self.binary,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.url,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", self.initial_cluster or f"{self.name}={peer}",
            # Loopback only: short raft timers make startup, elections and leases fast.
            "--heartbeat-interval", "10" if not self.initial_cluster else "20",
            "--election-timeout", "100" if not self.initial_cluster else "200",
            "--logger", "zap",
            "--log-level", "warn",
        ] + (
            ["--cert-file", self.cert_file, "--key-file", self.key_file or self.cert_file]
            if self.cert_file
            else []
        )  # fmt: skip

    async def start(self) -> None:
        """Start etcd (again) and return once it answers ``/health``; EtcdStartError if it cannot."""
        if self.running:
            return
        await self._proc.spawn(self._nursery, self.command())
        ctx = ssl.create_default_context(cafile=self.cert_file) if self.cert_file else None
        with trio.move_on_after(_START_TIMEOUT):
            while self.running:
                if await _healthy(self.client_port, ctx):
                    return
                await trio.sleep(0.02)  # polling an external process: nothing to wait on instead
        await self.stop()
        raise EtcdStartError(f"etcd on {self.endpoint} did not become healthy:\n{self.log[-4000:]}")

    async def stop(self) -> None:
        """Stop etcd (SIGTERM, SIGKILL after a bound) and wait until it has exited. Data are kept."""
        await self._proc.stop()

    def wipe(self) -> None:
        """Empty the data dir (only while stopped): the next start is a brand-new cluster."""
        if self.running:
            raise RuntimeError("stop etcd before wiping its data dir")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


@asynccontextmanager
async def open_etcd(
    *, attempts: int = 3, cert_file: str | None = None, key_file: str | None = None
) -> AsyncIterator[EtcdProcess]:
    """Start a fresh etcd on free loopback ports; stop it and remove its data dir on exit.

    With ``cert_file``/``key_file`` (PEM) etcd serves clients over TLS (``url`` is ``https://...``).

    Ports are picked by binding port 0 and releasing it, so another process can grab one first; a failed
    start is retried on new ports up to ``attempts`` times. EtcdNotFound if there is no binary.
    """
    binary = find_etcd()
    data_dir = Path(tempfile.mkdtemp(prefix="trimicro-etcd-"))
    try:
        async with trio.open_nursery() as nursery:
            for attempt in range(attempts):
                etcd = EtcdProcess(
                    binary,
                    data_dir / "data",
                    free_port(),
                    free_port(),
                    nursery,
                    cert_file=cert_file,
                    key_file=key_file,
                )
                etcd.wipe()
                try:
                    await etcd.start()
                except EtcdStartError:
                    if attempt + 1 == attempts:
                        raise
                    continue
                try:
                    yield etcd
                finally:
                    await etcd.stop()
                break
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@asynccontextmanager
async def open_etcd_cluster(members: int = 3) -> AsyncIterator[list[EtcdProcess]]:
    """A ``members``-member etcd cluster on free loopback ports (fresh data dirs, removed on exit).

    The members start together (a new cluster needs a quorum before any answers ``/health``); each
    can then be stopped and started on its own to simulate losing a member. ``registry_address``
    takes ``",".join(m.endpoint for m in members)``.
    """
    binary = find_etcd()
    data_dir = Path(tempfile.mkdtemp(prefix="trimicro-etcd-cluster-"))
    try:
        async with trio.open_nursery() as nursery:
            ports = [(free_port(), free_port()) for _ in range(members)]
            initial = ",".join(f"m{i}=http://127.0.0.1:{peer}" for i, (_, peer) in enumerate(ports))
            cluster = [
                EtcdProcess(
                    binary, data_dir / f"m{i}", client, peer, nursery, name=f"m{i}", initial_cluster=initial
                )
                for i, (client, peer) in enumerate(ports)
            ]
            for member in cluster:
                member.wipe()
            try:
                async with trio.open_nursery() as starting:
                    for member in cluster:
                        starting.start_soon(member.start)
                yield cluster
            finally:
                with trio.CancelScope(shield=True):
                    for member in cluster:
                        await member.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def run_etcd(*, task_status: trio.TaskStatus[EtcdProcess] = trio.TASK_STATUS_IGNORED) -> None:
    """``await nursery.start(run_etcd)`` form: runs etcd until cancelled, reporting the process."""
    async with open_etcd() as etcd:
        task_status.started(etcd)
        await trio.sleep_forever()
