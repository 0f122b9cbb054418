"""A zombie node on loopback: three greeter processes on a real etcd, one SIGSTOPped while it stays
registered (it accepts TCP, never answers), eight callers with a 1 s timeout: no call may fail.

Before outlier ejection and per-attempt timeouts, this scenario lost 0.44% of calls and 80% of the
throughput for as long as the zombie stayed listed: every call that picked it waited out its whole
timeout. Now it costs one attempt (a third of the deadline), the retry goes to another node, and after
five such failures the node is ejected; after SIGCONT its probe succeeds and it is back.

Each phase makes a bounded number of calls; the throughput numbers are printed (``-s``), not asserted
(performance is for benchmarks). The network-namespace harness (:mod:`tests.cluster.netns`) runs the
same scenario across simulated hosts when the tests run as root.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator

import pytest
import trio

from tests.cluster._load import SERVICE, Phase
from tests.test_etcd_resilience import ProcessNode, etcd, start_process  # noqa: F401 (fixture)
from trimicro import open_client
from trimicro.testing.etcd import EtcdProcess

pytestmark = [pytest.mark.loopback, pytest.mark.timeout(90)]

CALLS = 1500  # per phase (8 callers, 1 s timeout each)


@pytest.fixture
def env(etcd: EtcdProcess, monkeypatch: pytest.MonkeyPatch) -> EtcdProcess:  # noqa: F811
    """A long TTL: the stopped node's lease outlives the test, so it stays registered throughout."""
    for key, value in {
        "MICRO_REGISTRY": "etcd",
        "MICRO_REGISTRY_ADDRESS": etcd.endpoint,
        "MICRO_REGISTER_TTL": "60s",
        "MICRO_REGISTER_INTERVAL": "20s",
        "MICRO_REGISTRY_TIMEOUT": "2s",
        "MICRO_SERVER_ADDRESS": "127.0.0.1:0",
    }.items():
        monkeypatch.setenv(key, value)
    return etcd


@pytest.fixture
async def nodes(env: EtcdProcess) -> AsyncIterator[list[ProcessNode]]:
    async with trio.open_nursery() as nursery:
        started = [await start_process(nursery) for _ in range(3)]
        try:
            yield started
        finally:
            for node in started:
                node.send(signal.SIGCONT)
                node.send(signal.SIGKILL)
            nursery.cancel_scope.cancel()


async def test_sigstopped_node_costs_no_call(nodes: list[ProcessNode]) -> None:
    zombie = nodes[0]
    async with open_client() as client:
        healthy = await Phase("healthy", CALLS).run(client)
        assert set(healthy.by_node) == {n.id for n in nodes}
        zombie.send(signal.SIGSTOP)
        stopped = await Phase("one node SIGSTOPped", CALLS).run(client)
        selector_stats = client.selector.stats()  # type: ignore[union-attr]
        client_stats = client.stats()
        print(f"[one node SIGSTOPped] selector={selector_stats} client={client_stats}")
        assert not stopped.failed, f"{len(stopped.failed)} calls failed, first: {stopped.failed[0]!r}"
        assert selector_stats["ejected"] == {SERVICE: [zombie.id]}
        assert 1 <= client_stats["attempt_timeouts"] <= 10
        assert client_stats["retries_throttled"] == 0
        steady = await Phase("SIGSTOPped, ejected", CALLS).run(client)  # while it is out
        assert not steady.failed and zombie.id not in steady.by_node
        zombie.send(signal.SIGCONT)
        # Its ejection ends (5 s), one probe call goes to it, answers, and it is back in rotation.
        back = Phase("after SIGCONT", CALLS)
        with trio.fail_after(30):
            while client.selector.stats()["reinstated"] < 1:  # type: ignore[union-attr]
                await Phase("waiting for the probe", 200, callers=2).run(client)
            await back.run(client)
        assert not back.failed
        assert zombie.id in back.by_node
