"""NurseryOwner: one lifespan per ``async with``, background tasks cancelled on exit, body errors unwrapped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import pytest
import trio

from trimicro._lifecycle import NurseryOwner


@attrs.define(eq=False)
class Ticker(NurseryOwner):
    interval: float = 1.0
    ticks: int = attrs.field(default=0, init=False)
    closed: int = attrs.field(default=0, init=False)

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._tick)
                yield
                nursery.cancel_scope.cancel()
        finally:
            self.closed += 1

    async def _tick(self) -> None:
        while True:
            await trio.sleep(self.interval)
            self.ticks += 1


async def test_background_task_runs_while_open_and_stops_on_exit(autojump_clock: trio.abc.Clock) -> None:
    ticker = Ticker()
    async with ticker as same:
        assert same is ticker and ticker.is_open
        await trio.sleep(3.5)
    assert ticker.ticks == 3 and ticker.closed == 1 and not ticker.is_open
    await trio.sleep(5)
    assert ticker.ticks == 3


async def test_body_error_comes_out_unwrapped() -> None:
    with pytest.raises(KeyError):
        async with Ticker():
            raise KeyError("x")


async def test_reentrant_sessions_nest(autojump_clock: trio.abc.Clock) -> None:
    ticker = Ticker()
    async with ticker:
        async with ticker:
            await trio.sleep(1.5)
        assert ticker.closed == 1 and ticker.is_open
    assert ticker.closed == 2


async def test_sessions_of_different_tasks_close_in_any_order(autojump_clock: trio.abc.Clock) -> None:
    # A shared resource (the memory broker under two services): the first task to enter leaves first,
    # and each task's exit closes its own session, not the most recent one of another task.
    ticker = Ticker()
    first_in, second_in, first_out = trio.Event(), trio.Event(), trio.Event()

    async def first() -> None:
        async with ticker:
            first_in.set()
            await second_in.wait()
        first_out.set()

    async def second() -> None:
        await first_in.wait()
        async with ticker:
            second_in.set()
            await first_out.wait()
            assert ticker.closed == 1 and ticker.is_open
            await trio.sleep(1.5)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        nursery.start_soon(second)
    assert ticker.closed == 2 and not ticker.is_open
