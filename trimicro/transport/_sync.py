"""Wakeups the HTTP/2 connections need and ``trio.Event`` cannot give: waiting on *either* of two events.

A client-side HTTP/2 caller must sleep until its own data arrives **or** the read baton comes free
(see :mod:`trimicro.transport._h2conn`), and the server's writer until there is something to write
**or** a peer's window opens. ``trio.Event`` has no "wait for any", and racing two ``Event.wait``
calls costs a nursery and two tasks per wait, on the hottest path of every call. So:

- :class:`Signal` is a one-shot event (set once, never cleared) with ``__slots__`` and no lock;
- :func:`wait_any` parks the current task on several signals at once; the first to fire reschedules
  it exactly once and the others forget it, and a cancelled waiter unparks itself, so it is an
  ordinary cancellable trio checkpoint;
- :class:`Notifier` turns a stream of one-shot signals into an edge-triggered wakeup: a waiter
  captures ``notifier.event``, re-checks its condition, then waits, so a ``fire`` between the check
  and the wait is never lost.

Everything here runs in one trio thread and is not thread-safe (nothing in trimicro needs that).
"""

from __future__ import annotations

from typing import Any

import trio

__all__ = ["Notifier", "Signal", "wait_any"]


class Signal:
    """A one-shot event (like :class:`trio.Event`) that a task can wait on together with others
    (:func:`wait_any`). ``flag`` is public for the hot paths that test it without a call."""

    __slots__ = ("_parked", "flag")

    def __init__(self) -> None:
        self.flag = False
        self._parked: dict[_Parked, None] = {}

    def is_set(self) -> bool:
        return self.flag

    def set(self) -> None:
        """Set the flag and wake every task parked on this signal (once; later calls do nothing)."""
        if self.flag:
            return
        self.flag = True
        parked, self._parked = self._parked, {}
        for p in parked:
            p.wake()

    async def wait(self) -> None:
        """Return once the signal is set (a checkpoint either way)."""
        await wait_any(self)


class _Parked:
    """One task parked on one or more signals; the first to fire wakes it, exactly once.

    It is registered with every signal it waits on and removes itself from all of them when woken
    or cancelled, so a signal that never fires holds no reference to a task that left."""

    __slots__ = ("signals", "task", "woken")

    def __init__(self, signals: tuple[Signal, ...]) -> None:
        self.task = trio.lowlevel.current_task()
        self.signals = signals
        self.woken = False

    def unpark(self) -> None:
        self.woken = True
        for s in self.signals:
            s._parked.pop(self, None)

    def wake(self) -> None:
        if not self.woken:
            self.unpark()
            trio.lowlevel.reschedule(self.task)


async def wait_any(*signals: Signal) -> None:
    """Return once any of ``signals`` is set (a checkpoint either way; cancellable)."""
    if any(s.flag for s in signals):
        await trio.lowlevel.checkpoint()
        return
    parked = _Parked(signals)
    for s in signals:
        s._parked[parked] = None

    def abort(_: Any) -> trio.lowlevel.Abort:
        parked.unpark()
        return trio.lowlevel.Abort.SUCCEEDED

    await trio.lowlevel.wait_task_rescheduled(abort)


class Notifier:
    """An edge-triggered wakeup: capture ``event``, re-check your condition, then wait on it.

    ``fire`` sets the current signal and installs a fresh one, so every waiter that captured the
    old signal wakes, and a waiter arriving later waits for the *next* fire."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = Signal()

    def fire(self) -> None:
        ev, self.event = self.event, Signal()
        # Signal.set, inlined: a connection fires several notifiers per call.
        ev.flag = True
        if ev._parked:
            parked, ev._parked = ev._parked, {}
            for p in parked:
                p.wake()
