"""A trimicro greeter node as its own process, configured only by ``MICRO_*`` env (and flags).

``python -m tests._nodes.greeter_node`` serves ``Greeter.Hello`` (answers ``Hello <name> from <node id>``,
so callers see which node answered), prints one JSON line ``{"event": "started", "id", "address",
"name"}`` once it is listening *and* registered, and ``{"event": "stopped"}`` after a graceful stop
(SIGTERM/SIGINT: deregister, drain, exit 0). Tests use it to restart, SIGTERM and SIGKILL real nodes.
"""

from __future__ import annotations

import json
import os
import sys

import trio

import trimicro
from tests.protos.greeter_pb2 import HelloRequest, HelloResponse


class Greeter:
    """Says which node answered."""

    def __init__(self) -> None:
        self.tag = ""

    async def Hello(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
        return HelloResponse(greeting=f"Hello {req.name} from {self.tag}")


def _emit(**fields: str) -> None:
    print(json.dumps(fields), flush=True)


async def main() -> None:
    greeter = Greeter()
    # Everything else (registry, TTLs, addresses) comes from MICRO_* env and --flags.
    service = trimicro.Service(os.environ.get("MICRO_SERVER_NAME", "greeter"), handlers=[greeter])
    greeter.tag = service.id
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        _emit(event="started", id=service.id, address=service.address, name=service.name)
    _emit(event="stopped")


if __name__ == "__main__":
    trio.run(main)
    sys.exit(0)
