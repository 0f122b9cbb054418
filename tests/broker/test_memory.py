"""MemoryBroker: broadcast vs queue groups, errors, backpressure, sessions."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
import trio
import trio.testing

from trimicro.broker import BrokerMessage, Event, memory
from trimicro.broker.memory import MemoryBroker
from trimicro.config import Options
from trimicro.errors import BrokerError


def counting(counts: Counter[str], name: str):  # type: ignore[no-untyped-def]
    async def handler(event: Event) -> None:
        counts[name] += 1

    return handler


async def test_broadcast_every_subscriber_gets_every_message() -> None:
    counts: Counter[str] = Counter()
    async with MemoryBroker() as broker:
        for name in "abc":
            await broker.subscribe("events", counting(counts, name))
        for i in range(10):
            await broker.publish("events", BrokerMessage({"n": str(i)}, b"x"))
        await trio.testing.wait_all_tasks_blocked()
    assert counts == {"a": 10, "b": 10, "c": 10}
    assert broker.stats.published == 10 and broker.stats.delivered == 30


async def test_queue_group_delivers_each_message_once() -> None:
    counts: Counter[str] = Counter()
    async with MemoryBroker() as broker:
        for name in "abc":
            await broker.subscribe("events", counting(counts, name), queue="workers")
        await broker.subscribe("events", counting(counts, "audit"))
        for _ in range(60):
            await broker.publish("events", BrokerMessage(body=b"x"))
        await trio.testing.wait_all_tasks_blocked()
    assert counts["audit"] == 60
    assert counts["a"] + counts["b"] + counts["c"] == 60
    assert sum(1 for n in "abc" if counts[n]) >= 2  # picked at random: all 60 to one is ~1e-28


async def test_topics_are_separate_and_unknown_topic_is_fine() -> None:
    counts: Counter[str] = Counter()
    async with MemoryBroker() as broker:
        await broker.subscribe("a", counting(counts, "a"))
        await broker.publish("b", BrokerMessage())
        await broker.publish("a", BrokerMessage())
        await trio.testing.wait_all_tasks_blocked()
    assert counts == {"a": 1}


async def test_raising_handler_is_logged_counted_and_delivery_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[bytes] = []

    async def flaky(event: Event) -> None:
        seen.append(event.message.body)
        if event.message.body == b"bad":
            raise ValueError("boom")

    async with MemoryBroker() as broker:
        await broker.subscribe("t", flaky)
        with caplog.at_level(logging.ERROR, logger="trimicro.broker"):
            for body in (b"1", b"bad", b"2", b"bad", b"3"):
                await broker.publish("t", BrokerMessage(body=body))
            await trio.testing.wait_all_tasks_blocked()
    assert seen == [b"1", b"bad", b"2", b"bad", b"3"]
    assert broker.stats.errors == 2 and broker.stats.delivered == 3
    assert sum("raised" in r.getMessage() for r in caplog.records) == 2


async def test_full_buffer_applies_backpressure_to_the_publisher() -> None:
    release = trio.Event()
    handled = 0

    async def slow(event: Event) -> None:
        nonlocal handled
        await release.wait()
        handled += 1

    published = 0
    async with MemoryBroker(buffer_size=4) as broker:
        sub = await broker.subscribe("t", slow)

        async def publisher() -> None:
            nonlocal published
            for _ in range(20):
                await broker.publish("t", BrokerMessage())
                published += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publisher)
            await trio.testing.wait_all_tasks_blocked()
            # one message in the handler, four buffered, the sixth publish waits
            assert published == 5 and sub.pending == 4
            release.set()
        await trio.testing.wait_all_tasks_blocked()
    assert handled == 20 and broker.stats.dropped == 0


async def test_handlers_get_private_copies() -> None:
    got: list[dict[str, str]] = []

    async def mutate(event: Event) -> None:
        event.message.header["touched"] = "yes"
        got.append(dict(event.message.header))

    async def read(event: Event) -> None:
        got.append(dict(event.message.header))

    message = BrokerMessage({"k": "v"}, b"")
    async with MemoryBroker() as broker:
        await broker.subscribe("t", mutate)
        await broker.subscribe("t", read)
        await broker.publish("t", message)
        await trio.testing.wait_all_tasks_blocked()
    assert {"k": "v"} in got and message.header == {"k": "v"}


async def test_unsubscribe_stops_delivery() -> None:
    counts: Counter[str] = Counter()
    async with MemoryBroker() as broker:
        sub = await broker.subscribe("t", counting(counts, "a"))
        await broker.publish("t", BrokerMessage())
        await trio.testing.wait_all_tasks_blocked()
        await sub.unsubscribe()
        await broker.publish("t", BrokerMessage())
        await trio.testing.wait_all_tasks_blocked()
    assert counts == {"a": 1}


async def test_unsubscribe_from_inside_the_handler() -> None:
    calls = 0
    sub = None

    async def once(event: Event) -> None:
        nonlocal calls
        calls += 1
        assert sub is not None
        await sub.unsubscribe()

    async with MemoryBroker() as broker:
        sub = await broker.subscribe("t", once)
        await broker.publish("t", BrokerMessage())
        await broker.publish("t", BrokerMessage())
        await trio.testing.wait_all_tasks_blocked()
    assert calls == 1


async def test_subscribe_outside_async_with_is_an_error() -> None:
    broker = MemoryBroker()
    with pytest.raises(BrokerError, match="async with"):
        await broker.subscribe("t", counting(Counter(), "a"))


async def test_one_shared_broker_serves_several_owners() -> None:
    """Two services in one process enter the same broker; each owns its own subscribers."""
    broker = memory.from_options(Options())
    assert broker is memory.from_options(Options(broker="memory")) and broker.address == "memory"
    counts: Counter[str] = Counter()

    async def service(name: str, leave: trio.Event, task_status: trio.TaskStatus[None]) -> None:
        async with broker:
            await broker.subscribe("shared", counting(counts, name))
            task_status.started()
            await leave.wait()

    leave_a, leave_b = trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(service, "a", leave_a)
        await nursery.start(service, "b", leave_b)
        await broker.publish("shared", BrokerMessage())
        await trio.testing.wait_all_tasks_blocked()
        leave_a.set()
        await trio.testing.wait_all_tasks_blocked()
        await broker.publish("shared", BrokerMessage())
        await trio.testing.wait_all_tasks_blocked()
        leave_b.set()
    assert counts == {"a": 1, "b": 2}


async def test_errors_in_the_body_propagate_unwrapped() -> None:
    with pytest.raises(KeyError):
        async with MemoryBroker():
            raise KeyError("x")
