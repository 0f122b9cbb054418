"""LazyBroker: the real broker opens on first use, in the lazy broker's own nursery, and closes with it."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trimicro.broker import BrokerMessage, Event, LazyBroker
from trimicro.broker.memory import MemoryBroker
from trimicro.errors import BrokerError


async def test_opens_on_first_use_and_closes_with_the_lazy_broker() -> None:
    # As under a Service: one process-wide memory broker; the lazy one enters it (a session of its
    # own) on the first publish and leaves it when it closes.
    shared = MemoryBroker()
    opened: list[MemoryBroker] = []

    def factory() -> MemoryBroker:
        opened.append(shared)
        return shared

    got: list[bytes] = []

    async def handler(event: Event) -> None:
        got.append(event.message.body)

    async with shared:
        await shared.subscribe("t", handler)
        lazy = LazyBroker(factory, name="memory")
        async with lazy:
            assert not opened and lazy.opened is None and lazy.address == ""
            await lazy.publish("t", BrokerMessage({}, b"one"))
            await lazy.publish("t", BrokerMessage({}, b"two"))
            await trio.testing.wait_all_tasks_blocked()
            assert len(opened) == 1 and lazy.opened is shared and lazy.address == "memory"
            assert lazy.is_open
        assert not lazy.is_open and shared.is_open  # our own session is still open
        await lazy.opened.publish("t", BrokerMessage({}, b"three"))
        await trio.testing.wait_all_tasks_blocked()
    assert got == [b"one", b"two", b"three"]


async def test_first_uses_racing_open_one_broker() -> None:
    made: list[MemoryBroker] = []

    def factory() -> MemoryBroker:
        made.append(MemoryBroker())
        return made[-1]

    async with LazyBroker(factory) as lazy, trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(lazy.publish, "t", BrokerMessage())
    assert len(made) == 1


async def test_use_outside_async_with_is_a_broker_error() -> None:
    lazy = LazyBroker(MemoryBroker)
    with pytest.raises(BrokerError):
        await lazy.publish("t", BrokerMessage())
