"""The wakeup primitives of trimicro.transport._sync: waiting on either of two signals (the client's
read baton needs it), cancellation, and the edge-triggered Notifier."""

from __future__ import annotations

import trio
import trio.testing

from trimicro.transport._sync import Notifier, Signal, wait_any


async def test_wait_any_wakes_on_either_signal_and_forgets_the_other() -> None:
    a, b = Signal(), Signal()
    woke: list[str] = []

    async def waiter(name: str) -> None:
        await wait_any(a, b)
        woke.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, "1")
        nursery.start_soon(waiter, "2")
        await trio.testing.wait_all_tasks_blocked()
        b.set()
    assert sorted(woke) == ["1", "2"]
    assert not a._parked and not b._parked  # nothing left parked on the signal that never fired
    a.set()
    with trio.fail_after(1):
        await a.wait()  # already set: returns at once


async def test_wait_any_is_cancellable() -> None:
    a, b = Signal(), Signal()
    with trio.move_on_after(0.01) as scope:
        await wait_any(a, b)
    assert scope.cancelled_caught
    assert not a._parked and not b._parked


async def test_notifier_wakes_those_that_captured_the_event_and_not_later_waiters() -> None:
    notifier = Notifier()
    early = notifier.event  # captured before the condition changes
    notifier.fire()
    assert early.is_set()
    late = notifier.event
    assert late is not early and not late.is_set()  # the next waiter waits for the next fire
    with trio.fail_after(1):
        await early.wait()
