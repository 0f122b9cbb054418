"""Shared fixtures: a greeter handler on the test protos, memory registries, a socket-friendly clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trimicro
from tests.protos.greeter_pb2 import HelloRequest, HelloResponse, SlowRequest, SlowResponse


class Greeter:
    """The greeter used across tests; records what it saw."""

    def __init__(self, tag: str = "") -> None:
        self.tag = tag
        self.calls = 0
        self.cancelled = 0
        self.started = trio.Event()
        self.release = trio.Event()

    async def Hello(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
        self.calls += 1
        suffix = f" from {self.tag}" if self.tag else ""
        return HelloResponse(greeting=f"Hello {req.name}{suffix}")

    async def Fail(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
        raise trimicro.errors.bad_request("greeter", "bad name %s", req.name)

    async def Crash(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
        raise ZeroDivisionError("boom")

    async def Slow(self, req: SlowRequest, ctx: trimicro.Context) -> SlowResponse:
        self.started.set()
        try:
            await trio.sleep(req.sleep_ms / 1000)
        except trio.Cancelled:
            self.cancelled += 1
            raise
        return SlowResponse(slept_ms=req.sleep_ms)

    async def Gate(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
        """Blocks until the test releases it: an in-flight call under the test's control."""
        self.started.set()
        await self.release.wait()
        return HelloResponse(greeting=f"Hello {req.name}")

    async def Meta(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
        return HelloResponse(greeting=",".join(f"{k}={v}" for k, v in sorted(ctx.metadata.items())))


@pytest.fixture
def greeter() -> Greeter:
    return Greeter()


@pytest.fixture
def registry() -> trimicro.registry.MemoryRegistry:
    return trimicro.registry.MemoryRegistry()


@pytest.fixture
def socket_clock() -> trio.testing.MockClock:
    """An autojump clock that only jumps after 20 ms of real idleness, so loopback I/O completes first."""
    return trio.testing.MockClock(autojump_threshold=0.02)


__all__ = ["Greeter", "HelloRequest", "HelloResponse"]
