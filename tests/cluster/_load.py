"""A bounded load phase: ``calls`` Greeter.Hello calls (or as many as fit in ``duration`` seconds) from
``callers`` tasks, as fast as they go; each call's latency is kept for p50/p99."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import attrs
import trio

from tests.protos.greeter_pb2 import HelloRequest, HelloResponse
from trimicro.client import Client
from trimicro.errors import MicroError

SERVICE = "greeter"


@attrs.define(eq=False)
class Phase:
    """Failures are kept, answers counted per node (the greeting names it)."""

    name: str
    calls: int
    callers: int = 8
    timeout: float = 1.0
    ok: int = 0
    failed: list[MicroError] = attrs.field(factory=list)
    by_node: Counter[str] = attrs.field(factory=Counter)
    seconds: float = 0.0
    duration: float = 0.0  # > 0: stop issuing calls after this long instead of after ``calls``
    latencies: list[float] = attrs.field(factory=list)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    async def run(self, client: Client) -> Phase:
        issued = 0

        async def caller(i: int) -> None:
            nonlocal issued
            while (issued < self.calls or self.duration) and trio.current_time() < end:
                issued += 1
                began = trio.current_time()
                try:
                    rsp = await client.call(
                        SERVICE, "Greeter.Hello", HelloRequest(name=f"c{i}"),
                        response_type=HelloResponse, timeout=self.timeout,
                    )  # fmt: skip
                except MicroError as exc:
                    self.failed.append(exc)
                else:
                    self.latencies.append(trio.current_time() - began)
                    self.ok += 1
                    self.by_node[rsp.greeting.rpartition(" from ")[2]] += 1

        start = trio.current_time()
        end = start + self.duration if self.duration else math.inf
        async with trio.open_nursery() as nursery:
            for i in range(self.callers):
                nursery.start_soon(caller, i)
        self.seconds = trio.current_time() - start
        print(f"[{self.name}] {self.summary()}", flush=True)
        return self

    def percentile(self, q: float) -> float:
        """Latency (seconds) of successful calls at quantile ``q`` (0..1); 0 with none."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> str:
        return (
            f"calls={self.ok + len(self.failed)} ok={self.ok} failed={len(self.failed)} "
            f"{self.rate:.0f} calls/s in {self.seconds:.2f}s by_node={dict(self.by_node)}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "failed": [str(e) for e in self.failed[:5]],
            "failures": len(self.failed),
            "seconds": self.seconds,
            "rate": self.rate,
            "by_node": dict(self.by_node),
            "p50": self.percentile(0.5),
            "p99": self.percentile(0.99),
            "max": max(self.latencies, default=0.0),
        }
