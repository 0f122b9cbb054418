"""Deadline-aware retries: per-attempt timeouts, a retry budget, server pushback and hedging.

One call has one deadline (its timeout, capped by any enclosing one). Within it:

- **Per-attempt timeout.** While retries remain, an attempt gets ``client_attempt_timeout`` or, by
  default, a third of the time left (at least ``ATTEMPT_FLOOR``); the last attempt gets all that is
  left. (Not for calls with ``address=``: their retry would go to the same node.) A node that takes the connection and never answers (SIGSTOPped, wedged) so costs one attempt,
  and the retry goes to another node (the selector's Next does not repeat a node while another is
  left) with time to spare. The timed-out attempt raises :class:`~trimicro.errors.AttemptTimeout`
  (a TransportError: retryable, and a node failure for outlier ejection); the ``Timeout`` header
  carries the attempt's deadline, so the server gives up when the client does.
- **Retry budget** (gRFC A6 retry throttling), per service: ``client_retry_budget`` tokens, one taken
  by each failed attempt, ``client_retry_budget_ratio`` given back by each success; retries (and
  hedges) are allowed only while more than half the tokens are left. When every node fails, retries
  stop multiplying the load after a few calls, and come back as calls succeed again. The default
  (100 tokens, 0.1) is larger than A6's example (10): the handful of failures it takes to eject a bad
  node must not use up half the budget, or the calls right after would lose their retries.
- **Pushback.** A reply carrying ``Micro-Retry-After`` (a duration) or gRPC's
  ``grpc-retry-pushback-ms`` delays the retry by that much (if the deadline allows); a negative or
  unreadable value means "do not retry" (A6).
- **Hedging** (opt-in, ``client_hedge_delay``): after the delay with no answer, a second attempt goes
  to another node; the first answer wins and the others are cancelled (their nursery is). Hedges
  count as retries: at most ``retries`` extra attempts, and only within the budget.

Every node an attempt used is marked exactly once (``selector.mark``): with the attempt's error, or
``trio.Cancelled`` when the attempt was abandoned (a losing hedge, a caller that left), which the
selector does not count against the node. An attempt cut by the call's own deadline is marked as an
AttemptTimeout: the node did not answer in time.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .. import errors
from .._metadata import GRPC_RETRY_PUSHBACK_MS, MICRO_RETRY_AFTER
from ..config import Options, parse_duration
from ..errors import AttemptTimeout, MicroError, ServiceNotFound, TransportError
from ..registry import Node
from ..selector import Next

if TYPE_CHECKING:
    from ._client import CallRequest, Client

__all__ = ["ATTEMPT_FLOOR", "Retrier", "RetryBudget", "attach_pushback", "pushback_of"]

#: No attempt gets less than this (unless the call has less left): below it, a healthy node's answer
#: can miss it for no fault of its own.
ATTEMPT_FLOOR = 0.05
_SHARE = 3.0  # an attempt with retries left gets 1/_SHARE of the time left

_PUSHBACK = "_trimicro_pushback"
_RETRY_AFTER = MICRO_RETRY_AFTER.lower()
_PUSHBACK_MS = GRPC_RETRY_PUSHBACK_MS.lower()


def attach_pushback(exc: MicroError, header: Mapping[str, str]) -> MicroError:
    """Record the reply's pushback (seconds; negative: do not retry) on ``exc``, if it has one."""
    value: float | None = None
    for key, raw in header.items():
        low = key.lower()
        if low == _RETRY_AFTER:
            try:
                value = parse_duration(raw)
            except ValueError:
                value = -1.0
        elif low == _PUSHBACK_MS:
            value = int(raw) / 1000.0 if raw.strip().lstrip("-").isdigit() else -1.0
    if value is not None:
        setattr(exc, _PUSHBACK, value)
    return exc


def pushback_of(exc: BaseException | None) -> float | None:
    value = getattr(exc, _PUSHBACK, None)
    return value if isinstance(value, float) else None


def _backoff(attempt: int) -> float:
    """Exponential backoff: 1 ms, 10 ms, 100 ms, ... capped at 1 s (Go Micro's is attempt**e x 100 ms)."""
    return 0.0 if attempt <= 0 else min(10 ** (attempt - 1) / 1000.0, 1.0)


@attrs.define(eq=False)
class RetryBudget:
    """gRFC A6 retry throttling, one bucket per service; ``max_tokens=0`` disables it."""

    max_tokens: float = 100.0
    ratio: float = 0.1
    _tokens: dict[str, float] = attrs.field(factory=dict)

    def tokens(self, service: str) -> float:
        return self._tokens.get(service, self.max_tokens)

    def allow(self, service: str) -> bool:
        return not self.max_tokens or self.tokens(service) > self.max_tokens / 2

    def failure(self, service: str) -> None:
        if self.max_tokens:
            self._tokens[service] = max(0.0, self.tokens(service) - 1.0)

    def success(self, service: str) -> None:
        if self.max_tokens and service in self._tokens:
            tokens = self._tokens[service] + self.ratio
            if tokens >= self.max_tokens:
                del self._tokens[service]  # full again: forget it (bounded memory)
            else:
                self._tokens[service] = tokens


CallNode = Callable[["CallRequest", Node, float], Awaitable[Any]]


@attrs.define(eq=False)
class Retrier:
    """The attempts of a call; one per client (it holds the budget and the counters)."""

    attempt_timeout: float = 0.0  # 0: automatic
    hedge_delay: float = 0.0  # 0: no hedging
    budget: RetryBudget = attrs.field(factory=RetryBudget)
    retries: int = 0
    throttled: int = 0
    hedges: int = 0
    attempt_timeouts: int = 0
    pushbacks: int = 0

    @classmethod
    def from_options(cls, options: Options) -> Retrier:
        return cls(
            options.client_attempt_timeout,
            options.client_hedge_delay,
            RetryBudget(options.client_retry_budget, options.client_retry_budget_ratio),
        )

    def stats(self) -> dict[str, Any]:
        return {
            "retries": self.retries,
            "retries_throttled": self.throttled,
            "hedges": self.hedges,
            "attempt_timeouts": self.attempt_timeouts,
            "pushbacks": self.pushbacks,
            "retry_tokens": {s: round(t, 2) for s, t in self.budget._tokens.items()},
        }

    def _limit(self, deadline: float, attempts_left: int) -> float | None:
        """This attempt's timeout, or None for "until the call's deadline"."""
        if attempts_left <= 0:
            return None
        if self.attempt_timeout:
            return self.attempt_timeout
        if deadline == math.inf:
            return None  # no deadline: nothing to take a share of
        return max((deadline - trio.current_time()) / _SHARE, ATTEMPT_FLOOR)

    async def attempt(
        self, client: Client, req: CallRequest, node: Node, deadline: float, attempts_left: int
    ) -> Any:
        """One attempt on ``node``; marks the node with its outcome, exactly once."""
        # A call to a fixed address retries the same node: no other node to move to, so no share.
        limit = None if req.address else self._limit(deadline, attempts_left)
        selector = client.selector if not req.address else None
        try:
            if limit is None:  # the call's own deadline (its scope is outside) bounds this attempt
                result = await client._call_node(req, node, deadline)
            else:
                until = min(deadline, trio.current_time() + limit)
                with trio.move_on_at(until) as scope:
                    result = await client._call_node(req, node, until)
                if scope.cancelled_caught:
                    self.attempt_timeouts += 1
                    raise AttemptTimeout(f"{node.address}: no answer within {limit:.3f}s")
        except (MicroError, TransportError) as exc:
            if selector is not None:
                selector.mark(req.service, node, exc)
            if client.retry(exc):
                self.budget.failure(req.service)
            raise
        except BaseException as exc:
            if selector is not None:
                timed_out = deadline != math.inf and trio.current_time() >= deadline
                selector.mark(
                    req.service, node, AttemptTimeout("call deadline exceeded") if timed_out else exc
                )
            raise
        if selector is not None:
            selector.mark(req.service, node, None)
        self.budget.success(req.service)
        return result

    def _may_retry(self, client: Client, req: CallRequest, exc: BaseException) -> bool:
        if not client.retry(exc):
            return False
        pushback = pushback_of(exc)
        if pushback is not None and pushback < 0:
            return False
        if not self.budget.allow(req.service):
            self.throttled += 1
            return False
        return True

    async def run(self, client: Client, req: CallRequest, deadline: float, next_node: Next) -> Any:
        """All attempts of one call, within ``deadline`` (trio clock; inf for none)."""
        if self.hedge_delay and req.retries and not req.address:
            return await self._hedged(client, req, deadline, next_node)
        attempts = req.retries + 1
        last: BaseException | None = None
        for attempt in range(attempts):
            if attempt:
                assert last is not None
                if not self._may_retry(client, req, last):
                    break
                pushback = pushback_of(last)
                if pushback is not None:
                    self.pushbacks += 1
                delay = max(_backoff(attempt), pushback or 0.0)
                if trio.current_time() + delay >= deadline:
                    break
                await trio.sleep(delay)
                self.retries += 1
            node = _pick(req, next_node)
            try:
                return await self.attempt(client, req, node, deadline, attempts - attempt - 1)
            except (MicroError, TransportError) as exc:
                last = exc
        raise _final(req, last)

    async def _hedged(self, client: Client, req: CallRequest, deadline: float, next_node: Next) -> Any:
        """Attempts that overlap: a new one after each ``hedge_delay`` without an answer (or at once
        after a retryable failure), up to ``retries`` extra; the first success wins."""
        send, recv = trio.open_memory_channel[tuple[bool, Any]](math.inf)
        attempts = req.retries + 1
        started = outstanding = 0
        last: BaseException | None = None
        won = False
        result: Any = None

        async def one(node: Node) -> None:
            try:
                value = await self.attempt(client, req, node, deadline, 0)
            except (MicroError, TransportError) as exc:
                send.send_nowait((False, exc))
            else:
                send.send_nowait((True, value))

        async with trio.open_nursery() as nursery:

            def launch() -> None:
                nonlocal started, outstanding
                nursery.start_soon(one, _pick(req, next_node))
                started += 1
                outstanding += 1

            launch()
            while True:
                more = started < attempts
                with trio.move_on_after(self.hedge_delay if more else math.inf) as wait:
                    ok, value = await recv.receive()
                if wait.cancelled_caught:  # no answer yet: hedge to another node
                    if self.budget.allow(req.service):
                        self.hedges += 1
                        launch()
                    else:
                        self.throttled += 1
                        started = attempts  # no more hedges for this call
                    continue
                outstanding -= 1
                if ok:
                    won, result = True, value
                    break
                last = value
                if more and self._may_retry(client, req, value):
                    self.retries += 1
                    launch()
                elif not outstanding:
                    break
                else:
                    started = attempts if not client.retry(value) else started
            nursery.cancel_scope.cancel()
        if won:
            return result
        raise _final(req, last)


def _pick(req: CallRequest, next_node: Next) -> Node:
    try:
        return next_node()
    except ServiceNotFound:
        raise errors.not_found(_CLIENT_ID, "service %s: no nodes", req.service) from None


_CLIENT_ID = "go.micro.client"


def _final(req: CallRequest, last: BaseException | None) -> BaseException:
    """What the caller sees when no attempt succeeded."""
    if isinstance(last, AttemptTimeout):
        return errors.timeout(
            _CLIENT_ID, "call %s.%s: deadline exceeded (%s)", req.service, req.endpoint, last
        )
    if isinstance(last, TransportError):
        return errors.internal_server_error(_CLIENT_ID, "%s", last)
    assert last is not None
    return last
