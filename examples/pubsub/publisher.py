"""Publish events every ``--interval`` seconds (``--count`` of them, 0 = forever).

python examples/pubsub/publisher.py --count 10
"""

import argparse
import itertools

import trio
from events import Event

import trimicro


async def publish(service: trimicro.Service, topic: str, count: int, interval: float) -> None:
    numbers = range(count) if count else itertools.count()
    for i in numbers:
        with trimicro.metadata(publisher=service.id):
            await service.client.publish(topic, Event(id=str(i), seq=i, message="hello"))
        print(f"published {i}", flush=True)
        await trio.sleep(interval)


async def run(args: argparse.Namespace, rest: list[str]) -> None:
    service = trimicro.Service("example.publisher", argv=rest)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        await publish(service, args.topic, args.count, args.interval)
        service.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topic", default="example.topic.pubsub")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.5)
    args, rest = parser.parse_known_args()
    trio.run(run, args, rest)


if __name__ == "__main__":
    main()
