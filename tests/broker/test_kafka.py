"""KafkaBroker against a real Kafka 4.x (KRaft, one node) on 127.0.0.1: one per module, plus one per
test for the tests that stop and restart it."""

from __future__ import annotations

import base64
import json
import queue
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import trio
import trio.testing

pytest.importorskip("confluent_kafka", reason="the kafka extra (confluent-kafka) is not installed")

from confluent_kafka import Consumer, TopicPartition

import trimicro
from tests.protos.greeter_pb2 import Event as EventPb
from trimicro.broker import BrokerMessage, Event
from trimicro.broker.kafka import KafkaBroker, from_options
from trimicro.config import Options
from trimicro.errors import BrokerError
from trimicro.registry import MemoryRegistry
from trimicro.testing._process import free_port
from trimicro.testing.kafka import KafkaNotFound, KafkaProcess, open_kafka

pytestmark = [pytest.mark.loopback, pytest.mark.slow]


@pytest.fixture
async def own_kafka() -> AsyncIterator[KafkaProcess]:
    """A Kafka for this test alone (tests that stop and restart it)."""
    try:
        async with open_kafka() as server:
            yield server
    except KafkaNotFound as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def kafka() -> Iterator[KafkaProcess]:
    """One Kafka shared by this module's tests that leave it running (each uses its own topics and
    groups): a JVM start is ~5 s a test otherwise. pytest-trio fixtures are per test, so this one runs
    :func:`open_kafka` in its own ``trio.run`` on a helper thread and stops it after the module."""
    handoff: queue.Queue[tuple[KafkaProcess, trio.lowlevel.TrioToken, trio.Event] | BaseException] = (
        queue.Queue()
    )

    async def host() -> None:
        try:
            async with open_kafka() as server:
                stop = trio.Event()
                handoff.put((server, trio.lowlevel.current_trio_token(), stop))
                await stop.wait()
        except BaseException as exc:  # reported to the fixture, which fails or skips on it
            handoff.put(exc)

    thread = threading.Thread(target=trio.run, args=(host,), name="kafka-host", daemon=True)
    thread.start()
    item = handoff.get(timeout=300)
    if isinstance(item, KafkaNotFound):
        pytest.skip(str(item))
    if isinstance(item, BaseException):
        raise item
    server, token, stop = item
    try:
        yield server
    finally:
        token.run_sync_soon(stop.set)
        thread.join(60)


class Tally:
    """Deliveries per subscriber; ``await tally.reached(n)`` waits until n in total."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.bodies: list[bytes] = []
        self.messages: list[BrokerMessage] = []
        self._changed = trio.Event()

    def handler(self, name: str) -> Callable[[Event], Awaitable[None]]:
        async def handle(event: Event) -> None:
            self.counts[name] += 1
            self.bodies.append(event.message.body)
            self.messages.append(event.message)
            self._changed.set()
            self._changed = trio.Event()

        return handle

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    async def reached(self, n: int, timeout: float = 30.0) -> None:
        with trio.fail_after(timeout):
            while self.total < n:
                await self._changed.wait()


def raw_records(kafka: KafkaProcess, topic: str, partitions: int, n: int) -> list[object]:
    """Read ``n`` records of ``topic`` from the start with a plain librdkafka consumer (no group use)."""
    consumer = Consumer({"bootstrap.servers": kafka.address, "group.id": "raw-reader"})
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        records: list[object] = []
        for _ in range(100):
            records += [r for r in consumer.consume(n, 0.2) if r.error() is None]
            if len(records) >= n:
                break
        return records
    finally:
        consumer.close()


async def test_publish_subscribe_round_trip(kafka: KafkaProcess) -> None:
    tally = Tally()
    async with KafkaBroker(kafka.address) as broker:
        await broker.subscribe("greetings", tally.handler("a"))
        header = {"Content-Type": "application/json", "Micro-Topic": "greetings", "X-Ünïcode": "välue"}
        await broker.publish("greetings", BrokerMessage(header, b'{"say":"hi"}'))
        await broker.publish("greetings", BrokerMessage({}, b""))
        await tally.reached(2)
        assert broker.stats.published == 2
    # keyless records may land on different partitions of the 4: Kafka orders within a partition only
    got = sorted(tally.messages, key=lambda m: m.body, reverse=True)
    assert got == [BrokerMessage(header, b'{"say":"hi"}'), BrokerMessage({}, b"")]


async def test_queue_group_splits_and_broadcast_reaches_everyone(kafka: KafkaProcess) -> None:
    """Two members of queue "q" share the topic's 4 partitions; two queue-less subscribers each get
    every message (each has a private group)."""
    tally = Tally()
    n = 40
    async with KafkaBroker(kafka.address, partitions=4) as broker:
        for name in ("q1", "q2"):
            await broker.subscribe("orders", tally.handler(name), queue="q")
        for name in ("all1", "all2"):
            await broker.subscribe("orders", tally.handler(name))
        for i in range(n):
            await broker.publish("orders", BrokerMessage({}, str(i).encode()))
        await tally.reached(3 * n)
        await trio.sleep(0.5)  # nothing more may arrive: give a stray duplicate time to show
    counts = tally.counts
    assert counts["all1"] == n and counts["all2"] == n
    assert counts["q1"] + counts["q2"] == n
    # records are spread over 4 partitions at random, 2 per member: 2 * 2**-40 chance to fail
    assert counts["q1"] > 0 and counts["q2"] > 0


async def test_handler_failure_is_redelivered_before_later_records(kafka: KafkaProcess) -> None:
    attempts: Counter[bytes] = Counter()
    order: list[bytes] = []
    done = trio.Event()

    async def flaky(event: Event) -> None:
        body = event.message.body
        attempts[body] += 1
        if body == b"x" and attempts[body] < 3:
            raise RuntimeError("handler failed")
        order.append(body)
        if body == b"y":
            done.set()

    async with KafkaBroker(kafka.address, partitions=1) as broker:
        sub = await broker.subscribe("jobs", flaky, queue="workers")
        await broker.publish("jobs", BrokerMessage({}, b"x"))
        await broker.publish("jobs", BrokerMessage({}, b"y"))
        with trio.fail_after(30):
            await done.wait()
        assert broker.stats.errors == 2 and sub.redelivered == 2
    assert order == [b"x", b"y"]  # the partition waits for x: y is not handled (nor committed) first
    assert attempts == {b"x": 3, b"y": 1}


async def test_failed_record_is_not_committed_so_the_group_gets_it_again(kafka: KafkaProcess) -> None:
    """A handler that keeps failing never commits; after that member leaves, the next member of the
    same queue group starts from the last commit and gets the record again."""
    failed = trio.Event()

    async def broken(event: Event) -> None:
        failed.set()
        raise RuntimeError("always fails")

    tally = Tally()
    async with KafkaBroker(kafka.address, partitions=1) as broker:
        sub = await broker.subscribe("billing", broken, queue="billers")
        await broker.publish("billing", BrokerMessage({}, b"invoice-1"))
        with trio.fail_after(30):
            await failed.wait()
        await sub.unsubscribe()
        await broker.subscribe("billing", tally.handler("second"), queue="billers")
        await tally.reached(1)
    assert tally.bodies == [b"invoice-1"]


async def test_manual_ack_commits_and_an_unacked_record_is_redelivered(kafka: KafkaProcess) -> None:
    """auto_ack=False: only ``event.ack()`` commits; a handler that returns without it gets the record
    again. Afterwards the group's commit is past both: a new member gets only what comes next."""
    seen: list[bytes] = []
    second_acked = trio.Event()

    async def ack_2_on_retry(event: Event) -> None:
        seen.append(event.message.body)
        if event.message.body == b"1" or seen.count(b"2") == 2:
            await event.ack()
        if seen.count(b"2") == 2:
            second_acked.set()

    tally = Tally()
    async with KafkaBroker(kafka.address, partitions=1) as broker:
        sub = await broker.subscribe("acks", ack_2_on_retry, queue="g", auto_ack=False)
        await broker.publish("acks", BrokerMessage({}, b"1"))
        await broker.publish("acks", BrokerMessage({}, b"2"))
        with trio.fail_after(30):
            await second_acked.wait()
        assert sub.redelivered == 1 and broker.stats.errors == 0
        await sub.unsubscribe()
        await broker.subscribe("acks", tally.handler("next"), queue="g")
        await broker.publish("acks", BrokerMessage({}, b"3"))
        await tally.reached(1)
        await trio.sleep(0.5)
    assert seen == [b"1", b"2", b"2"]
    assert tally.bodies == [b"3"]


async def test_envelope_is_go_micro_json_in_the_record_value(kafka: KafkaProcess) -> None:
    header = {"Content-Type": "application/protobuf", "Micro-Topic": "env"}
    async with KafkaBroker(kafka.address, partitions=1) as broker:
        await broker._ensure_topic("env")
        await broker.publish("env", BrokerMessage(header, b"\x00\x01binary"))
    (record,) = await trio.to_thread.run_sync(raw_records, kafka, "env", 1, 1)
    assert record.key() is None and record.headers() is None  # type: ignore[attr-defined]
    assert json.loads(record.value()) == {  # type: ignore[attr-defined]
        "Header": header,
        "Body": base64.b64encode(b"\x00\x01binary").decode(),
    }


async def test_headers_wire_and_undecodable_records(kafka: KafkaProcess) -> None:
    """wire="headers": header as Kafka record headers, raw body; a gomicro broker reads both forms and
    skips (and counts) a record that is neither, without stopping."""
    tally = Tally()
    async with (
        KafkaBroker(kafka.address, partitions=1) as reader,
        KafkaBroker(kafka.address, wire="headers") as writer,
    ):
        await reader.subscribe("mixed", tally.handler("r"))
        await writer.publish("mixed", BrokerMessage({"Content-Type": "text/plain"}, b"raw body"))
        assert reader._producer is not None
        reader._producer.produce("mixed", b"not an envelope")
        await reader.publish("mixed", BrokerMessage({"A": "b"}, b"enveloped"))
        await tally.reached(2)
        assert reader.stats.undecodable == 1
    (raw, _, _) = await trio.to_thread.run_sync(raw_records, kafka, "mixed", 1, 3)
    assert raw.value() == b"raw body" and raw.headers() == [("Content-Type", b"text/plain")]  # type: ignore[attr-defined]
    assert tally.messages == [
        BrokerMessage({"Content-Type": "text/plain"}, b"raw body"),
        BrokerMessage({"A": "b"}, b"enveloped"),
    ]


async def test_kafka_down_at_start_is_a_bounded_broker_error() -> None:
    port = free_port()  # nothing listens there
    with trio.fail_after(20):
        with pytest.raises(BrokerError, match="no Kafka at"):
            async with KafkaBroker(f"127.0.0.1:{port}", connect_timeout=2.0):
                pass


async def test_cancellation_is_bounded_while_threads_wait(own_kafka: KafkaProcess) -> None:
    kafka = own_kafka
    """Leaving the broker cancels idle consumers blocked in ``consume`` and the delivery-report loop
    (each waits at most ``poll_interval``); a publish waiting on a stopped Kafka is cancellable."""
    with trio.fail_after(20):
        async with KafkaBroker(kafka.address, partitions=1) as broker:
            for i in range(3):
                await broker.subscribe("idle", Tally().handler(str(i)))
            await trio.sleep(0.3)  # let them block in consume()
    async with KafkaBroker(kafka.address, publish_timeout=60) as broker:
        sub = await broker.subscribe("idle", Tally().handler("down"))
        await broker.publish("idle", BrokerMessage({}, b"warm"))
        await kafka.stop()
        with trio.move_on_after(1) as scope:
            await broker.publish("idle", BrokerMessage({}, b"stuck"))
        assert scope.cancelled_caught
        with trio.fail_after(20):  # leaving the group with no Kafka to tell is bounded too
            await sub.unsubscribe()
        await kafka.start()


@pytest.mark.timeout(240)
async def test_kafka_restart_mid_run_loses_nothing_committed(own_kafka: KafkaProcess) -> None:
    """Publish 60 numbered records to a queue group while Kafka is stopped and restarted (same port and
    data dir) after the 20th: every record arrives; at-least-once may repeat a few, which we count."""
    tally = Tally()
    n = 60
    async with KafkaBroker(own_kafka.address, partitions=2, publish_timeout=60) as broker:
        await broker.subscribe("ledger", tally.handler("a"), queue="ledger")
        for i in range(20):
            await broker.publish("ledger", BrokerMessage({}, str(i).encode()))
        await tally.reached(20)
        await own_kafka.stop()
        async with trio.open_nursery() as nursery:

            async def publish_rest() -> None:
                for i in range(20, n):  # waits while Kafka is down, resumes once it is back
                    await broker.publish("ledger", BrokerMessage({}, str(i).encode()))

            nursery.start_soon(publish_rest)
            await trio.sleep(1.0)  # publishers are now blocked on a Kafka that is down
            await own_kafka.start()
        await tally.reached(n, timeout=90)
        await trio.sleep(1.0)
    got = Counter(int(b) for b in tally.bodies)
    assert set(got) == set(range(n))
    redelivered = tally.total - n
    print(f"restart: {n} published, {tally.total} handled, {redelivered} redelivered")
    assert redelivered >= 0


async def test_service_subscribe_over_kafka_plugin(kafka: KafkaProcess, registry: MemoryRegistry) -> None:
    """``--broker kafka --broker_address ...`` selects this broker; service.subscribe + client.publish
    carry a protobuf message end to end, with a queue group; a handler that raises gets it again."""
    got: list[tuple[EventPb, str]] = []
    arrived = trio.Event()

    calls = 0

    async def on_event(msg: EventPb, ctx: trimicro.Context) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("first delivery fails")  # not acked by the service: Kafka redelivers
        got.append((msg, ctx.endpoint))
        arrived.set()

    argv = ["--broker", "kafka", "--broker_address", kafka.address]
    sub = trimicro.Service("kafka-sub", registry=registry, argv=argv, handle_signals=False)
    sub.subscribe("svc.events", on_event, queue="svc")
    pub = trimicro.Service("kafka-pub", registry=registry, argv=argv, handle_signals=False)
    async with trimicro.open_service(service=sub), trimicro.open_service(service=pub):
        await pub.client.publish("svc.events", EventPb(id="42", message="over kafka"))
        with trio.fail_after(30):
            await arrived.wait()
    (msg, endpoint), *_ = got
    assert calls == 2 and msg.id == "42" and msg.message == "over kafka"
    assert endpoint == "svc.events"


def test_from_options_parses_comma_separated_bootstrap_servers() -> None:
    broker = from_options(Options(broker="kafka", broker_address="127.0.0.1:1,127.0.0.1:2"))
    assert broker.servers == ["127.0.0.1:1", "127.0.0.1:2"] and broker.address == "127.0.0.1:1"
    assert from_options(Options()).servers == ["127.0.0.1:9092"]
    assert KafkaBroker("a:1, b:2").servers == ["a:1", "b:2"]
