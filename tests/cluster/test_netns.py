"""The zombie-node scenario across simulated hosts (tests/cluster/netns.py): etcd on one host, three
greeter node processes on three more, the client (tests/cluster/_driver.py) on a fifth, all talking
over a bridge on 10.77.0.0/24 that exists only inside namespaces this test creates.

One node is SIGSTOPped while registered: eight callers with a 1 s timeout make a bounded number of
calls and none may fail; the stopped node must be ejected, and after SIGCONT be probed back. Skips with
the reason when namespaces cannot be made (not root, no ``unshare``/``nsenter``/``ip``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from tests.cluster.netns import Cluster, ClusterUnavailable, Host, open_cluster
from trimicro.testing.etcd import EtcdNotFound, find_etcd

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
CALLS = 1500
START = 20.0  # bound on a process becoming ready


@attrs.define(eq=False)
class Proc:
    """A child process in a host, speaking JSON lines on stdout (other lines are kept as log)."""

    proc: trio.Process
    events: trio.MemorySendChannel[dict[str, Any]]
    inbox: trio.MemoryReceiveChannel[dict[str, Any]]
    log: list[str] = attrs.field(factory=list)

    async def next_event(self, timeout: float = START) -> dict[str, Any]:
        with trio.fail_after(timeout):
            try:
                return await self.inbox.receive()
            except trio.EndOfChannel:
                raise AssertionError("process exited; output:\n" + "\n".join(self.log[-30:])) from None

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all(line.encode() + b"\n")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)


async def _pump(p: Proc) -> None:
    assert p.proc.stdout is not None
    buf = b""
    async with p.events:
        async for chunk in p.proc.stdout:
            buf += chunk
            while b"\n" in buf:
                raw, _, buf = buf.partition(b"\n")
                line = raw.decode(errors="replace")
                if line.startswith("{"):
                    await p.events.send(json.loads(line))
                else:
                    p.log.append(line)


@asynccontextmanager
async def spawn(host: Host, argv: Sequence[str], env: dict[str, str]) -> AsyncIterator[Proc]:
    proc = await trio.lowlevel.open_process(
        host.command(argv),
        cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    send, recv = trio.open_memory_channel[dict[str, Any]](100)
    p = Proc(proc, send, recv)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pump, p)
            yield p
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            await proc.wait()


def etcd_command(binary: str, host: Host, data_dir: str) -> list[str]:
    peer = "http://127.0.0.1:2380"  # the host's own loopback: peers are not needed
    url = f"http://{host.address}:2379"
    return [
        binary, "--name", "t", "--data-dir", data_dir,
        "--listen-client-urls", url, "--advertise-client-urls", url,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", f"t={peer}",
        "--heartbeat-interval", "10", "--election-timeout", "100", "--log-level", "warn",
    ]  # fmt: skip


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    try:
        find_etcd()
    except EtcdNotFound as exc:
        pytest.skip(str(exc))
    try:
        async with open_cluster(["client", "etcd", "n1", "n2", "n3"]) as c:
            yield c
    except ClusterUnavailable as exc:
        pytest.skip(f"no network namespaces: {exc}")


async def test_sigstopped_node_on_simulated_hosts_costs_no_call(cluster: Cluster) -> None:
    etcd_host = cluster["etcd"]
    env = {
        "MICRO_REGISTRY": "etcd",
        "MICRO_REGISTRY_ADDRESS": f"{etcd_host.address}:2379",
        "MICRO_REGISTER_TTL": "60s",  # the stopped node stays registered throughout
        "MICRO_REGISTER_INTERVAL": "20s",
        "MICRO_REGISTRY_TIMEOUT": "2s",
    }
    python = sys.executable
    with tempfile.TemporaryDirectory() as data:
        async with (
            spawn(etcd_host, etcd_command(find_etcd(), etcd_host, data), {}),
            spawn(cluster["client"], [python, "-m", "tests.cluster._driver"], env) as driver,
        ):
            await driver.send(f"wait-etcd {etcd_host.address}:2379")
            assert (await driver.next_event())["event"] == "etcd-ready"
            async with (
                spawn(cluster["n1"], [python, "-m", "tests._nodes.greeter_node"], {**env, "MICRO_SERVER_ADDRESS": f"{cluster['n1'].address}:0"}) as n1,
                spawn(cluster["n2"], [python, "-m", "tests._nodes.greeter_node"], {**env, "MICRO_SERVER_ADDRESS": f"{cluster['n2'].address}:0"}) as n2,
                spawn(cluster["n3"], [python, "-m", "tests._nodes.greeter_node"], {**env, "MICRO_SERVER_ADDRESS": f"{cluster['n3'].address}:0"}) as n3,
            ):  # fmt: skip
                infos = [await n.next_event() for n in (n1, n2, n3)]
                assert all(i["event"] == "started" for i in infos)
                assert [i["address"].rpartition(":")[0] for i in infos] == [
                    "10.77.0.3",
                    "10.77.0.4",
                    "10.77.0.5",
                ]
                zombie_id = infos[0]["id"]

                async def phase(name: str) -> dict[str, Any]:
                    await driver.send(f"run {name} {CALLS}")
                    event = await driver.next_event(60)
                    print(f"[netns {name}] ok={event['ok']} failed={event['failures']} {event['rate']:.0f} calls/s "
                          f"in {event['seconds']:.2f}s selector={event['selector']} client={event['client']}")  # fmt: skip
                    return event

                healthy = await phase("healthy")
                assert healthy["failures"] == 0 and len(healthy["by_node"]) == 3
                n1.signal(signal.SIGSTOP)
                stopped = await phase("sigstopped")
                assert stopped["failures"] == 0, stopped["failed"]
                assert stopped["selector"]["ejected"] == {"greeter": [zombie_id]}
                ejected = await phase("ejected")
                assert ejected["failures"] == 0 and zombie_id not in ejected["by_node"]
                n1.signal(signal.SIGCONT)
                await driver.send("until-reinstated")
                assert (await driver.next_event(40))["event"] == "reinstated"
                back = await phase("after-sigcont")
                assert back["failures"] == 0 and zombie_id in back["by_node"]
            await driver.send("quit")


@pytest.mark.parametrize("fault", ["blackhole", "latency 0.6", "reset"])
async def test_network_faults_on_one_host_cost_no_call(cluster: Cluster, fault: str) -> None:
    """Node n3 is reached through the fault proxy on its own host (it advertises the proxy's port);
    mid-test the proxy turns to ``fault``: a partition that still accepts, a node slower than an
    attempt's share of the deadline, or connections reset. No call fails; n3 is ejected."""
    etcd_host, n3 = cluster["etcd"], cluster["n3"]
    env = {
        "MICRO_REGISTRY": "etcd",
        "MICRO_REGISTRY_ADDRESS": f"{etcd_host.address}:2379",
        "MICRO_REGISTER_TTL": "60s",
        "MICRO_REGISTER_INTERVAL": "20s",
        "MICRO_REGISTRY_TIMEOUT": "2s",
    }
    python = sys.executable
    node = [python, "-m", "tests._nodes.greeter_node"]
    with tempfile.TemporaryDirectory() as data:
        async with (
            spawn(etcd_host, etcd_command(find_etcd(), etcd_host, data), {}),
            spawn(cluster["client"], [python, "-m", "tests.cluster._driver"], env) as driver,
            spawn(n3, [python, "-m", "tests.cluster.faultproxy", f"{n3.address}:9001", f"{n3.address}:9000"], {}) as proxy,
        ):  # fmt: skip
            assert (await proxy.next_event())["event"] == "listening"
            await driver.send(f"wait-etcd {etcd_host.address}:2379")
            assert (await driver.next_event())["event"] == "etcd-ready"
            async with (
                spawn(cluster["n1"], node, {**env, "MICRO_SERVER_ADDRESS": f"{cluster['n1'].address}:0"}) as n1,
                spawn(cluster["n2"], node, {**env, "MICRO_SERVER_ADDRESS": f"{cluster['n2'].address}:0"}) as n2,
                spawn(n3, node, {**env, "MICRO_SERVER_ADDRESS": f"{n3.address}:9000",
                                 "MICRO_SERVER_ADVERTISE": f"{n3.address}:9001"}) as n3_proc,
            ):  # fmt: skip
                infos = [await n.next_event() for n in (n1, n2, n3_proc)]
                faulty = infos[2]["id"]
                assert infos[2]["address"] == f"{n3.address}:9001"

                async def phase(name: str) -> dict[str, Any]:
                    await driver.send(f"run {name} {CALLS}")
                    event = await driver.next_event(60)
                    print(f"[netns {fault}: {name}] ok={event['ok']} failed={event['failures']} "
                          f"{event['rate']:.0f} calls/s selector={event['selector']} client={event['client']}")  # fmt: skip
                    return event

                healthy = await phase("healthy")
                assert healthy["failures"] == 0 and faulty in healthy["by_node"]
                await proxy.send(f"mode {fault}")
                assert (await proxy.next_event())["event"] == "mode"
                faulted = await phase("faulted")
                assert faulted["failures"] == 0, faulted["failed"]
                assert faulted["selector"]["ejected"] == {"greeter": [faulty]}
            await driver.send("quit")
