"""Go Micro v5's events/natsjs and trimicro's natsjs events on one ``nats-server -js``: events published
in either language are consumed in the other, and one consumer group spans both."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.interop._go import open_go, run_go
from trimicro.events.natsjs import NatsJetStream
from trimicro.testing.nats import NatsServerNotFound, NatsServerProcess, open_nats_server

pytestmark = pytest.mark.loopback


@pytest.fixture
async def jetstream() -> AsyncIterator[NatsServerProcess]:
    try:
        async with open_nats_server(jetstream=True) as server:
            yield server
    except NatsServerNotFound as exc:
        pytest.skip(str(exc))


async def test_go_publishes_trimicro_consumes(
    go_interop: Path, jetstream: NatsServerProcess, uniq: str
) -> None:
    topic = f"orders{uniq}"
    async with NatsJetStream([jetstream.address]) as js, js.consume(topic, group="py") as events:
        go = await run_go(
            go_interop, ["events-publish", "--address", jetstream.address, "--topic", topic, "--count", "3"]
        )
        assert go.returncode == 0, go.describe()
        got = []
        for _ in range(3):
            with trio.fail_after(10):
                got.append(await events.__anext__())
    assert [e.unmarshal() for e in got] == [{"message": "hello", "n": i} for i in range(3)]
    assert all(e.metadata == {"From": "go"} and e.topic == topic and e.id for e in got)


async def test_trimicro_publishes_go_consumes(
    go_interop: Path, jetstream: NatsServerProcess, uniq: str
) -> None:
    topic = f"orders{uniq}"
    args = [
        "events-consume",
        "--address",
        jetstream.address,
        "--topic",
        topic,
        "--group",
        "go",
        "--count",
        "3",
    ]
    async with NatsJetStream([jetstream.address]) as js, open_go(go_interop, args) as go:
        await go.expect("ready")  # Go created the stream and its durable consumer
        for i in range(3):
            await js.publish(topic, {"n": i}, metadata={"From": "py"})
        consumed = [await go.expect("consumed") for _ in range(3)]
    assert [ev["payload"] for ev in consumed] == [{"n": i} for i in range(3)]
    assert all(ev["metadata"] == {"From": "py"} and ev["topic"] == topic for ev in consumed)


async def test_one_group_spans_go_and_trimicro(
    go_interop: Path, jetstream: NatsServerProcess, uniq: str
) -> None:
    """trimicro creates the group's durable consumer; a Go member binds to it (Go checks that the
    consumer's config matches what it would have created); every event reaches one member only."""
    topic, n = f"jobs{uniq}", 20
    args = [
        "events-consume",
        "--address",
        jetstream.address,
        "--topic",
        topic,
        "--group",
        "workers",
        "--count",
        "1000",
    ]
    ours: list[int] = []
    async with NatsJetStream([jetstream.address]) as js, js.consume(topic, group="workers") as events:
        async with open_go(go_interop, args) as go:
            await go.expect("ready")
            for i in range(n):
                await js.publish(topic, {"n": i})
            with trio.move_on_after(3.0):  # until the group's events are shared out
                while True:
                    ours.append((await events.__anext__()).unmarshal()["n"])
            theirs = [ev["payload"]["n"] for ev in go.all("consumed")]
    assert sorted(ours + theirs) == list(range(n)), (ours, theirs)
    assert theirs, "the Go member got nothing: it did not join the group"
    assert ours
