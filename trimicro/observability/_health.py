"""Readiness: one state answering the HTTP probes (``/health/ready``) and ``grpc.health.v1``.

Go Micro v5's health package answers ``/health/live`` (the process is up), ``/health/ready`` (every
critical check passes; 503 and a JSON body saying why otherwise) and ``/health`` (both). A trimicro
service is ready when it is listening, registered, not draining and its broker (when it keeps a
connection, as NATS does) is connected. The Service flips the flags as it starts and stops; the gRPC
health service and the HTTP probes both read them, so a load balancer using either sees the same
answer, and a drain turns both to "not serving" before the node stops answering calls.

Pure Python, no dependencies: every Service has one, observability enabled or not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["Readiness", "broker_problem"]


def broker_problem(broker: Any) -> str | None:
    """Why ``broker`` cannot deliver right now, or None. Duck-typed: a broker whose ``client`` has a
    ``connected`` flag (NATS) is asked; brokers without a standing connection (http, memory, a lazy
    broker not opened yet) are never a reason."""
    if broker is None:
        return None
    try:
        client = getattr(broker, "client", None)
    except Exception:  # NatsBroker.client raises while not connected
        return "broker not connected"
    if getattr(client, "connected", None) is False:
        return "broker disconnected"
    return None


@attrs.define(eq=False)
class Readiness:
    """The flags behind readiness, and who to tell when the answer changes (the gRPC health map)."""

    listening: bool = False
    registered: bool = False
    draining: bool = False
    #: the broker to ask on each probe (None: no broker, or none that can be disconnected)
    broker: Any = None
    started: float = attrs.field(factory=time.time)
    _listeners: list[Callable[[bool], None]] = attrs.field(factory=list, init=False)
    _last: bool | None = attrs.field(default=None, init=False)

    def reasons(self) -> list[str]:
        """Why the service is not ready (empty: ready)."""
        out = []
        if self.draining:
            out.append("draining")
        if not self.listening:
            out.append("not listening")
        if not self.registered:
            out.append("not registered")
        problem = broker_problem(self.broker)
        if problem is not None:
            out.append(problem)
        return out

    @property
    def ready(self) -> bool:
        return not self.reasons()

    def on_change(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(ready)`` now and whenever :meth:`set` changes the answer."""
        self._listeners.append(listener)
        listener(self.ready)

    def set(self, **flags: Any) -> None:
        """Change flags (``listening=``, ``registered=``, ``draining=``, ``broker=``) and notify."""
        for key, value in flags.items():
            if key not in ("listening", "registered", "draining", "broker"):
                raise TypeError(f"unknown readiness flag {key!r}")
            setattr(self, key, value)
        ready = self.ready
        if ready != self._last:
            self._last = ready
            for listener in self._listeners:
                listener(ready)

    def report(self) -> tuple[bool, dict[str, Any]]:
        """``(ready, body)`` for ``/health/ready``: Go Micro's ``{"status": "up"|"down", "checks":
        [...]}`` shape, each check ``{"name", "status", "error"?}``."""
        problem = broker_problem(self.broker)
        checks: list[dict[str, Any]] = []
        for name, ok, why in (
            ("listening", self.listening, "not listening"),
            ("registered", self.registered, "not registered"),
            ("draining", not self.draining, "draining"),
            ("broker", problem is None, problem or ""),
        ):
            check: dict[str, Any] = {"name": name, "status": "up" if ok else "down"}
            if not ok:
                check["error"] = why
            checks.append(check)
        ready = all(c["status"] == "up" for c in checks)
        body: dict[str, Any] = {"status": "up" if ready else "down", "checks": checks}
        if not ready:
            body["reason"] = ", ".join(c["error"] for c in checks if c["status"] == "down")
        return ready, body
