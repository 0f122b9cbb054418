"""Circuit breaker: stop calling a service that keeps failing, and find out cheaply when it is back.

The selector already ejects single bad *nodes*; a breaker protects the caller (and the service) when
the whole *service* is failing: instead of every call waiting out its timeout and its retries, calls
fail at once with a 503 ``circuit open`` while the circuit is open.

States (per key, by default the service name; :func:`by_address` keys per node for calls made with
``address=``):

- **closed**: calls go through; ``failures`` failures in a row, or a share of at least
  ``failure_rate`` of the calls in the last ``window`` seconds (once there are ``min_requests``),
  open the circuit.
- **open**: calls are refused; after ``cool_down`` seconds the circuit half-opens.
- **half-open**: one call (the probe) goes through, the others are refused; its success closes the
  circuit, its failure opens it again for another ``cool_down``.

What counts as a failure: no answer (408, transport errors turned 500 by the client), 5xx from the
service; a 4xx is the caller's business and counts as a success. The state machine
(:class:`Breaker`) is sans-IO: it takes ``now``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

import attrs
import trio

from .. import errors
from ..client import CallFunc, CallRequest, ClientWrapper
from ..errors import MicroError, TransportError

__all__ = ["Breaker", "CircuitBreaker", "by_address", "by_service", "circuit_breaker", "is_failure"]

log = logging.getLogger("trimicro.wrappers")
CLIENT_ID = "go.micro.client"
BreakerState = Literal["closed", "open", "half-open"]


def is_failure(error: BaseException | None) -> bool:
    """Default failure test: no answer in time, no connection, or a 5xx; not a 4xx, not success."""
    if error is None or isinstance(error, trio.Cancelled):
        return False
    if isinstance(error, TransportError):
        return True
    return isinstance(error, MicroError) and (error.code >= 500 or error.code == 408)


def by_service(req: CallRequest) -> str:
    return req.service


def by_address(req: CallRequest) -> str:
    """One circuit per node for calls with ``address=`` (the rest share one per service)."""
    return f"{req.service}@{req.address}" if req.address else req.service


@attrs.define(eq=False)
class Breaker:
    """One circuit; see the module docstring."""

    failures: int = 5
    failure_rate: float = 0.5
    min_requests: int = 20
    window: float = 10.0
    cool_down: float = 5.0
    state: BreakerState = "closed"
    opened_at: float = 0.0
    probe_out: bool = False
    consecutive: int = 0
    outcomes: deque[tuple[float, bool]] = attrs.field(factory=lambda: deque(maxlen=1000))
    opened: int = 0  # times opened
    rejected: int = 0  # calls refused while open / half-open

    def allow(self, now: float) -> bool:
        """May a call go now? (Taking the half-open probe slot if this call is the probe.)"""
        if self.state == "closed":
            return True
        if self.state == "open" and now >= self.opened_at + self.cool_down:
            self.state, self.probe_out = "half-open", False
        if self.state == "half-open" and not self.probe_out:
            self.probe_out = True
            return True
        self.rejected += 1
        return False

    def record(self, now: float, failed: bool) -> BreakerState | None:
        """The outcome of an allowed call; returns the new state if it changed."""
        if self.state == "half-open":
            self.probe_out = False
            if failed:
                return self._open(now)
            self.state, self.consecutive = "closed", 0
            self.outcomes.clear()
            return "closed"
        if self.state == "open":
            return None  # a call from before the circuit opened
        self.consecutive = self.consecutive + 1 if failed else 0
        self.outcomes.append((now, failed))
        while self.outcomes and self.outcomes[0][0] < now - self.window:
            self.outcomes.popleft()
        if not failed:
            return None
        n = len(self.outcomes)
        if (self.failures and self.consecutive >= self.failures) or (
            n >= self.min_requests and sum(f for _, f in self.outcomes) >= self.failure_rate * n
        ):
            return self._open(now)
        return None

    def _open(self, now: float) -> BreakerState:
        self.state, self.opened_at, self.probe_out = "open", now, False
        self.consecutive = 0
        self.outcomes.clear()
        self.opened += 1
        return "open"


@attrs.define(eq=False)
class CircuitBreaker:
    """The client wrapper: a :class:`Breaker` per key (``key(req)``), made by ``new()``."""

    new: Callable[[], Breaker] = Breaker
    key: Callable[[CallRequest], str] = by_service
    failure: Callable[[BaseException | None], bool] = is_failure
    breakers: dict[str, Breaker] = attrs.field(factory=dict)

    def breaker(self, key: str) -> Breaker:
        b = self.breakers.get(key)
        if b is None:
            b = self.breakers[key] = self.new()
        return b

    def __call__(self, next_call: CallFunc) -> CallFunc:
        async def call(req: CallRequest) -> Any:
            key = self.key(req)
            b = self.breaker(key)
            if not b.allow(trio.current_time()):
                raise errors.service_unavailable(CLIENT_ID, "circuit open: %s", key)
            error: BaseException | None = None
            try:
                return await next_call(req)
            except BaseException as exc:
                error = exc
                raise
            finally:
                if isinstance(error, trio.Cancelled):
                    if b.state == "half-open":
                        b.probe_out = False  # the probe was abandoned: let another call probe
                else:
                    changed = b.record(trio.current_time(), self.failure(error))
                    if changed is not None:
                        log.warning("circuit for %s is %s", key, changed)

        return call

    def stats(self) -> dict[str, Any]:
        return {
            k: {"state": b.state, "opened": b.opened, "rejected": b.rejected}
            for k, b in self.breakers.items()
        }


def circuit_breaker(
    *,
    failures: int = 5,
    failure_rate: float = 0.5,
    min_requests: int = 20,
    window: float = 10.0,
    cool_down: float = 5.0,
    key: Callable[[CallRequest], str] = by_service,
) -> CircuitBreaker:
    """A circuit breaker client wrapper (a :class:`CircuitBreaker`; its ``stats()`` shows the circuits)."""
    if failures < 0 or not 0 < failure_rate <= 1 or min_requests < 1 or window <= 0 or cool_down <= 0:
        raise ValueError(
            "circuit_breaker: failures >= 0, 0 < failure_rate <= 1, min_requests >= 1, times > 0"
        )

    def new() -> Breaker:
        return Breaker(failures, failure_rate, min_requests, window, cool_down)

    wrapper = CircuitBreaker(new, key)
    _check: ClientWrapper = wrapper  # it is a ClientWrapper
    return wrapper
