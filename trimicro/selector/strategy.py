"""Selection strategies: build a :data:`~trimicro.selector.Next` from the (filtered) service versions.

- :func:`random_strategy` (the default): uniform over all nodes of all versions, as Go Micro.
- :func:`round_robin_strategy`: Go Micro's stateless round robin (random start, rotate per call).
- :class:`RoundRobin`: a round robin that keeps one counter per service across selects, so successive
  ``select()`` calls rotate exactly; the selector holds one instance.
- :class:`P2C`: power of two choices on in-flight calls and recent errors, fed by the selector's
  ``mark()``; picks the less loaded of two random nodes, so slow or failing nodes get less traffic.

A Next raises :class:`~trimicro.errors.ServiceNotFound` when there are no nodes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import attrs
import trio

from ..errors import ServiceNotFound
from ..registry import Node, Service
from ._base import Next, Strategy

__all__ = [
    "P2C",
    "RoundRobin",
    "nodes_of",
    "random_strategy",
    "round_robin_strategy",
    "strategy_from_name",
    "to_strategy",
]


def nodes_of(services: Sequence[Service]) -> list[Node]:
    """Every node of every version, in order."""
    return [node for service in services for node in service.nodes]


def _none(services: Sequence[Service]) -> Next:
    name = services[0].name if services else "service"

    def next_node() -> Node:
        raise ServiceNotFound(f"no nodes available for {name}")

    return next_node


def random_strategy(services: list[Service]) -> Next:
    """Pick a node uniformly at random on every call."""
    nodes = nodes_of(services)
    if not nodes:
        return _none(services)
    return lambda: random.choice(nodes)


def round_robin_strategy(services: list[Service]) -> Next:
    """Rotate through the nodes from a random start (Go Micro's stateless round robin)."""
    nodes = nodes_of(services)
    if not nodes:
        return _none(services)
    i = random.randrange(len(nodes))

    def next_node() -> Node:
        nonlocal i
        node = nodes[i % len(nodes)]
        i += 1
        return node

    return next_node


@attrs.define(eq=False)
class RoundRobin:
    """Round robin with one counter per service name, kept across selects (use one per selector)."""

    _counters: dict[str, int] = attrs.field(factory=dict)

    def __call__(self, services: list[Service]) -> Next:
        nodes = sorted(nodes_of(services), key=lambda n: n.id)  # stable order across lookups
        if not nodes:
            return _none(services)
        key = services[0].name

        def next_node() -> Node:
            i = self._counters.get(key, 0)
            self._counters[key] = i + 1
            return nodes[i % len(nodes)]

        return next_node


@attrs.define(eq=False)
class _Stats:
    inflight: int = 0
    errors: float = 0.0  # decays with half-life P2C.half_life
    at: float = 0.0  # when ``errors`` was last decayed


@attrs.define(eq=False)
class P2C:
    """Power of two choices: of two random nodes take the one with fewer in-flight calls and errors.

    Every node a Next returns counts as in flight until :meth:`mark` reports it (the selector forwards
    its ``mark()`` here), so the client must mark every attempt, successful or not. Errors weigh
    ``error_weight`` in-flight calls each and decay with ``half_life`` seconds (trio's clock), so a
    node that failed gets traffic again later.
    """

    error_weight: float = 5.0
    half_life: float = 10.0
    _stats: dict[str, _Stats] = attrs.field(factory=dict)

    def _get(self, node: Node) -> _Stats:
        stats = self._stats.get(node.id)
        now = trio.current_time()
        if stats is None:
            stats = self._stats[node.id] = _Stats(at=now)
        elif now > stats.at:
            stats.errors *= math.pow(0.5, (now - stats.at) / self.half_life)
            if stats.errors < 0.05:
                stats.errors = 0.0  # forgiven: ties again with healthy nodes, so it gets traffic
            stats.at = now
        return stats

    def score(self, node: Node) -> float:
        stats = self._get(node)
        return stats.inflight + self.error_weight * stats.errors

    def __call__(self, services: list[Service]) -> Next:
        nodes = nodes_of(services)
        if not nodes:
            return _none(services)

        def next_node() -> Node:
            if len(nodes) == 1:
                node = nodes[0]
            else:
                a, b = random.sample(nodes, 2)
                node = a if self.score(a) <= self.score(b) else b
            self._get(node).inflight += 1
            return node

        return next_node

    def mark(self, service: str, node: Node, error: BaseException | None) -> None:
        stats = self._get(node)
        stats.inflight = max(0, stats.inflight - 1)
        if error is not None and not isinstance(error, trio.Cancelled):  # Cancelled: abandoned
            stats.errors += 1.0


def strategy_from_name(name: str) -> Strategy:
    """``random``, ``roundrobin`` / ``round_robin`` (a fresh :class:`RoundRobin`), or ``p2c``."""
    if name == "random":
        return random_strategy
    if name in ("roundrobin", "round_robin"):
        return RoundRobin()
    if name == "p2c":
        return P2C()
    raise ValueError(f"unknown selector strategy {name!r}; choose random, roundrobin or p2c")


def to_strategy(value: Strategy | str) -> Strategy:
    """A strategy, or its name (see :func:`strategy_from_name`)."""
    return strategy_from_name(value) if isinstance(value, str) else value
