"""A real Apache Kafka 4.x (KRaft, one node) as a trio child process, for loopback tests.

Kafka ships no Debian package, but its jars are on Maven Central, and Java and Maven are on the
developer and CI machines. So :func:`ensure_kafka` runs ``mvn dependency:copy-dependencies`` once on
a small generated pom (``kafka_2.13`` + ``kafka-server`` + an slf4j binding for log4j2) into a cache
directory outside the repository (``$TRIMICRO_KAFKA_CACHE``, default ``~/.cache/trimicro-kafka``);
later runs find the jars there (about 45 MB; the fetch takes ~15 s). ``scripts/test.sh`` runs the same
step (``python3 -m trimicro.testing kafka --fetch``) so the test run itself does not pay for it.

``async with open_kafka() as kafka:`` formats a fresh data dir (``kafka.tools.StorageTool format
--standalone``: a single-voter KRaft quorum), starts ``kafka.Kafka`` as broker *and* controller with
both listeners on free 127.0.0.1 ports, and yields a :class:`KafkaProcess` once Kafka logs that it has
started (~6 s on an idle machine). ``stop()``/``start()`` restart it on the same ports and data dir, so
tests can simulate a broker outage without losing what was committed.
"""

from __future__ import annotations

import base64
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

from ._process import ChildProcess, free_port

__all__ = [
    "KAFKA_VERSION",
    "KafkaNotFound",
    "KafkaProcess",
    "KafkaStartError",
    "ensure_kafka",
    "open_kafka",
]

KAFKA_VERSION = "4.1.1"
_LOG4J_VERSION = "2.24.3"  # the log4j2 that kafka 4.1.1 depends on; its slf4j 1.x binding
_FETCH_TIMEOUT = 300.0
_START_TIMEOUT = 90.0  # a JVM on a loaded 2-core machine is slow to start
_STARTED = b"Kafka Server started"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>trimicro.testing</groupId>
  <artifactId>kafka-server-classpath</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-server</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

# WARN and up to stderr (kept as the failure log), plus the one INFO line that says Kafka is up.
_LOG4J2 = """status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""


class KafkaNotFound(RuntimeError):
    """No Java or Maven, or the jars could not be fetched (tests skip on it)."""


class KafkaStartError(RuntimeError):
    """Kafka exited or did not start in time; the message carries the tail of its log."""


def cache_dir() -> Path:
    return Path(os.environ.get("TRIMICRO_KAFKA_CACHE") or Path.home() / ".cache" / "trimicro-kafka")


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise KafkaNotFound("java not found (Kafka's broker runs on the JVM; install a JDK >= 17)")
    return java


async def ensure_kafka(version: str = KAFKA_VERSION) -> Path:
    """The directory of Kafka's jars, fetched with Maven into the cache first if need be.

    The copy goes to a temporary sibling that is renamed into place when complete, so an interrupted
    fetch never leaves a half classpath behind. KafkaNotFound if java or mvn is missing or Maven fails.
    """
    _java()
    libs = cache_dir() / version / "libs"
    if (libs / ".complete").exists():
        return libs
    if version in _failed:  # a fetch failed already in this process: do not wait on Maven again
        raise KafkaNotFound(_failed[version])
    try:
        return await _fetch(version, libs)
    except KafkaNotFound as exc:
        _failed[version] = str(exc)
        raise


_failed: dict[str, str] = {}


async def _fetch(version: str, libs: Path) -> Path:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaNotFound("mvn not found (the Kafka jars are fetched from Maven Central with it)")
    libs.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fetch-", dir=libs.parent))
    try:
        (work / "pom.xml").write_text(_POM.format(kafka=version, log4j=_LOG4J_VERSION))
        command = [mvn, "-q", "-B", "-f", str(work / "pom.xml"), "dependency:copy-dependencies",
                   f"-DoutputDirectory={work / 'libs'}", "-DincludeScope=runtime"]  # fmt: skip
        with trio.move_on_after(_FETCH_TIMEOUT) as scope:
            result = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
        if scope.cancelled_caught:
            raise KafkaNotFound(f"fetching Kafka {version} with Maven took over {_FETCH_TIMEOUT:.0f} s")
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).decode("utf-8", "replace")[-3000:]
            raise KafkaNotFound(f"mvn could not fetch Kafka {version}:\n{tail}")
        (work / "libs" / ".complete").touch()
        shutil.rmtree(libs, ignore_errors=True)
        (work / "libs").rename(libs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return libs


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (what ``random-uuid`` prints).

    Never one starting with ``-`` (1 in 64 would): ``kafka-storage format -t -x...`` reads it as an
    option and fails, which is why Kafka's own ``Uuid.randomUuid`` draws again too."""
    while True:
        found = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not found.startswith("-"):
            return found


@attrs.define(eq=False)
class KafkaProcess:
    """One single-node Kafka (broker + KRaft controller) on loopback, owned by :func:`open_kafka`'s
    nursery."""

    libs: Path
    work_dir: Path
    port: int
    controller_port: int
    _nursery: trio.Nursery
    partitions: int = 4  # num.partitions: topics auto-created with enough partitions to split a queue
    _proc: ChildProcess = attrs.field(factory=ChildProcess, init=False)
    _started: trio.Event = attrs.field(factory=trio.Event, init=False)
    _up: bool = attrs.field(default=False, init=False)

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the form ``broker_address`` takes."""
        return f"127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.work_dir / "data"

    @property
    def running(self) -> bool:
        return self._proc.running

    @property
    def log(self) -> str:
        return self._proc.log

    def _properties(self) -> str:
        plain, controller = f"127.0.0.1:{self.port}", f"127.0.0.1:{self.controller_port}"
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": controller,
            "listeners": f"PLAINTEXT://{plain},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{plain},CONTROLLER://{controller}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": str(self.partitions),
            # One node: every internal topic has one replica, and one partition starts fastest.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",  # a test's first consumer joins at once
        }
        return "".join(f"{k}={v}\n" for k, v in settings.items())

    def _java_command(self, main: str, *args: str) -> list[str]:
        return [
            _java(), "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.work_dir / 'log4j2.properties'}",
            "-cp", f"{self.libs}/*", main, *args,
        ]  # fmt: skip

    async def format(self) -> None:
        """Write the config and format an empty data dir as a one-voter KRaft cluster."""
        (self.work_dir / "server.properties").write_text(self._properties())
        (self.work_dir / "log4j2.properties").write_text(_LOG4J2)
        shutil.rmtree(self.data_dir, ignore_errors=True)
        command = self._java_command("kafka.tools.StorageTool", "format", "--standalone",
                                     "-t", _cluster_id(), "-c", str(self.work_dir / "server.properties"))  # fmt: skip
        with trio.fail_after(_START_TIMEOUT):
            result = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
        if result.returncode != 0:
            out = (result.stdout + result.stderr).decode("utf-8", "replace")[-3000:]
            raise KafkaStartError(f"kafka-storage format failed:\n{out}")

    def _seen(self, log: bytearray) -> None:
        if not self._up and _STARTED in log:
            self._up = True
            self._started.set()

    async def start(self) -> None:
        """Start Kafka (again, on the same ports and data) and return once it says it has started."""
        if self.running:
            return
        self._started, self._up = trio.Event(), False
        started = self._started
        await self._proc.spawn(
            self._nursery,
            self._java_command("kafka.Kafka", str(self.work_dir / "server.properties")),
            on_output=self._seen,
            on_exit=started.set,
        )
        with trio.move_on_after(_START_TIMEOUT):
            await started.wait()
        if not (self.running and self._up):
            await self.stop()
            raise KafkaStartError(f"kafka on {self.address} did not start:\n{self.log[-4000:]}")

    async def stop(self) -> None:
        """Stop Kafka (SIGTERM: a controlled shutdown; SIGKILL after a bound). Data are kept."""
        await self._proc.stop()


@asynccontextmanager
async def open_kafka(
    *, attempts: int = 2, partitions: int = 4, port: int | None = None
) -> AsyncIterator[KafkaProcess]:
    """A fresh single-node Kafka on free loopback ports; stopped and its data removed on exit.

    KafkaNotFound if Java or Maven is missing (or the jars cannot be fetched). A start that fails (a
    port taken between picking and binding) is retried on new ports up to ``attempts`` times (once,
    when ``port`` fixes the client port; the controller's port is always a free one).
    """
    if port is not None:
        attempts = 1
    libs = await ensure_kafka()
    work_dir = Path(tempfile.mkdtemp(prefix="trimicro-kafka-"))
    try:
        async with trio.open_nursery() as nursery:
            for attempt in range(attempts):
                kafka = KafkaProcess(libs, work_dir, port or free_port(), free_port(), nursery, partitions)
                await kafka.format()
                try:
                    await kafka.start()
                except KafkaStartError:
                    if attempt + 1 == attempts:
                        raise
                    continue
                try:
                    yield kafka
                finally:
                    await kafka.stop()
                break
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def main(argv: list[str]) -> int:
    """``python3 -m trimicro.testing.kafka --fetch``: fetch the jars into the cache (for test.sh)."""
    if argv != ["--fetch"]:
        print("usage: python3 -m trimicro.testing.kafka --fetch", file=sys.stderr)
        return 2
    try:
        print(trio.run(ensure_kafka))
    except KafkaNotFound as exc:
        print(f"kafka: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
