"""Kafka broker numbers: publish throughput and publish->handler latency, and the client comparison.

    python -m bench.kafka [--count 5000] [--latency 300]

Starts its own single-node Kafka on 127.0.0.1 (trimicro.testing.kafka) and measures:

- ``KafkaBroker.publish`` throughput, 1 and 64 concurrent publishers (each publish awaits Kafka's ack);
- publish->handler latency through ``KafkaBroker`` (one message in flight at a time);
- the raw clients, no trimicro: confluent-kafka ``produce`` + ``flush``, and kafka-python's
  ``KafkaProducer.send`` + ``flush`` (if kafka-python is installed), with the same ``acks=all`` and
  ``linger.ms=1``.

Numbers depend on the machine and its load; they justify the client choice in trimicro.broker.kafka,
they are not asserted anywhere.
"""

from __future__ import annotations

import argparse
import statistics
import time

import trio

from trimicro.broker import BrokerMessage, Event
from trimicro.broker.kafka import KafkaBroker
from trimicro.testing.kafka import KafkaProcess, open_kafka

BODY = b"x" * 200


async def broker_throughput(kafka: KafkaProcess, count: int, concurrency: int) -> float:
    async with KafkaBroker(kafka.address, partitions=4) as broker:
        await broker.publish("bench.tp", BrokerMessage({"Content-Type": "application/json"}, BODY))
        left = count

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await broker.publish("bench.tp", BrokerMessage({"Content-Type": "application/json"}, BODY))

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
        return count / (time.perf_counter() - start)


async def broker_latency(kafka: KafkaProcess, count: int) -> list[float]:
    samples: list[float] = []
    arrived = trio.Event()

    async def handler(event: Event) -> None:
        nonlocal arrived
        samples.append(time.perf_counter() - float(event.message.body))
        arrived.set()

    async with KafkaBroker(kafka.address, partitions=1) as broker:
        await broker.subscribe("bench.lat", handler)
        for _ in range(count + 20):
            arrived = trio.Event()
            await broker.publish("bench.lat", BrokerMessage({}, repr(time.perf_counter()).encode()))
            with trio.fail_after(10):
                await arrived.wait()
    return sorted(samples[20:])  # the first ones include connection set-up


def raw_confluent(kafka: KafkaProcess, count: int) -> float:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka.address, "acks": "all", "linger.ms": 1})
    producer.produce("bench.raw", BODY)
    producer.flush(10)
    start = time.perf_counter()
    for _ in range(count):
        while True:
            try:
                producer.produce("bench.raw", BODY)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)
    return count / (time.perf_counter() - start)


def raw_kafka_python(kafka: KafkaProcess, count: int) -> float | None:
    try:
        from kafka import KafkaProducer  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    producer = KafkaProducer(bootstrap_servers=kafka.address, acks="all", linger_ms=1)
    producer.send("bench.raw", BODY).get(10)
    start = time.perf_counter()
    futures = [producer.send("bench.raw", BODY) for _ in range(count)]
    producer.flush(60)
    for future in futures:
        future.get(0)
    rate = count / (time.perf_counter() - start)
    producer.close(5)
    return float(rate)


def pct(samples: list[float], p: float) -> float:
    return samples[min(len(samples) - 1, int(p * len(samples)))] * 1000


async def main(count: int, latency_count: int) -> None:
    async with open_kafka() as kafka:
        print(f"kafka {kafka.address}, {count} messages of {len(BODY)} bytes")
        seq = await broker_throughput(kafka, count // 5, 1)
        print(f"KafkaBroker.publish, 1 publisher:       {seq:9.0f} msg/s")
        par = await broker_throughput(kafka, count, 64)
        print(f"KafkaBroker.publish, 64 publishers:     {par:9.0f} msg/s")
        lat = await broker_latency(kafka, latency_count)
        print(
            f"publish->handler latency: p50 {pct(lat, 0.5):.2f} ms, p99 {pct(lat, 0.99):.2f} ms, "
            f"mean {statistics.fmean(lat) * 1000:.2f} ms ({len(lat)} samples)"
        )
        raw = await trio.to_thread.run_sync(raw_confluent, kafka, count)
        print(f"raw confluent-kafka produce+flush:      {raw:9.0f} msg/s")
        kp = await trio.to_thread.run_sync(raw_kafka_python, kafka, count)
        if kp is None:
            print("raw kafka-python: not installed")
        else:
            print(f"raw kafka-python send+flush:            {kp:9.0f} msg/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--latency", type=int, default=300)
    args = parser.parse_args()
    trio.run(main, args.count, args.latency)
