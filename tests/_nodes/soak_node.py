"""A node for the soak (tests/cluster/soak.py): unary ``Greeter.Hello``, bidi ``Streamer.Echo``, and a
subscriber on ``soak.events``, configured by ``MICRO_*`` env like greeter_node.py.

``Greeter.Hello`` with name ``stats`` answers, instead of a greeting, a JSON object: the number of
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
    todo = [trio.lowlevel.current_root_task()]
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
        self.received = 0

    async def Hello(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
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
    soak.tag = service.id
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        print(json.dumps({"event": "started", "id": service.id, "address": service.address}), flush=True)
    print(json.dumps({"event": "stopped"}), flush=True)


if __name__ == "__main__":
    trio.run(main)
    sys.exit(0)
