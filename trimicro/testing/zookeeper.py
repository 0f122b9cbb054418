"""A real ZooKeeper server as a trio child process, for loopback tests.

``async with open_zookeeper() as zk:`` runs Debian's ZooKeeper (``java`` with the jars of the
``zookeeper`` package) standalone on a free 127.0.0.1 port with a generated ``zoo.cfg`` and a fresh
data dir, and yields a :class:`ZookeeperProcess` once it answers a ZooKeeper handshake; on exit the
process is stopped and the directory removed. ``stop()`` / ``start()`` restart it on the same port and
data dir (sessions and nodes persist in its transaction log), so tests can simulate an outage.
``open_ensemble(3)`` runs a whole ensemble on loopback (quorum and election ports on 127.0.0.1).

The config keeps it local and quick: clientPortAddress=127.0.0.1, admin server off, four-letter words
off, ``tickTime`` 100 ms so sessions can be as short as 0.2 s (``minSessionTimeout``) and as long as
``maxSessionTimeout`` (default 10 s).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

from ._process import ChildProcess, free_port

__all__ = [
    "ZookeeperNotFound",
    "ZookeeperProcess",
    "ZookeeperStartError",
    "find_zookeeper",
    "open_ensemble",
    "open_zookeeper",
]

_START_TIMEOUT = 30.0  # a cold JVM on a loaded 2-core machine can take several seconds
_JAR_DIRS = ("/usr/share/java", "/usr/share/zookeeper")
MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"  # standalone too, when no server.N lines


class ZookeeperNotFound(RuntimeError):
    """No java or no ZooKeeper jar on this machine (tests skip on it)."""


class ZookeeperStartError(RuntimeError):
    """ZooKeeper exited or did not answer; the message carries the tail of its log."""


def find_zookeeper() -> tuple[str, str]:
    """``(java, classpath)``: ``$ZOOKEEPER_CLASSPATH`` or Debian's ``/usr/share/java/zookeeper.jar``.

    Debian's jar names its dependencies in its manifest ``Class-Path``, so the one jar is enough.
    """
    java = os.environ.get("JAVA") or shutil.which("java") or "/usr/bin/java"
    if not os.access(java, os.X_OK):
        raise ZookeeperNotFound("java not found (install the zookeeper package, which depends on it)")
    classpath = os.environ.get("ZOOKEEPER_CLASSPATH", "")
    if not classpath:
        for folder in _JAR_DIRS:
            jar = Path(folder) / "zookeeper.jar"
            if jar.is_file():
                classpath = str(jar)
                break
    if not classpath:
        raise ZookeeperNotFound(
            "zookeeper.jar not found (apt-get install zookeeper, or set ZOOKEEPER_CLASSPATH)"
        )
    return java, classpath


async def _answers(port: int) -> bool:
    """True iff a ZooKeeper on ``port`` answers a ConnectRequest (then the probe session is closed)."""
    from ..registry import zookeeper_answers

    return await zookeeper_answers("127.0.0.1", port)


@attrs.define(eq=False)
class ZookeeperProcess:
    """One standalone ZooKeeper on loopback; a resource owned by the nursery :func:`open_zookeeper` opened."""

    java: str
    classpath: str
    directory: Path
    port: int
    _nursery: trio.Nursery
    tick_ms: int = 100
    max_session_timeout_ms: int = 10_000
    myid: int = 0  # with ``ensemble``: this server's id in it
    ensemble: tuple[tuple[int, int, int], ...] = ()  # (id, quorum port, election port) of every member
    _proc: ChildProcess = attrs.field(factory=ChildProcess, init=False)

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``, the form ``registry_address`` takes."""
        return f"127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def config_file(self) -> Path:
        return self.directory / "zoo.cfg"

    @property
    def running(self) -> bool:
        return self._proc.running

    @property
    def log(self) -> str:
        return self._proc.log

    def write_config(self) -> Path:
        config = self.config_file
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config.write_text(
            "\n".join(
                [
                    f"tickTime={self.tick_ms}",
                    f"dataDir={self.data_dir}",
                    "clientPortAddress=127.0.0.1",
                    f"clientPort={self.port}",
                    "admin.enableServer=false",
                    "4lw.commands.whitelist=",
                    f"minSessionTimeout={2 * self.tick_ms}",
                    f"maxSessionTimeout={self.max_session_timeout_ms}",
                    "maxClientCnxns=200",
                    "snapCount=100000",
                    "autopurge.purgeInterval=0",
                    *(["initLimit=100", "syncLimit=50"] if self.ensemble else []),
                    *(f"server.{i}=127.0.0.1:{q}:{e}" for i, q, e in self.ensemble),
                    "",
                ]
            )
        )
        if self.ensemble:
            (self.data_dir / "myid").write_text(f"{self.myid}\n")
        return config

    def command(self) -> list[str]:
        return [
            self.java,
            "-Xmx128m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",  # quicker start-up; the tests are not about server throughput
            "-Dzookeeper.jmx.log4j.disable=true",
            "-Dzookeeper.admin.enableServer=false",
            "-cp",
            self.classpath,
            MAIN,
            str(self.write_config()),
        ]

    async def start(self) -> None:
        """Start ZooKeeper (again) and return once it answers; ZookeeperStartError if it cannot."""
        await self.spawn()
        await self.wait_ready()

    async def spawn(self) -> None:
        """Start the process without waiting (an ensemble member answers only once a quorum is up)."""
        if not self.running:
            await self._proc.spawn(self._nursery, self.command())

    async def wait_ready(self) -> None:
        with trio.move_on_after(_START_TIMEOUT):
            while self.running:
                if await _answers(self.port):
                    return
                await trio.sleep(0.05)  # polling an external process: nothing to wait on instead
        await self.stop()
        raise ZookeeperStartError(f"zookeeper on {self.endpoint} did not answer:\n{self.log[-4000:]}")

    async def stop(self) -> None:
        """Stop ZooKeeper (SIGTERM, SIGKILL after a bound) and wait until it has exited. Data are kept."""
        await self._proc.stop()

    def wipe(self) -> None:
        """Empty the data dir (only while stopped): the next start is a brand-new ensemble."""
        if self.running:
            raise RuntimeError("stop zookeeper before wiping its data dir")
        shutil.rmtree(self.data_dir, ignore_errors=True)


@asynccontextmanager
async def open_zookeeper(
    *, attempts: int = 3, tick_ms: int = 100, port: int | None = None
) -> AsyncIterator[ZookeeperProcess]:
    """Start a fresh ZooKeeper on a free loopback port; stop it and remove its files on exit.

    A port taken by someone else between picking and binding makes the start fail; it is retried on a
    new port up to ``attempts`` times (once, when ``port`` fixes it). ZookeeperNotFound if java or the
    jar is missing.
    """
    if port is not None:
        attempts = 1
    java, classpath = find_zookeeper()
    directory = Path(tempfile.mkdtemp(prefix="trimicro-zk-"))
    try:
        async with trio.open_nursery() as nursery:
            for attempt in range(attempts):
                zk = ZookeeperProcess(java, classpath, directory, port or free_port(), nursery, tick_ms=tick_ms)
                zk.wipe()
                try:
                    await zk.start()
                except ZookeeperStartError:
                    if attempt + 1 == attempts:
                        raise
                    continue
                try:
                    yield zk
                finally:
                    await zk.stop()
                break
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@asynccontextmanager
async def open_ensemble(size: int = 3, *, tick_ms: int = 100) -> AsyncIterator[list[ZookeeperProcess]]:
    """Start a ``size``-server ZooKeeper ensemble on loopback (quorum and election ports on 127.0.0.1).

    Yields once every member answers. Stopping fewer than half of them leaves a working ensemble that
    keeps every session: what a client failing over between servers relies on.
    """
    java, classpath = find_zookeeper()
    directory = Path(tempfile.mkdtemp(prefix="trimicro-zk-ensemble-"))
    try:
        async with trio.open_nursery() as nursery:
            members = tuple((i + 1, free_port(), free_port()) for i in range(size))
            servers = [
                ZookeeperProcess(
                    java, classpath, directory / f"s{myid}", free_port(), nursery, tick_ms=tick_ms,
                    myid=myid, ensemble=members,
                )
                for myid, _, _ in members
            ]  # fmt: skip
            try:
                for server in servers:
                    await server.spawn()
                for server in servers:
                    await server.wait_ready()
                yield servers
            finally:
                with trio.CancelScope(shield=True):
                    for server in servers:
                        await server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
