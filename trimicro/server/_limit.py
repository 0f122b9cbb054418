"""Overload protection: a cap on handlers running at once, a bounded queue, a fast 503 beyond it.

Without a cap, a node under more load than it can serve takes every call, runs them all slowly, and
misses every deadline: the callers' retries then add more load. With ``server_max_concurrent`` set,
at most that many unary handlers run at once; up to ``server_max_queue`` more calls wait their turn
(in order, each at most until its own deadline), and a call arriving when the queue is full gets a
503 at once, with ``Micro-Retry-After`` telling the client how long to back off. The client treats
that 503 as retryable on another node (and its selector as a sign of a node in trouble). A call that
waited in the queue until its deadline gets the usual 408. ``0`` (the default) means no cap.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import trio

from ..errors import MicroError
from ._router import SERVER_ID

__all__ = ["HandlerLimit", "Overloaded"]


class Overloaded(MicroError):
    """The 503 of a full server; ``retry_after`` travels as ``Micro-Retry-After``."""

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(SERVER_ID, 503, detail)
        self.retry_after = retry_after


@attrs.define(eq=False)
class HandlerLimit:
    """``async with limit.slot(deadline):`` around a handler; a no-op when ``max_concurrent`` is 0."""

    max_concurrent: int = 0
    max_queue: int = 100
    retry_after: float = 0.05
    rejected: int = 0
    queued_timeouts: int = 0
    _limiter: trio.CapacityLimiter | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        if self.max_concurrent:
            self._limiter = trio.CapacityLimiter(self.max_concurrent)

    @classmethod
    def from_options(cls, options: Any) -> HandlerLimit:
        return cls(options.server_max_concurrent, options.server_max_queue)

    def slot(self, deadline: float = math.inf, *, exempt: bool = False) -> _Slot:
        """A slot for one call; ``exempt`` (internal endpoints: Debug.Health, Debug.Stats) skips the cap,
        so an overloaded node can still say how it is."""
        if self._limiter is None or exempt:
            return _FREE  # no cap: one shared no-op, nothing allocated per call
        return _Slot(self, deadline)

    def stats(self) -> dict[str, Any]:
        limiter = self._limiter
        if limiter is None:
            return {"max_concurrent": 0}
        st = limiter.statistics()
        return {
            "max_concurrent": self.max_concurrent,
            "running": st.borrowed_tokens,
            "queued": st.tasks_waiting,
            "rejected": self.rejected,
            "queued_timeouts": self.queued_timeouts,
        }


@attrs.define(eq=False, slots=True)
class _Slot:
    limit: HandlerLimit | None
    deadline: float
    token: object = attrs.field(factory=object)
    held: bool = False

    async def __aenter__(self) -> None:
        if self.limit is None or self.limit._limiter is None:
            return
        limiter = self.limit._limiter
        if limiter.available_tokens == 0 and limiter.statistics().tasks_waiting >= self.limit.max_queue:
            self.limit.rejected += 1
            raise Overloaded(
                f"server overloaded: {self.limit.max_concurrent} calls running, {self.limit.max_queue} queued",
                self.limit.retry_after,
            )
        with trio.move_on_at(self.deadline):
            await limiter.acquire_on_behalf_of(self.token)
            self.held = True
        if not self.held:
            self.limit.queued_timeouts += 1
            raise MicroError(SERVER_ID, 408, "deadline exceeded while queued for a handler slot")

    async def __aexit__(self, *exc: object) -> None:
        if self.held:
            self.held = False
            assert self.limit is not None and self.limit._limiter is not None
            self.limit._limiter.release_on_behalf_of(self.token)


_FREE = _Slot(None, math.inf)
