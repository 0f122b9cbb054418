"""The memory event stream: groups, durability of a group's place, ack/nack/redelivery on trio's clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import trio
import trio.testing

from trimicro.events import Event, EventsError, MemoryStream, decode_event, encode_event


async def next_event(consumer: object, timeout: float = 5.0) -> Event:
    with trio.fail_after(timeout):
        return await consumer.__anext__()  # type: ignore[attr-defined, no-any-return]


def test_event_json_is_gos() -> None:
    ts = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    data = encode_event(Event("id1", "orders", ts, {"k": "v"}, b"\x00{}"))
    obj = json.loads(data)
    assert obj == {
        "ID": "id1",
        "Topic": "orders",
        "Timestamp": "2026-01-02T03:04:05.123456Z",
        "Metadata": {"k": "v"},
        "Payload": "AHt9",
    }
    back = decode_event(
        b'{"ID":"x","Topic":"t","Timestamp":"2026-01-02T03:04:05.123456789+01:00","Metadata":null,"Payload":"aGk="}'
    )
    assert (back.id, back.payload, back.metadata) == ("x", b"hi", {})
    assert back.timestamp == datetime(2026, 1, 2, 2, 4, 5, 123456, tzinfo=UTC)
    with pytest.raises(EventsError):
        decode_event(b'{"Payload": 5}')


async def test_groups_share_and_split(autojump_clock: trio.testing.MockClock) -> None:
    stream = MemoryStream()
    async with (
        stream.consume("t", group="a") as a1,
        stream.consume("t", group="a") as a2,
        stream.consume("t", group="b") as b,
    ):
        for i in range(4):
            await stream.publish("t", {"n": i})
        got_b = [(await next_event(b)).unmarshal()["n"] for _ in range(4)]
        got_a = [(await next_event(a1)).unmarshal()["n"], (await next_event(a2)).unmarshal()["n"]]
        got_a += [(await next_event(a1)).unmarshal()["n"], (await next_event(a2)).unmarshal()["n"]]
    assert got_b == [0, 1, 2, 3]
    assert sorted(got_a) == [0, 1, 2, 3]  # each event to one member of the group


async def test_a_group_keeps_its_place_and_new_groups_start_new(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stream = MemoryStream()
    async with stream.consume("t", group="g") as c:
        await stream.publish("t", b"1")
        assert (await next_event(c)).payload == b"1"
    await stream.publish("t", b"2")  # nobody connected: kept for the group
    async with stream.consume("t", group="g") as c:
        assert (await next_event(c)).payload == b"2"
    async with stream.consume("t", group="late") as c:
        await stream.publish("t", b"3")
        assert (await next_event(c)).payload == b"3"  # a new group starts after what existed
    async with stream.consume("t", group="replay", offset=datetime.now(UTC) - timedelta(hours=1)) as c:
        assert [(await next_event(c)).payload for _ in range(3)] == [b"1", b"2", b"3"]


async def test_unacked_is_redelivered_after_ack_wait_and_nack_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stream = MemoryStream()
    async with stream.consume("t", group="g", auto_ack=False, ack_wait=10, retry_limit=3) as c:
        await stream.publish("t", b"x")
        first = await next_event(c)
        assert first.delivery == 1
        start = trio.current_time()
        again = await next_event(c, timeout=60)  # not acked: back after ack_wait
        assert again.delivery == 2 and trio.current_time() - start >= 10
        await again.nack()
        third = await next_event(c)
        assert third.delivery == 3 and trio.current_time() - start < 11
        # retry_limit 3: no fourth delivery
        with trio.move_on_after(100):
            await c.__anext__()
            pytest.fail("delivered beyond retry_limit")


async def test_auto_ack_acks_when_the_next_is_asked_for(autojump_clock: trio.testing.MockClock) -> None:
    stream = MemoryStream()
    async with stream.consume("t", group="g", ack_wait=5) as c:
        await stream.publish("t", b"a")
        await stream.publish("t", b"b")
        assert (await next_event(c)).payload == b"a"
        assert (await next_event(c)).payload == b"b"  # asking acked "a"
    # "b" was being handled when the consumer left: it comes back to the group
    async with stream.consume("t", group="g", ack_wait=5) as c:
        redelivered = await next_event(c, timeout=60)
        assert (redelivered.payload, redelivered.delivery) == (b"b", 2)


async def test_missing_topic_is_an_error() -> None:
    with pytest.raises(EventsError):
        await MemoryStream().publish("", b"")
