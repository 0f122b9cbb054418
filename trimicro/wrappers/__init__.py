"""Client wrappers for resilience: a circuit breaker, a concurrency limit and a rate limit.

Each is a plain :data:`~trimicro.client.ClientWrapper`: ``Service(..., client_wrappers=[...])``,
``service.wrap_client(w)`` or ``open_client(wrappers=[...])``. They sit outside the client's retry
loop, so they see one outcome per call (after retries), and their own refusals are typed errors that
the client never retries: 503 ``circuit open``, 429 for the limits (as Go Micro's ratelimiter plugin).
"""

from ._breaker import Breaker as Breaker
from ._breaker import CircuitBreaker as CircuitBreaker
from ._breaker import circuit_breaker as circuit_breaker
from ._limits import TokenBucket as TokenBucket
from ._limits import concurrency_limit as concurrency_limit
from ._limits import rate_limit as rate_limit

__all__ = [
    "Breaker",
    "CircuitBreaker",
    "TokenBucket",
    "circuit_breaker",
    "concurrency_limit",
    "rate_limit",
]
