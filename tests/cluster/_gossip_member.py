"""One simulated host's gossip member: registers ``svc`` node ``<host>`` and keeps writing the set of
``svc`` nodes it sees to ``<out>`` (atomically, every 0.1 s). Exits by itself after ``lifetime`` s."""

from __future__ import annotations

import json
import os
import sys

import trio

from trimicro.registry import Node, Service
from trimicro.registry.gossip import GossipRegistry, SwimConfig

CONFIG = SwimConfig(
    probe_interval=0.2, probe_timeout=0.1, gossip_interval=0.1, push_pull_interval=2.0,
    reconnect_interval=0.5, join_backoff_min=0.1, join_backoff_max=1.0,
)  # fmt: skip


async def main(address: str, seeds: list[str], out: str, lifetime: float) -> None:
    host = address.rpartition(":")[0]
    with trio.move_on_after(lifetime):
        async with GossipRegistry(address=address, seeds=seeds, config=CONFIG) as reg:
            await reg.register(Service(name="svc", nodes=[Node(id=host, address=f"{host}:8080")]))
            while True:
                nodes = sorted(n.id for s in await reg.get_service("svc") for n in s.nodes)
                with open(out + ".tmp", "w") as f:
                    json.dump({"nodes": nodes}, f)
                os.replace(out + ".tmp", out)
                await trio.sleep(0.1)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], [s for s in sys.argv[2].split(",") if s], sys.argv[3], float(sys.argv[4]))
