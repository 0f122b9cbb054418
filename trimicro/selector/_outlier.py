"""Outlier ejection: stop sending calls to nodes that fail, while the registry still lists them.

A crashed node is refused at once, but a *zombie* (SIGSTOPped, wedged, its lease still alive) accepts
connections and never answers, and a registry keeps listing it until its TTL lapses — Go Micro's users
lose calls to exactly these (go-micro #2805, #418, #97). gRPC answers with outlier detection (gRFC A50)
and Envoy with the same ejection algorithm; this is ours, fed by the selector's ``mark()``:

- A node is **ejected** after ``consecutive_failures`` node failures in a row, or when, over the last
  ``window`` seconds with at least ``min_requests`` calls, the share of failures reaches
  ``failure_rate``. Only *node* failures count (:func:`is_node_failure`): no connection, a lost
  connection, an attempt that timed out, an overloaded node (502/503/504). A handler's own error
  (4xx, 500) means the node is up and answering: it counts as a success here.
- It stays out for ``ejection_time`` times the number of times it was ejected (capped at
  ``max_ejection_time``); the count decays by one per ``ejection_time`` spent healthy, so a node that
  failed once long ago starts again from the base time.
- Then it is **probed**: it becomes selectable for exactly one call at a time. That call's success
  puts it back; its failure ejects it again for longer. A probe that is never reported is given up
  after ``ejection_time`` and another call may probe.
- At most ``max_ejection_percent`` of a service's nodes are out at once (rounded down), and never all
  of them: ejection can only move load between nodes, never turn a degraded service into a dead one.

The detector is sans-IO: every method takes ``now`` (the selector passes ``trio.current_time()``), so
tests drive it directly. It also counts each node's calls in flight (handed out by the selector, not
yet marked), which the selector uses to keep new calls off a node that is piling them up.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable
from typing import Any, Literal

import attrs
import trio

from ..errors import MicroError, TransportError

__all__ = ["NodeHealth", "OutlierDetector", "OutlierPolicy", "is_node_failure"]

log = logging.getLogger("trimicro.selector")

#: Codes that say the *node* (or whatever fronts it) cannot serve, not that the handler refused.
_NODE_CODES = frozenset({502, 503, 504})
_WINDOW_CAP = 1000  # outcomes kept per node: bounds memory at any call rate


def _positive(_: Any, attribute: Any, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _not_negative(_: Any, attribute: Any, value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _percent(_: Any, attribute: Any, value: float) -> None:
    if not 0 <= value <= 100:
        raise ValueError(f"{attribute.name} must be between 0 and 100, got {value!r}")


def _rate(_: Any, attribute: Any, value: float) -> None:
    if not 0 < value <= 1:
        raise ValueError(f"{attribute.name} must be in (0, 1], got {value!r}")


@attrs.frozen
class OutlierPolicy:
    """When to eject and for how long; see the module docstring. ``max_ejection_percent=0`` disables
    ejection (calls in flight are still counted)."""

    consecutive_failures: int = attrs.field(default=5, validator=_not_negative)  # 0: rule off
    failure_rate: float = attrs.field(default=0.5, validator=_rate)
    min_requests: int = attrs.field(default=10, validator=_positive)
    window: float = attrs.field(default=10.0, validator=_positive)
    ejection_time: float = attrs.field(default=5.0, validator=_positive)
    max_ejection_time: float = attrs.field(default=60.0, validator=_positive)
    max_ejection_percent: float = attrs.field(default=50.0, validator=_percent)

    @classmethod
    def from_options(cls, options: Any) -> OutlierPolicy:
        return cls(
            consecutive_failures=options.selector_consecutive_failures,
            failure_rate=options.selector_failure_rate,
            ejection_time=options.selector_ejection_time,
            max_ejection_time=options.selector_max_ejection_time,
            max_ejection_percent=options.selector_max_ejection_percent,
        )


def is_node_failure(error: BaseException | None) -> bool:
    """Does this outcome say the node is unhealthy (rather than the request or the handler bad)?

    True for transport errors (refused, reset, closed, an attempt's own timeout — the client raises
    :class:`~trimicro.errors.AttemptTimeout`, a TransportError) and for 502/503/504 (overloaded or
    unreachable behind a proxy). False for success, for cancellation, and for any other MicroError: a
    404/400/500 came from a handler that is alive.
    """
    if error is None or isinstance(error, trio.Cancelled):
        return False
    if isinstance(error, TransportError):
        return True
    return isinstance(error, MicroError) and error.code in _NODE_CODES


State = Literal["healthy", "ejected", "probing"]


@attrs.define(eq=False)
class NodeHealth:
    """One node's record. ``until``: end of the ejection (ejected) or of the probe's grace (probing)."""

    state: State = "healthy"
    inflight: int = 0
    consecutive: int = 0
    outcomes: deque[tuple[float, bool]] = attrs.field(factory=lambda: deque(maxlen=_WINDOW_CAP))
    failures: int = 0  # failures among ``outcomes``
    ejections: int = 0  # the multiplier of ``ejection_time``
    until: float = 0.0
    probe_out: bool = False  # a probe call is in flight
    healthy_since: float = 0.0

    def record(self, now: float, failed: bool, window: float) -> None:
        if len(self.outcomes) == self.outcomes.maxlen and self.outcomes[0][1]:
            self.failures -= 1  # about to fall off the full deque
        self.outcomes.append((now, failed))
        self.failures += failed
        self.consecutive = self.consecutive + 1 if failed else 0
        horizon = now - window
        while self.outcomes and self.outcomes[0][0] < horizon:
            _, old = self.outcomes.popleft()
            self.failures -= old

    def reset(self, now: float) -> None:
        self.state = "healthy"
        self.consecutive = self.failures = 0
        self.outcomes.clear()
        self.probe_out = False
        self.healthy_since = now


@attrs.define(eq=False)
class OutlierDetector:
    """Per-service node health, fed by outcomes; tells the selector which nodes not to pick."""

    policy: OutlierPolicy = attrs.field(factory=OutlierPolicy)
    _nodes: dict[str, dict[str, NodeHealth]] = attrs.field(factory=dict, init=False)
    #: node ids per service that are not healthy (ejected or probing): keeps ``blocked`` O(unhealthy)
    _unhealthy: dict[str, set[str]] = attrs.field(factory=dict, init=False)
    ejections_total: int = attrs.field(default=0, init=False)
    reinstated_total: int = attrs.field(default=0, init=False)
    probes_total: int = attrs.field(default=0, init=False)

    def health(self, service: str, node_id: str) -> NodeHealth:
        nodes = self._nodes.setdefault(service, {})
        h = nodes.get(node_id)
        if h is None:
            h = nodes[node_id] = NodeHealth()
        return h

    def size(self, service: str) -> int:
        return len(self._nodes.get(service, ()))

    def inflight(self, service: str, node_id: str) -> int:
        h = self._nodes.get(service, {}).get(node_id)
        return 0 if h is None else h.inflight

    def blocked(self, service: str, now: float) -> frozenset[str]:
        """Node ids not to pick now: ejected ones, and probing ones whose probe call is in flight."""
        ids = self._unhealthy.get(service)
        if not ids:
            return frozenset()
        nodes = self._nodes[service]
        out = []
        for node_id in ids:
            h = nodes[node_id]
            if h.state == "ejected" and h.until <= now:
                h.state, h.probe_out = "probing", False
                log.info("node %s of %s: ejection over, probing it with one call", node_id, service)
            if h.state == "probing" and h.probe_out and h.until <= now:
                h.probe_out = False  # the probe was never reported: let another call probe
            if h.state == "ejected" or h.probe_out:
                out.append(node_id)
        return frozenset(out)

    def acquire(self, service: str, node_id: str, now: float) -> None:
        """The selector handed ``node_id`` out for one call (it will be marked exactly once)."""
        h = self.health(service, node_id)
        h.inflight += 1
        if h.state == "probing" and not h.probe_out:
            h.probe_out = True
            h.until = now + self.policy.ejection_time
            self.probes_total += 1

    def record(self, service: str, node_id: str, error: BaseException | None, now: float, nodes: int) -> None:
        """The outcome of a call to ``node_id``; ``nodes``: how many nodes ``service`` has now."""
        h = self.health(service, node_id)
        h.inflight = max(0, h.inflight - 1)
        if isinstance(error, trio.Cancelled):
            return  # abandoned (a hedge that lost, a caller that left): says nothing of the node
        failed = is_node_failure(error)
        if h.state == "ejected":
            return  # a call started before the ejection: its news is already acted on
        if h.state == "probing":
            if not h.probe_out:
                return  # an old straggler, not the probe
            if failed:
                self._eject(service, node_id, h, now, f"probe failed: {_why(error)}")
            else:
                h.reset(now)
                self._unhealthy[service].discard(node_id)
                self.reinstated_total += 1
                log.info("node %s of %s answered its probe: back in rotation", node_id, service)
            return
        h.record(now, failed, self.policy.window)
        if not failed:
            return
        p = self.policy
        reason = None
        if p.consecutive_failures and h.consecutive >= p.consecutive_failures:
            reason = f"{h.consecutive} consecutive failures, last: {_why(error)}"
        elif len(h.outcomes) >= p.min_requests and h.failures >= p.failure_rate * len(h.outcomes):
            reason = f"{h.failures} of {len(h.outcomes)} calls failed in {p.window:g}s, last: {_why(error)}"
        if reason is not None and self._may_eject(service, nodes):
            self._eject(service, node_id, h, now, reason)

    def _may_eject(self, service: str, nodes: int) -> bool:
        out = len(self._unhealthy.get(service, ()))
        cap = math.floor(nodes * self.policy.max_ejection_percent / 100 + 1e-9)
        return out + 1 <= cap and out + 1 < nodes

    def _eject(self, service: str, node_id: str, h: NodeHealth, now: float, reason: str) -> None:
        p = self.policy
        if h.state == "healthy" and h.ejections:  # forgive one ejection per ejection_time healthy
            h.ejections = max(0, h.ejections - int((now - h.healthy_since) // p.ejection_time))
        h.ejections += 1
        duration = min(p.ejection_time * h.ejections, max(p.max_ejection_time, p.ejection_time))
        h.state, h.until, h.probe_out = "ejected", now + duration, False
        h.consecutive = h.failures = 0
        h.outcomes.clear()
        self._unhealthy.setdefault(service, set()).add(node_id)
        self.ejections_total += 1
        log.warning("node %s of %s ejected for %.1fs (%s)", node_id, service, duration, reason)

    def forget(self, service: str, keep: Iterable[str]) -> None:
        """Drop the records of nodes ``service`` no longer has (called with its full node list)."""
        nodes = self._nodes.get(service)
        if not nodes:
            return
        keep = set(keep)
        for node_id in [n for n in nodes if n not in keep]:
            del nodes[node_id]
            self._unhealthy.get(service, set()).discard(node_id)

    def ejected(self) -> dict[str, list[str]]:
        """Service -> ids of its nodes currently out of rotation (ejected or being probed)."""
        return {s: sorted(ids) for s, ids in self._unhealthy.items() if ids}

    def stats(self) -> dict[str, Any]:
        return {
            "ejections": self.ejections_total,
            "reinstated": self.reinstated_total,
            "probes": self.probes_total,
            "ejected": self.ejected(),
        }


def _why(error: BaseException | None) -> str:
    if isinstance(error, MicroError):
        return f"{error.code} {error.detail}"
    return f"{type(error).__name__}: {error}"
