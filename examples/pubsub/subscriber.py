"""Two subscriber services, as in Go Micro's pubsub example.

    python examples/pubsub/subscriber.py &            # broadcast: sees every event
    python examples/pubsub/subscriber.py --queue q &  # one of the services sharing queue "q" sees each

Each is a full service (RPC server + registry record advertising its subscriber endpoint); the
subscription starts with it and stops with it (Ctrl-C deregisters and unsubscribes).
"""

import argparse
import logging
import os

import trio
from events import Event

import trimicro
from trimicro.server import SubscriberCall, SubscriberMessage


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queue", default=None, help="queue group (default: broadcast)")
    parser.add_argument("--topic", default="example.topic.pubsub")
    args, rest = parser.parse_known_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    name = f"example.subscriber.{args.queue or 'broadcast'}"
    service = trimicro.Service(name, argv=rest)

    async def on_event(msg: Event, ctx: trimicro.Context) -> None:
        print(
            f"[{name} pid {os.getpid()}] {ctx.endpoint}: {msg} (id {ctx.id}, metadata {ctx.metadata})",
            flush=True,
        )

    def log_topic(next_call: SubscriberCall) -> SubscriberCall:  # runs around every delivery
        async def call(msg: SubscriberMessage, ctx: trimicro.Context) -> None:
            logging.getLogger("example").debug("delivery on %s (%s)", msg.topic, msg.content_type)
            await next_call(msg, ctx)

        return call

    service.wrap_subscriber(log_topic)
    service.subscribe(args.topic, on_event, queue=args.queue)
    trio.run(service.run)


if __name__ == "__main__":
    main()
