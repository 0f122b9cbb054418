"""A short run of every failure scenario of tests/cluster/scenarios.py on simulated hosts: no call may
fail while a healthy node exists. Rates and latencies are printed (``-s``), never asserted: performance
is for the scenario command and docs/reliability.md. Skips with the reason when namespaces cannot be
made (not root, no ``unshare``/``nsenter``/``ip``) or there is no etcd binary.
"""

from __future__ import annotations

import shutil

import pytest

from tests.cluster import scenarios
from tests.cluster.netns import ClusterUnavailable, check_available
from trimicro.testing.etcd import EtcdNotFound, find_etcd
from trimicro.testing.nats import NatsServerNotFound, find_nats_server

pytestmark = [pytest.mark.netns, pytest.mark.timeout(90)]

SECONDS = 1.0  # per phase; the rolling deploy runs three times that


@pytest.fixture(autouse=True)
def _available() -> None:
    try:
        find_etcd()
        check_available()
    except (EtcdNotFound, ClusterUnavailable) as exc:
        pytest.skip(str(exc))
    if shutil.which("nft") is None:
        pytest.skip("no nft (the partitions are nftables rules)")


@pytest.mark.parametrize("scenario", scenarios.SCENARIOS, ids=lambda s: s.name)
async def test_no_call_fails_while_a_healthy_node_exists(scenario: scenarios.Scenario) -> None:
    result = await scenarios.run_scenario(scenario, SECONDS)
    print(scenarios.row(result))
    healthy, faulted = result["healthy"], result["faulted"]
    assert healthy["failures"] == 0, healthy["failed"]
    assert faulted["failures"] == 0, faulted["failed"]
    assert faulted["ok"] > 0


async def test_a_stream_cut_by_a_partition_ends_on_both_sides_without_leaks() -> None:
    result = await scenarios.run_stream_cut()
    print(scenarios.stream_row(result))
    assert result["opened"] == scenarios.STREAMS
    for stream in result["streams"]:
        assert stream["error"], stream  # the client is told, with a typed error
        assert stream["open_for"] < scenarios.STREAM_TIMEOUT + 1.0, stream  # by the deadline, not later
    before, _, after = result["fds"]
    assert after <= before + 2, result["fds"]  # the node closed the cut connections
    assert result["tasks"][1] <= result["tasks"][0] + 4, result["tasks"]  # and its handlers ended


@pytest.mark.parametrize("kind", ["member-restart", "partitioned-subscriber", "long-partition"])
async def test_pubsub_over_a_nats_cluster_keeps_publishing(kind: str) -> None:
    """Publishing never fails while a NATS member is down or a subscriber is cut off; what the
    subscribers lost (at-most-once) is printed, not asserted."""
    try:
        find_nats_server()
    except NatsServerNotFound as exc:
        pytest.skip(str(exc))
    result = await scenarios.run_nats(kind)
    print(scenarios.nats_table([result]))
    assert result["publish_failed"] == 0 and result["sent"] == scenarios.NATS_MESSAGES
    assert all(got > 0 for got in result["received"].values()), result
    if kind == "long-partition":
        # n3 was dropped as a slow consumer (what it lost is the at-most-once price, printed above);
        # it must come back by itself: reconnected and resubscribed, it gets the next burst.
        after = result["after"]
        assert after["failed"] == 0, after
        assert after["received"]["n1"] == after["received"]["n2"] == after["sent"], after
        assert after["received"]["n3"] > 0, after
