"""Per-connection budgets for frames a peer can send for free: RST_STREAM, SETTINGS and PING.

Why: each of these costs the receiver work (a handler task started and cancelled, an ack queued, a
settings pass) while costing the sender a dozen bytes, so one abusive connection can slow every
other caller of the process. Measured before this guard: an HTTP/2 "rapid reset" flood
(CVE-2023-44487, HEADERS then RST_STREAM, 1.3 M times) raised a canary's p50 from 1 ms to 361 ms and
was never told to stop; a SETTINGS flood cost other callers 156 ms of p50.

The remedy is Go's and nginx's: count, and past a budget send GOAWAY(ENHANCE_YOUR_CALM) and close.
Each kind has a token bucket (a burst and a refill rate): legitimate peers reset streams (cancelled
calls), change settings rarely and ping for keepalive or BDP estimation, all far below the rates
here; a flood drains the bucket within a fraction of a second. The clock is injected so the budget
is a pure function of (frames, times), tested directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs

from .errors import ErrorCode, H2ProtocolError

__all__ = ["CalmDown", "FloodGuard", "TokenBucket"]


class CalmDown(H2ProtocolError):
    """A budget was exceeded: GOAWAY(ENHANCE_YOUR_CALM) with ``debug_data`` (gRPC clients read
    ``too_many_pings`` there and back their keepalive off)."""

    def __init__(self, message: str, debug_data: bytes = b"") -> None:
        super().__init__(message, ErrorCode.ENHANCE_YOUR_CALM)
        self.debug_data = debug_data


@attrs.define
class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; :meth:`take` spends one if there is one."""

    burst: float
    rate: float
    tokens: float = attrs.field(default=-1.0)
    last: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def take(self, now: float) -> bool:
        if self.last is not None and now > self.last:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@attrs.define
class FloodGuard:
    """The budgets of one connection; a method raises :class:`H2ProtocolError` (ENHANCE_YOUR_CALM)
    once its bucket is empty, which :class:`~.connection.H2Protocol` turns into GOAWAY + close.

    Defaults: 200 resets at once then 100/s (nginx's and Go's fixes allow a similar burst of
    resets per connection), 100 SETTINGS then 10/s, 100 PINGs then 10/s.
    """

    clock: Callable[[], float] = time.monotonic
    resets: TokenBucket = attrs.field(factory=lambda: TokenBucket(200, 100))
    settings: TokenBucket = attrs.field(factory=lambda: TokenBucket(100, 10))
    pings: TokenBucket = attrs.field(factory=lambda: TokenBucket(100, 10))
    min_ping_interval: float | None = None
    max_ping_strikes: int = 2
    #: counters, for tests and statistics
    ping_strikes: int = 0
    last_ping: float | None = None
    #: when our last PING was acknowledged (keepalive, see ``_h2policy``)
    last_ack: float | None = None
    resets_seen: int = 0
    settings_seen: int = 0
    pings_seen: int = 0

    def on_reset(self) -> None:
        self.resets_seen += 1
        if not self.resets.take(self.clock()):
            raise CalmDown(f"too many RST_STREAM ({self.resets_seen})")

    def on_settings(self) -> None:
        self.settings_seen += 1
        if not self.settings.take(self.clock()):
            raise CalmDown(f"too many SETTINGS ({self.settings_seen})")

    def on_ping(self) -> None:
        self.pings_seen += 1
        now = self.clock()
        if not self.pings.take(now):
            raise CalmDown(f"too many PINGs ({self.pings_seen})", b"too_many_pings")
        if self.min_ping_interval is not None:
            if self.last_ping is not None and now - self.last_ping < self.min_ping_interval:
                self.ping_strikes += 1
                if self.ping_strikes > self.max_ping_strikes:
                    raise CalmDown(
                        f"PINGs more often than every {self.min_ping_interval} s", b"too_many_pings"
                    )
            self.last_ping = now

    def on_ping_ack(self) -> None:
        self.last_ack = self.clock()

    def forgive_pings(self) -> None:
        """We sent data: the peer's next PING may be a bandwidth probe, not a keepalive abuse."""
        self.ping_strikes = 0
        self.last_ping = None
