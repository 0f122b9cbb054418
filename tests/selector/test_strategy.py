"""Strategies: random spreads, round robin rotates exactly, p2c learns from mark()."""

from __future__ import annotations

from collections import Counter

import pytest
import trio
import trio.testing

from trimicro.errors import ServiceNotFound
from trimicro.registry import Node, Service
from trimicro.selector import P2C, RoundRobin, random_strategy, round_robin_strategy, strategy_from_name


def services(*ids: str, version: str = "1") -> list[Service]:
    return [Service("greeter", version, nodes=[Node(i, f"127.0.0.1:{n}") for n, i in enumerate(ids, 1000)])]


def test_random_spreads() -> None:
    next_node = random_strategy(services("a", "b", "c") + services("d", version="2"))
    counts = Counter(next_node().id for _ in range(4000))
    assert set(counts) == {"a", "b", "c", "d"}
    assert min(counts.values()) > 700


def test_round_robin_rotates_within_a_next() -> None:
    next_node = round_robin_strategy(services("a", "b", "c"))
    ids = [next_node().id for _ in range(9)]
    start = ids[0]
    order = ["a", "b", "c"]
    i = order.index(start)
    assert ids == [order[(i + k) % 3] for k in range(9)]


def test_round_robin_instance_rotates_across_selects() -> None:
    rr = RoundRobin()
    picks = [rr(services("c", "a", "b"))().id for _ in range(6)]  # a fresh Next per "select"
    assert picks == ["a", "b", "c", "a", "b", "c"]
    other = [rr([Service("other", nodes=[Node("x", ""), Node("y", "")])])().id for _ in range(2)]
    assert other == ["x", "y"]  # per-service counters


@pytest.mark.parametrize("strategy", [random_strategy, round_robin_strategy, RoundRobin(), P2C()])
def test_no_nodes_raises_service_not_found(strategy: object) -> None:
    next_node = strategy([Service("greeter")])  # type: ignore[operator]
    with pytest.raises(ServiceNotFound):
        next_node()
    with pytest.raises(ServiceNotFound):
        strategy([])()  # type: ignore[operator]


async def test_p2c_avoids_failing_and_busy_nodes(autojump_clock: trio.testing.MockClock) -> None:
    p2c = P2C()
    svcs = services("good", "bad")
    next_node = p2c(svcs)
    bad = svcs[0].nodes[1]
    for _ in range(3):
        p2c.mark("greeter", bad, RuntimeError("boom"))
    picks = Counter()
    for _ in range(200):
        node = next_node()
        picks[node.id] += 1
        p2c.mark("greeter", node, None)
    assert picks == Counter(good=200)
    # errors decay: after a few half-lives the bad node is back in rotation
    await trio.sleep(100)
    picks.clear()
    for _ in range(200):
        node = next_node()
        picks[node.id] += 1
        p2c.mark("greeter", node, None)
    assert picks["bad"] > 50


async def test_p2c_counts_in_flight() -> None:
    p2c = P2C()
    next_node = p2c(services("a", "b"))
    first = next_node()  # in flight, never marked yet
    assert next_node().id != first.id  # the idle node wins
    assert p2c.score(first) == 1


def test_strategy_from_name() -> None:
    assert strategy_from_name("random") is random_strategy
    assert isinstance(strategy_from_name("roundrobin"), RoundRobin)
    assert isinstance(strategy_from_name("round_robin"), RoundRobin)
    assert isinstance(strategy_from_name("p2c"), P2C)
    with pytest.raises(ValueError, match="p2c"):
        strategy_from_name("fastest")
