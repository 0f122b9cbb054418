"""Helpers shared by the conformance suites: unique names, bounded waits, an inbox of deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

__all__ = ["eventually", "unique"]

T = TypeVar("T")


def unique(prefix: str) -> str:
    """A name no other test (or earlier run against a shared server) has used."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def eventually(
    probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], *, timeout: float, what: str
) -> T:
    """Poll ``probe`` until ``check`` holds; AssertionError naming ``what`` after ``timeout`` seconds.

    Only for state in another process (etcd, a multicast peer) that offers nothing to wait on; the
    poll interval is short and the whole wait bounded."""
    last: Any = None
    with trio.move_on_after(timeout):
        while True:
            last = await probe()
            if check(last):
                return last  # type: ignore[no-any-return]
            await trio.sleep(0.02)
    raise AssertionError(f"{what}: not within {timeout}s (last seen: {last!r})")


class Inbox:
    """Collects what a handler received; ``await inbox.wait(n)`` returns once ``n`` items arrived."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = trio.Event()

    def put(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()

    async def wait(self, n: int, timeout: float) -> list[Any]:
        with trio.fail_after(timeout):
            while len(self.items) < n:
                self._changed = trio.Event()
                await self._changed.wait()
        return self.items
