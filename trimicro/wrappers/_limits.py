"""Client-side limits: how many calls may be in flight, and how many may start per second.

Both protect the *callee* from this caller (a bulkhead and a throttle) and fail with a typed 429, which
the client does not retry. A call that has to wait for its turn waits at most ``max_wait`` (default:
not at all for the rate limit, its own timeout for the concurrency limit), and whatever it waited is
taken off its timeout, so the deadline the caller set still holds end to end.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import trio

from .. import errors
from ..client import CallFunc, CallRequest, ClientWrapper
from ._breaker import by_service

__all__ = ["TokenBucket", "concurrency_limit", "rate_limit"]

CLIENT_ID = "go.micro.client"


@attrs.define(eq=False)
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; starts full. Sans-IO: takes ``now``."""

    rate: float
    burst: float
    tokens: float = attrs.field(default=-1.0)
    at: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def _fill(self, now: float) -> None:
        if self.at is not None and now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now if self.at is None else max(self.at, now)

    def wait_time(self, now: float) -> float:
        """Seconds until a token is there (0: now)."""
        self._fill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self, now: float) -> bool:
        """Take a token if there is one."""
        self._fill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def _left(req: CallRequest, waited: float) -> None:
    if req.timeout is not None:
        req.timeout = max(req.timeout - waited, 0.0)


def rate_limit(
    rate: float,
    *,
    burst: float | None = None,
    max_wait: float = 0.0,
    key: Callable[[CallRequest], str] = by_service,
) -> ClientWrapper:
    """At most ``rate`` calls per second per key (a token bucket of ``burst``, default ``max(1, rate)``);
    a call finding no token waits up to ``max_wait`` for one, else fails with 429."""
    if not rate > 0 or (burst is not None and burst < 1) or max_wait < 0:
        raise ValueError("rate_limit: rate > 0, burst >= 1, max_wait >= 0")
    size = max(1.0, rate) if burst is None else burst
    buckets: dict[str, TokenBucket] = {}

    def wrapper(next_call: CallFunc) -> CallFunc:
        async def call(req: CallRequest) -> Any:
            k = key(req)
            bucket = buckets.get(k)
            if bucket is None:
                bucket = buckets[k] = TokenBucket(rate, size)
            start = trio.current_time()
            while not bucket.take(trio.current_time()):
                wait = bucket.wait_time(trio.current_time())
                if trio.current_time() + wait - start > max_wait:
                    raise errors.MicroError(CLIENT_ID, 429, f"rate limit: {k} over {rate:g}/s")
                await trio.sleep(wait)
            _left(req, trio.current_time() - start)
            return await next_call(req)

        return call

    return wrapper


def concurrency_limit(
    limit: int, *, max_wait: float | None = None, key: Callable[[CallRequest], str] = by_service
) -> ClientWrapper:
    """At most ``limit`` calls in flight per key; a call beyond waits its turn (in order) for up to
    ``max_wait`` seconds (default: up to its own timeout), else fails with 429."""
    if limit < 1 or (max_wait is not None and max_wait < 0):
        raise ValueError("concurrency_limit: limit >= 1, max_wait >= 0")
    limiters: dict[str, trio.CapacityLimiter] = {}

    def wrapper(next_call: CallFunc) -> CallFunc:
        async def call(req: CallRequest) -> Any:
            k = key(req)
            limiter = limiters.get(k)
            if limiter is None:
                limiter = limiters[k] = trio.CapacityLimiter(limit)
            bound = (
                max_wait if max_wait is not None else (req.timeout if req.timeout is not None else math.inf)
            )
            start = trio.current_time()
            token = object()  # each call is its own borrower (one task may make many calls)
            acquired = False
            with trio.move_on_after(bound):
                await limiter.acquire_on_behalf_of(token)
                acquired = True
            if not acquired:
                raise errors.MicroError(CLIENT_ID, 429, f"concurrency limit: {limit} calls to {k} in flight")
            try:
                _left(req, trio.current_time() - start)
                return await next_call(req)
            finally:
                limiter.release_on_behalf_of(token)

        return call

    return wrapper
