"""A node for the soak (tests/cluster/soak.py): unary ``Greeter.Hello``, bidi ``Streamer.Echo``, and a
subscriber on ``soak.events``, configured by ``MICRO_*`` env like greeter_node.py.

``Greeter.Hello`` with name ``publish:COUNT:RATE`` publishes COUNT messages at RATE/s from this node
and answers how many went; with name ``stats`` it answers, instead of a greeting, a JSON object: the number of
live trio tasks in this process and the pub/sub messages received so far, so the soak can sample
what /proc cannot show. Prints ``{"event": "started", ...}`` once listening and registered.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import trio

import trimicro
from tests.protos.greeter_pb2 import EchoMessage, HelloRequest, HelloResponse


def count_tasks() -> int:
    """Live tasks, walked from the root task through every nursery."""
    root = trio.lowlevel.current_root_task()
    todo = [root] if root is not None else []
    seen = 0
    while todo:
        task = todo.pop()
        seen += 1
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return seen


class Greeter:
    def __init__(self) -> None:
        self.tag = ""
        self.service: Any = None
        self.received = 0

    async def Hello(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
        if req.name.startswith("publish:"):  # publish:COUNT:RATE from this node, then say how many went
            count, rate = (float(x) for x in req.name.split(":")[1:3])
            sent = failed = 0
            for i in range(int(count)):
                try:
                    await self.service.client.publish("soak.events", {"n": i})
                    sent += 1
                except trimicro.errors.MicroError:
                    failed += 1
                await trio.sleep(1 / rate)
            return HelloResponse(greeting=json.dumps({"sent": sent, "failed": failed}))
        if req.name == "stats":
            return HelloResponse(greeting=json.dumps({"tasks": count_tasks(), "received": self.received}))
        return HelloResponse(greeting=f"Hello {req.name} from {self.tag}")

    async def Echo(self, stream: trimicro.Stream[EchoMessage, EchoMessage], ctx: trimicro.Context) -> None:
        async for msg in stream:
            await stream.send(EchoMessage(text=msg.text, seq=msg.seq))


async def main() -> None:
    soak = Greeter()

    async def on_event(msg: Any, ctx: trimicro.Context) -> None:
        soak.received += 1

    service = trimicro.Service(os.environ.get("MICRO_SERVER_NAME", "greeter"), handlers=[soak])
    service.subscribe("soak.events", on_event)
    soak.tag, soak.service = service.id, service
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        print(json.dumps({"event": "started", "id": service.id, "address": service.address}), flush=True)
    print(json.dumps({"event": "stopped"}), flush=True)


if __name__ == "__main__":
    trio.run(main)
    sys.exit(0)
