"""Discovery on a real etcd survives rolling restarts, crashes and registry outages (issue 7).

Every scenario runs a steady, bounded client load (:class:`Load`: ``Greeter.Hello`` every ~5 ms from two
tasks) against greeter nodes registered in etcd with ``MICRO_REGISTRY=etcd``, a 3 s TTL and a 1 s
re-register interval, and asserts that not one call failed. Nodes are in-process :class:`Service`
instances or real processes (``tests/_nodes/greeter_node.py``) stopped by SIGTERM or SIGKILL.

Synchronisation is event driven: the load wakes waiters after every call, etcd state is awaited
through etcd watches, and the selector's own watch is tapped (:class:`TappedRegistry`) to know exactly
when a client has applied a delete event. The only timed waits are the load's pacing and the length
of the etcd outage, which is the scenario itself.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from tests.conftest import Greeter
from tests.protos.greeter_pb2 import HelloRequest, HelloResponse, SlowRequest, SlowResponse
from trimicro import Service, open_client
from trimicro.client import Client
from trimicro.errors import MicroError, RegistryError, ServiceNotFound
from trimicro.registry import Result
from trimicro.registry._etcd_client import EtcdClient
from trimicro.registry.etcd import EtcdRegistry, node_path, service_path
from trimicro.selector.cache import CachingSelector
from trimicro.testing.etcd import EtcdNotFound, EtcdProcess, find_etcd, open_etcd

pytestmark = [pytest.mark.loopback, pytest.mark.timeout(60)]

log = logging.getLogger("tests.etcd_resilience")

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "greeter"
TTL = 3  # register_ttl: a crashed node's key must be gone this long after its last keep-alive
INTERVAL = 1  # register_interval
OUTAGE = 10.0  # seconds etcd stays down in the outage scenario
PERIOD = 0.005  # load pacing
NODE_START = 20.0  # bound on a node process becoming ready (python start-up + register)


# ---- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
async def etcd() -> AsyncIterator[EtcdProcess]:
    try:
        find_etcd()
    except EtcdNotFound as exc:
        pytest.skip(str(exc))
    async with open_etcd() as process:
        yield process


@pytest.fixture
def env(etcd: EtcdProcess, monkeypatch: pytest.MonkeyPatch) -> EtcdProcess:
    """Configure every service, client and child process here through Go Micro's env variables."""
    for key, value in {
        "MICRO_REGISTRY": "etcd",
        "MICRO_REGISTRY_ADDRESS": etcd.endpoint,
        "MICRO_REGISTER_TTL": f"{TTL}s",
        "MICRO_REGISTER_INTERVAL": f"{INTERVAL}s",
        "MICRO_REGISTRY_TIMEOUT": "2s",
        "MICRO_SERVER_ADDRESS": "127.0.0.1:0",
    }.items():
        monkeypatch.setenv(key, value)
    return etcd


@pytest.fixture(autouse=True)
def retried(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Failed attempts the clients retried (selector.mark with an error), by error type: what the
    zero-failure results hid."""
    seen: Counter[str] = Counter()
    mark = CachingSelector.mark

    def counting(self: CachingSelector, service: str, node: Any, error: BaseException | None) -> None:
        if error is not None:
            seen[type(error).__name__] += 1
        mark(self, service, node, error)

    monkeypatch.setattr(CachingSelector, "mark", counting)
    return seen


@pytest.fixture
async def kv(etcd: EtcdProcess) -> AsyncIterator[EtcdClient]:
    """A raw etcd client for the test's own reads, writes and watches."""
    async with EtcdClient([etcd.endpoint], timeout=2.0) as client:
        yield client


# ---- load ----------------------------------------------------------------------------------------


@attrs.define(eq=False)
class Load:
    """Bounded steady load: ``workers`` tasks each calling ``Greeter.Hello`` every ``PERIOD`` seconds.

    Counts successes per answering node (the greeting names it) and keeps every failure. ``marker``
    is stamped on each call when it starts, so a test can tell which calls began after some event.
    """

    client: Client
    service: str = SERVICE
    limit: int = 20_000
    ok: int = 0
    failed: list[BaseException] = attrs.field(factory=list)
    by_node: Counter[str] = attrs.field(factory=Counter)
    calls: list[tuple[int, str]] = attrs.field(factory=list)  # (marker at start, node) per success
    marker: Callable[[], int] = lambda: 0
    _changed: trio.Event = attrs.field(factory=trio.Event)
    _stop: trio.Event = attrs.field(factory=trio.Event)

    @property
    def total(self) -> int:
        return self.ok + len(self.failed)

    async def worker(self, name: str) -> None:
        while not self._stop.is_set() and self.total < self.limit:
            started = self.marker()
            try:
                rsp = await self.client.call(
                    self.service,
                    "Greeter.Hello",
                    HelloRequest(name=name),
                    response_type=HelloResponse,
                    timeout=5,
                )
            except MicroError as exc:
                log.error("load call failed: %s", exc)
                self.failed.append(exc)
            else:
                node = rsp.greeting.rpartition(" from ")[2]
                self.ok += 1
                self.by_node[node] += 1
                self.calls.append((started, node))
            self._changed.set()
            self._changed = trio.Event()
            await trio.sleep(PERIOD)  # pacing, not synchronisation

    @asynccontextmanager
    async def running(self, workers: int = 2) -> AsyncIterator[Load]:
        async with trio.open_nursery() as nursery:
            for i in range(workers):
                nursery.start_soon(self.worker, f"w{i}")
            try:
                yield self
            finally:
                self._stop.set()

    async def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait (bounded) until ``predicate()`` holds, re-checking after every call the load makes."""
        with trio.fail_after(timeout):
            while not predicate():
                if self.total >= self.limit:
                    raise AssertionError("load hit its call limit before the condition held")
                await self._changed.wait()

    async def more(self, n: int, timeout: float = 10.0) -> None:
        target = self.total + n
        await self.until(lambda: self.total >= target, timeout)

    async def served_by(self, node_id: str, n: int = 5, timeout: float = 10.0) -> None:
        target = self.by_node[node_id] + n
        await self.until(lambda: self.by_node[node_id] >= target, timeout)


# ---- nodes ---------------------------------------------------------------------------------------


@attrs.define(eq=False)
class LocalNode:
    """An in-process greeter :class:`Service` running in its own task."""

    service: Service
    greeter: Greeter
    done: trio.Event

    @property
    def id(self) -> str:
        return self.service.id

    async def stop(self) -> None:
        self.service.stop()
        with trio.fail_after(15):
            await self.done.wait()


async def start_local(nursery: trio.Nursery, name: str = SERVICE, **options: Any) -> LocalNode:
    greeter = Greeter()
    service = Service(name, handlers=[greeter], argv=[], handle_signals=False, **options)
    greeter.tag = service.id
    done = trio.Event()

    async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as own:  # each node in its own nursery
                await own.start(service.run)
                task_status.started()
        finally:
            done.set()

    with trio.fail_after(10):
        await nursery.start(run)
    return LocalNode(service, greeter, done)


@attrs.define(eq=False)
class ProcessNode:
    """A greeter node in a child process (``python -m tests._nodes.greeter_node``)."""

    proc: trio.Process
    id: str
    address: str
    done: trio.Event
    output: bytearray = attrs.field(factory=bytearray)

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    async def wait(self, timeout: float = 15.0) -> int:
        with trio.fail_after(timeout):
            await self.done.wait()
        assert self.proc.returncode is not None
        return self.proc.returncode


async def _run_process(*, task_status: trio.TaskStatus[ProcessNode] = trio.TASK_STATUS_IGNORED) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests._nodes.greeter_node"],
        cwd=str(ROOT),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    done = trio.Event()
    try:
        assert proc.stdout is not None
        buf = bytearray()
        with trio.fail_after(NODE_START):
            while b"\n" not in buf:
                chunk = await proc.stdout.receive_some(4096)
                if not chunk:
                    raise AssertionError(f"greeter node exited before starting: {bytes(buf)!r}")
                buf += chunk
        line, _, rest = bytes(buf).partition(b"\n")
        info = json.loads(line)
        assert info["event"] == "started"
        node = ProcessNode(proc, info["id"], info["address"], done, bytearray(rest))
        task_status.started(node)
        async for chunk in proc.stdout:
            node.output += chunk
        await proc.wait()
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        done.set()


async def start_process(nursery: trio.Nursery) -> ProcessNode:
    node: ProcessNode = await nursery.start(_run_process)
    return node


# ---- etcd helpers --------------------------------------------------------------------------------


async def node_ids(kv: EtcdClient, service: str = SERVICE) -> set[str]:
    rsp = await kv.range(service_path(service) + "/", prefix=True)
    return {kv_.key.decode().rpartition("/")[2] for kv_ in rsp.kvs}


async def wait_gone(kv: EtcdClient, key: str, timeout: float) -> None:
    """Return once ``key`` is absent from etcd, watching from the revision it was last read at."""
    with trio.fail_after(timeout):
        rsp = await kv.range(key)
        if not rsp.kvs:
            return
        async with kv.watch(key, start_revision=rsp.revision + 1) as watch:
            async for event in watch:
                if event.type == "delete":
                    return


async def wait_present(kv: EtcdClient, ids: set[str], timeout: float, service: str = SERVICE) -> None:
    """Return once every node id in ``ids`` has a key under ``service``'s prefix."""
    prefix = service_path(service) + "/"
    with trio.fail_after(timeout):
        rsp = await kv.range(prefix, prefix=True)
        have = {x.key.decode().rpartition("/")[2] for x in rsp.kvs}
        if ids <= have:
            return
        async with kv.watch(prefix, prefix=True, start_revision=rsp.revision + 1) as watch:
            async for event in watch:
                node_id = event.kv.key.decode().rpartition("/")[2]
                if event.type == "put":
                    have.add(node_id)
                else:
                    have.discard(node_id)
                if ids <= have:
                    return


# ---- a registry tap: when has the client applied a watch event? ---------------------------------


@attrs.define(eq=False)
class _TapWatcher:
    inner: Any
    tap: TappedRegistry
    _pending: Result | None = None

    def __aiter__(self) -> _TapWatcher:
        return self

    async def __anext__(self) -> Result:
        # The selector applies each result before it asks for the next one, so by now it has.
        if self._pending is not None:
            self.tap.applied.append(self._pending)
            self._pending = None
        result: Result = await self.inner.__anext__()
        self._pending = result
        return result


@attrs.define(eq=False)
class TappedRegistry:
    """Delegates to an :class:`EtcdRegistry`; ``applied`` lists the watch events the selector applied."""

    inner: EtcdRegistry
    name: str = "etcd"
    applied: list[Result] = attrs.field(factory=list)

    async def __aenter__(self) -> TappedRegistry:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.inner.__aexit__(*exc)

    async def register(self, service: Any, *, ttl: float | None = None) -> None:
        await self.inner.register(service, ttl=ttl)

    async def deregister(self, service: Any) -> None:
        await self.inner.deregister(service)

    async def get_service(self, name: str) -> list[Any]:
        return await self.inner.get_service(name)

    async def list_services(self) -> list[Any]:
        return await self.inner.list_services()

    def watch(self, service: str | None = None) -> AbstractAsyncContextManager[Any]:
        return self._watch(service)

    @asynccontextmanager
    async def _watch(self, service: str | None) -> AsyncIterator[Any]:
        async with self.inner.watch(service) as watcher:
            yield _TapWatcher(watcher, self)


def assert_no_failures(load: Load, scenario: str, retried: Counter[str] | None = None) -> None:
    if retried is not None:
        print(f"[{scenario}] failed attempts that were retried: {dict(retried) or 0}")
    print(
        f"[{scenario}] calls={load.total} ok={load.ok} failed={len(load.failed)} by_node={dict(load.by_node)}"
    )
    assert not load.failed, f"{len(load.failed)} of {load.total} calls failed, first: {load.failed[0]!r}"


# ---- rolling restarts ------------------------------------------------------------------------------


async def test_rolling_restart_in_process_zero_failures(
    env: EtcdProcess, kv: EtcdClient, retried: Counter[str]
) -> None:
    """Stop each of 3 nodes in turn (deregister, drain), start a replacement: no call fails, and a slow
    call in flight on the stopping node completes (it is drained, not cut)."""
    slow_results: list[int] = []

    async def slow_call(client: Client, address: str) -> None:
        rsp = await client.call(
            SERVICE, "Greeter.Slow", SlowRequest(sleep_ms=300), response_type=SlowResponse, address=address
        )
        slow_results.append(rsp.slept_ms)

    async with trio.open_nursery() as nursery:
        nodes = [await start_local(nursery) for _ in range(3)]
        async with open_client() as client, Load(client).running() as load:
            for node in nodes:
                await load.served_by(node.id)
            for i, old in enumerate(list(nodes)):
                nursery.start_soon(slow_call, client, old.service.address)
                with trio.fail_after(5):
                    await old.greeter.started.wait()
                await old.stop()
                assert len(slow_results) == i + 1
                assert old.id not in await node_ids(kv)
                served_by_old = old.greeter.calls
                new = await start_local(nursery)
                nodes[i] = new
                await load.served_by(new.id, 20)
                assert old.greeter.calls == served_by_old  # stopped nodes stay stopped
            await load.more(100)
        assert await node_ids(kv) == {n.id for n in nodes}
        for node in nodes:
            await node.stop()
    assert_no_failures(load, "rolling in-process", retried)
    assert load.ok >= 200
    assert slow_results == [300, 300, 300]


async def test_rolling_restart_processes_sigterm_zero_failures(
    env: EtcdProcess, kv: EtcdClient, retried: Counter[str]
) -> None:
    """Real node processes restarted one by one with SIGTERM: each exits 0, no call fails."""
    async with trio.open_nursery() as nursery:
        nodes = [await start_process(nursery) for _ in range(3)]
        async with open_client() as client, Load(client).running() as load:
            for node in nodes:
                await load.served_by(node.id)
            for i, old in enumerate(list(nodes)):
                old.send(signal.SIGTERM)
                assert await old.wait() == 0
                assert b'"stopped"' in old.output
                assert old.id not in await node_ids(kv)
                nodes[i] = await start_process(nursery)
                await load.served_by(nodes[i].id, 20)
            await load.more(100)
        assert await node_ids(kv) == {n.id for n in nodes}
        for node in nodes:
            node.send(signal.SIGTERM)
        for node in nodes:
            assert await node.wait() == 0
    assert_no_failures(load, "rolling processes SIGTERM", retried)


# ---- crash ------------------------------------------------------------------------------------------


async def test_sigkilled_node_vanishes_within_ttl_and_calls_go_elsewhere(
    env: EtcdProcess, kv: EtcdClient, retried: Counter[str]
) -> None:
    async with trio.open_nursery() as nursery:
        nodes = [await start_process(nursery) for _ in range(3)]
        async with open_client() as client, Load(client).running() as load:
            for node in nodes:
                await load.served_by(node.id)
            victim = nodes[0]
            key = node_path(SERVICE, victim.id)
            killed_at = trio.current_time()
            victim.send(signal.SIGKILL)
            await victim.wait()
            await wait_gone(kv, key, timeout=TTL + 5)
            vanished = trio.current_time() - killed_at
            print(f"[sigkill] key {key} vanished {vanished:.2f}s after SIGKILL (ttl {TTL}s)")
            # lease TTL, plus etcd's ~0.5 s expiry sweep, plus slack for a loaded CI machine
            assert vanished <= TTL + 2.5
            served = load.by_node[victim.id]
            await load.more(200)
            assert load.by_node[victim.id] == served
            for node in nodes[1:]:
                await load.served_by(node.id)
        for node in nodes[1:]:
            node.send(signal.SIGTERM)
    assert_no_failures(load, "sigkill", retried)


# ---- registry outage ----------------------------------------------------------------------------------


@pytest.mark.parametrize("data", ["kept", "lost"])
async def test_etcd_outage_serves_from_cache_and_registrations_come_back(
    env: EtcdProcess, kv: EtcdClient, caplog: pytest.LogCaptureFixture, data: str, retried: Counter[str]
) -> None:
    """etcd down for 10 s under load: calls keep succeeding from the selector cache; after it returns the
    services' keys are back and kept alive, and discovery sees new nodes, with nothing restarted.

    ``lost``: etcd comes back empty (its data dir wiped, a rebuilt cluster): the services' keep-alive
    grants new leases and writes their records again by itself.
    """
    async with trio.open_nursery() as nursery:
        nodes = [await start_local(nursery) for _ in range(3)]
        ids = {n.id for n in nodes}
        async with open_client() as client, Load(client).running() as load:
            for node in nodes:
                await load.served_by(node.id)
            before = load.total
            await env.stop()
            if data == "lost":
                env.wipe()
            await trio.sleep(OUTAGE)  # the outage itself, not synchronisation
            during = load.total - before
            for node in nodes:  # every node kept receiving calls
                assert load.by_node[node.id] > 0
            await env.start()
            await wait_present(kv, ids, timeout=TTL + 2)
            # The leases are alive again: no key expires over more than a TTL after the outage.
            rsp = await kv.range(service_path(SERVICE) + "/", prefix=True)
            async with kv.watch(
                service_path(SERVICE) + "/", prefix=True, start_revision=rsp.revision + 1
            ) as w:
                with trio.move_on_after(TTL + 1):
                    async for event in w:
                        assert event.type != "delete", f"{event.kv.key!r} expired after the outage"
            assert await node_ids(kv) == ids
            # Discovery works again: a node started now is found and called.
            late = await start_local(nursery)
            await load.served_by(late.id, timeout=15)
        for node in [*nodes, late]:
            await node.stop()
    print(f"[etcd outage, data {data}] {during} calls during the {OUTAGE:g}s outage")
    assert during >= 100
    assert any("serving stale nodes" in r.getMessage() for r in caplog.records)
    assert_no_failures(load, f"etcd outage, data {data}", retried)


# ---- delete events ---------------------------------------------------------------------------------------


async def test_clients_drop_a_deregistered_node_on_its_delete_event(
    env: EtcdProcess, kv: EtcdClient, retried: Counter[str]
) -> None:
    """After the client applied the delete event, no call it starts goes to that node (still serving)."""
    async with trio.open_nursery() as nursery:
        # The leaving node re-registers rarely, so deregistering it by hand sticks while it keeps serving.
        leaving = await start_local(nursery, register_ttl=60, register_interval=30)
        others = [await start_local(nursery) for _ in range(2)]
        async with TappedRegistry(EtcdRegistry([env.endpoint], timeout=2.0)) as tapped:
            selector = CachingSelector(tapped)
            async with open_client(selector=selector) as client:
                load = Load(client, marker=lambda: len(tapped.applied))
                async with load.running():
                    for node in [leaving, *others]:
                        await load.served_by(node.id)
                    await leaving.service.registry.deregister(leaving.service.record())

                    def dropped() -> int | None:
                        for i, r in enumerate(tapped.applied):
                            if r.action == "delete" and any(n.id == leaving.id for n in r.service.nodes):
                                return i + 1
                        return None

                    await load.until(lambda: dropped() is not None)
                    after = dropped()
                    assert after is not None
                    await load.until(lambda: sum(1 for m, _ in load.calls if m >= after) >= 200)
                    late = [node for m, node in load.calls if m >= after]
                    assert leaving.id not in late
                    assert set(late) == {n.id for n in others}
                # The node itself was fine all along: only discovery dropped it.
                rsp = await client.call(
                    SERVICE, "Greeter.Hello", HelloRequest(name="direct"),
                    response_type=HelloResponse, address=leaving.service.address,
                )  # fmt: skip
                assert rsp.greeting.endswith(leaving.id)
        for node in [leaving, *others]:
            await node.stop()
    assert_no_failures(load, "delete event", retried)


# ---- Go Micro records ------------------------------------------------------------------------------


GO_RECORD = (
    '{"name":"go.greeter","version":"latest","metadata":null,"endpoints":[{"request":{"name":"HelloRequest",'
    '"type":"HelloRequest","values":[{"name":"name","type":"string","values":null}]},"response":{"name":'
    '"HelloResponse","type":"HelloResponse","values":[{"name":"greeting","type":"string","values":null}]},'
    '"metadata":{},"name":"Greeter.Hello"}],"nodes":[{"metadata":{"broker":"http","protocol":"mucp",'
    '"registry":"etcd","server":"mucp","transport":"http"},"id":"NODE_ID","address":"ADDRESS"}]}'
)


def go_record(node_id: str, address: str) -> str:
    """What Go Micro v5 writes for one node of a service with a ``Greeter.Hello`` handler (compact JSON,
    Go struct field order, service metadata ``null``, leaf ``values`` ``null``; docs/go-micro-facts.md)."""
    return GO_RECORD.replace("NODE_ID", node_id).replace("ADDRESS", address)


async def test_go_micro_record_written_to_etcd_is_discovered_and_callable(
    env: EtcdProcess, kv: EtcdClient
) -> None:
    async with trio.open_nursery() as nursery:
        backend = await start_local(nursery)  # a trimicro node serving Greeter.Hello
        await kv.put(
            "/micro/registry/go.greeter/go.greeter-1", go_record("go.greeter-1", backend.service.address)
        )
        async with open_client() as client:
            rsp = await client.call(
                "go.greeter", "Greeter.Hello", HelloRequest(name="go"), response_type=HelloResponse
            )
            assert rsp.greeting == f"Hello go from {backend.id}"
            [found] = await backend.service.registry.get_service("go.greeter")
            assert found.nodes[0].id == "go.greeter-1"
            assert found.nodes[0].metadata["protocol"] == "mucp"
            assert [e.name for e in found.endpoints] == ["Greeter.Hello"]
            # Removing the record (Go's deregister) makes it undiscoverable again.
            await kv.delete("/micro/registry/go.greeter/go.greeter-1")
        async with open_client() as client:
            with pytest.raises(MicroError) as info:
                await client.call(
                    "go.greeter", "Greeter.Hello", HelloRequest(name="go"), response_type=HelloResponse
                )
            assert info.value.code == 404
        await backend.stop()


def _shape(value: Any) -> Any:
    """The JSON shape of a record: dict keys (sorted) and element shapes, leaves reduced to their type."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


async def test_trimicro_record_in_etcd_has_go_micros_layout(env: EtcdProcess, kv: EtcdClient) -> None:
    async with trio.open_nursery() as nursery:
        node = await start_local(nursery)
        rsp = await kv.range(node_path(SERVICE, node.id))
        [item] = rsp.kvs
        assert item.key.decode() == f"/micro/registry/{SERVICE}/{node.id}"
        assert item.lease != 0  # under a lease, like Go Micro
        record = json.loads(item.value)
        go = json.loads(go_record("x", "y"))
        # Same fields at every level; leaf values are null, not []; service metadata is a JSON object.
        assert list(record) == ["name", "version", "metadata", "endpoints", "nodes"]
        assert record["metadata"] in (None, {})
        assert set(record["nodes"][0]) == {"id", "address", "metadata"}
        [hello] = [e for e in record["endpoints"] if e["name"] == "Greeter.Hello"]
        assert _shape(hello) == _shape(go["endpoints"][0])
        assert hello["request"]["values"][0]["values"] is None
        meta = record["nodes"][0]["metadata"]
        assert {k: meta[k] for k in go["nodes"][0]["metadata"]} == {
            "broker": "http", "protocol": "mucp", "registry": "etcd", "server": "mucp", "transport": "http",
        }  # fmt: skip
        assert record["nodes"][0]["address"] == node.service.address
        await node.stop()


# ---- a registry that comes back empty ------------------------------------------------------------------


async def test_empty_answer_right_after_an_outage_is_doubted(
    etcd: EtcdProcess, kv: EtcdClient, caplog: pytest.LogCaptureFixture
) -> None:
    """etcd restarts without its data: until the services re-register, "no nodes" is not believed
    (for at most the cache ttl).

    Records are written raw (no keep-alive re-puts them), so the window in which etcd is back but empty
    stays open as long as the test wants, and the selector's handling of it is exact, not a race. The
    two timed waits are the cache ttl, the bound under test.
    """
    ttl = 1.0
    a, b = "svc-a", "svc-b"

    def record(name: str, address: str) -> str:
        return go_record(f"{name}-1", address).replace("go.greeter", name)

    def messages() -> str:
        return "\n".join(r.getMessage() for r in caplog.records)

    for name in (a, b):
        await kv.put(node_path(name, f"{name}-1"), record(name, "127.0.0.1:1"))
    async with EtcdRegistry([etcd.endpoint], timeout=2.0) as registry:
        async with CachingSelector(registry, retry_interval=0, ttl=ttl) as selector:
            for name in (a, b):
                assert (await selector.select(name))().address == "127.0.0.1:1"
            await etcd.stop()
            etcd.wipe()
            await trio.sleep(ttl)  # the outage outlasts the cached entries
            for name in (a, b):
                assert (await selector.select(name))().address == "127.0.0.1:1"
            assert "failed (etcd unreachable" in messages()
            await etcd.start()
            assert await registry.get_service(a) == []  # back, but empty
            for name in (a, b):
                assert (await selector.select(name))().address == "127.0.0.1:1"
            assert f"no nodes of {a} right after failing" in messages()
            await kv.put(node_path(a, f"{a}-1"), record(a, "127.0.0.1:2"))  # a re-registers
            assert (await selector.select(a))().address == "127.0.0.1:2"
            await trio.sleep(ttl)  # b never comes back: after ttl the empty answer is believed
            with pytest.raises(ServiceNotFound):
                await selector.select(b)


async def test_a_node_cannot_start_while_etcd_is_down(env: EtcdProcess) -> None:
    """Like Go Micro, a service whose first registration fails does not start (a supervisor restarts it)."""
    await env.stop()
    service = Service(SERVICE, handlers=[Greeter()], argv=[], handle_signals=False)
    with trio.fail_after(10), pytest.raises(RegistryError, match="etcd unreachable"):
        await service.run()


async def test_a_draining_node_does_not_register_again(env: EtcdProcess, kv: EtcdClient) -> None:
    """Deregister-first must stick: the re-register ticks (every 0.2 s here) during a 1 s drain must not
    put the record back, or clients would be sent to a node that is going away."""
    async with trio.open_nursery() as nursery:
        node = await start_local(nursery, register_interval=0.2)
        key = node_path(SERVICE, node.id)
        async with open_client() as client:
            nursery.start_soon(
                functools.partial(
                    client.call,
                    SERVICE,
                    "Greeter.Slow",
                    SlowRequest(sleep_ms=1000),
                    response_type=SlowResponse,
                )
            )
            with trio.fail_after(5):
                await node.greeter.started.wait()
            rsp = await kv.range(key)
            assert rsp.kvs
            async with kv.watch(key, start_revision=rsp.revision + 1) as watch:
                await node.stop()  # returns after the drain
                final = await kv.range(key)
                assert not final.kvs
                events = []
                with trio.fail_after(5):  # every change of the key up to now, through the watch
                    async for event in watch:
                        events.append(event.type)
                        if event.kv.mod_revision >= final.revision:
                            break
            assert events == ["delete"]
