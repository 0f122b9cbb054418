"""``Debug.Health`` and ``Debug.Stats``, as Go Micro's debug handler, answered as JSON-able dicts."""

from __future__ import annotations

import gc
import resource
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from ..server import Stats

__all__ = ["Debug"]


@attrs.define(eq=False)
class Debug:
    """Registered with ``internal=True`` so it is callable but not advertised."""

    stats: Stats
    #: name -> object with ``stats() -> dict`` (the selector: ejections; the client: retries, throttled
    #: retries, hedges; the server's handler limit), each shown under its name
    sources: dict[str, Any] = attrs.field(factory=dict)
    #: more fields (trimicro/observability: latency p50/p99 from the metrics), when enabled
    extra: Callable[[], dict[str, Any]] | None = None

    async def Health(self, req: Any, ctx: Any) -> dict[str, Any]:
        return {"status": "ok"}

    async def Stats(self, req: Any, ctx: Any) -> dict[str, Any]:
        s = self.stats
        # ru_maxrss is KiB on Linux; Go Micro reports bytes.
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out: dict[str, Any] = {
            "started": int(s.started),
            "uptime": int(time.time() - s.started),
            "memory": memory,
            "threads": threading.active_count(),
            "gc": sum(st["collections"] for st in gc.get_stats()),
            "requests": s.requests,
            "errors": s.errors,
            "in_flight": s.in_flight,
        }
        if self.extra is not None:
            extra = self.extra()
            for key in ("p50_ms", "p99_ms"):
                if key in extra:
                    out[key] = extra[key]
        for name, source in self.sources.items():
            stats = getattr(source, "stats", None)
            if callable(stats):
                out[name] = stats()
        return out
