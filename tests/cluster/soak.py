"""A soak on loopback: ``python3 -m tests.cluster.soak --minutes 10 --png docs/reliability-soak.png``.

Two node processes (tests/_nodes/soak_node.py) on a real etcd; mixed load from this process: unary
callers, bidi streams opened and closed over and over, a publisher on ``soak.events`` (the nodes
subscribe). Every few seconds it samples, per node, RSS and open fds (``/proc/<pid>``) and live trio
tasks (the node's own count, over a call), and at the end draws them with matplotlib. A leak shows as
a line that keeps climbing; a steady line after warm-up is the pass. ``run_soak`` returns the samples
for the CI version (tests/cluster/test_soak.py) to check loosely.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

import trimicro
from tests.protos.greeter_pb2 import EchoMessage, HelloRequest, HelloResponse
from trimicro.client import Client
from trimicro.errors import MicroError
from trimicro.testing.etcd import open_etcd

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "soak"


@attrs.define
class Sample:
    t: float
    node: int
    rss_kb: int
    fds: int
    tasks: int


@attrs.define
class Counts:
    unary_ok: int = 0
    unary_failed: int = 0
    streams_ok: int = 0
    streams_failed: int = 0
    published: int = 0
    publish_failed: int = 0


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@asynccontextmanager
async def node(env: dict[str, str]) -> AsyncIterator[tuple[trio.Process, str]]:
    """A soak node process and the address it serves on."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests._nodes.soak_node"],
        cwd=str(ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        buf = b""
        with trio.fail_after(20):
            while b"\n" not in buf:
                chunk = await proc.stdout.receive_some(4096)
                if not chunk:
                    raise RuntimeError(f"soak node exited: {buf!r}")
                buf += chunk
        address = json.loads(buf.partition(b"\n")[0])["address"]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain, proc)
            yield proc, address
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.terminate()
                with trio.move_on_after(10):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()


async def _drain(proc: trio.Process) -> None:
    assert proc.stdout is not None
    async for _ in proc.stdout:
        pass


async def unary(client: Client, counts: Counts, end: float) -> None:
    while trio.current_time() < end:
        try:
            await client.call(
                SERVICE, "Greeter.Hello", HelloRequest(name="u"), response_type=HelloResponse, timeout=1
            )
            counts.unary_ok += 1
        except MicroError:
            counts.unary_failed += 1


async def streams(client: Client, counts: Counts, end: float) -> None:
    while trio.current_time() < end:
        try:
            async with client.stream(SERVICE, "Greeter.Echo", response_type=EchoMessage, timeout=5) as s:
                for i in range(10):
                    await s.send(EchoMessage(text="x", seq=i))
                    await s.receive()
            counts.streams_ok += 1
        except MicroError:
            counts.streams_failed += 1


async def publisher(client: Client, counts: Counts, end: float) -> None:
    while trio.current_time() < end:
        try:
            await client.publish("soak.events", {"n": counts.published})
            counts.published += 1
        except MicroError:
            counts.publish_failed += 1
        await trio.sleep(0.01)  # a steady trickle, ~100 messages/s


async def node_stats(client: Client, address: str) -> dict[str, int]:
    rsp = await client.call(
        SERVICE,
        "Greeter.Hello",
        HelloRequest(name="stats"),
        response_type=HelloResponse,
        address=address,
        timeout=2,
    )
    stats: dict[str, int] = json.loads(rsp.greeting)
    return stats


async def run_soak(seconds: float, interval: float = 5.0) -> tuple[list[Sample], Counts, list[int]]:
    """Returns the samples, the load's counts and the messages each node's subscriber received."""
    samples: list[Sample] = []
    counts = Counts()
    async with open_etcd() as etcd:
        env = {
            "MICRO_REGISTRY": "etcd",
            "MICRO_REGISTRY_ADDRESS": etcd.endpoint,
            "MICRO_SERVER_ADDRESS": "127.0.0.1:0",
            "MICRO_SERVER_NAME": SERVICE,
            "MICRO_REGISTER_TTL": "10s",
            "MICRO_REGISTER_INTERVAL": "3s",
        }
        # The load comes from a running service (a client alone has no broker to publish with).
        caller = trimicro.Service(
            "soak-caller", registry="etcd", registry_address=etcd.endpoint, argv=[], handle_signals=False
        )
        async with node(env) as a, node(env) as b, trio.open_nursery() as outer:
            await outer.start(caller.run)
            client = caller.client
            procs = [a, b]
            start = trio.current_time()
            end = start + seconds
            received: list[int] = [0, 0]

            async def take() -> None:
                for i, (proc, address) in enumerate(procs):
                    try:
                        got = await node_stats(client, address)
                    except MicroError:
                        got = {"tasks": -1, "received": received[i]}
                    received[i] = got["received"]
                    t = trio.current_time() - start
                    samples.append(Sample(t, i, rss_kb(proc.pid), fds(proc.pid), got["tasks"]))

            async def sampler() -> None:
                while True:
                    await take()
                    await trio.sleep(interval)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(sampler)
                async with trio.open_nursery() as load:
                    for _ in range(4):
                        load.start_soon(unary, client, counts, end)
                    for _ in range(2):
                        load.start_soon(streams, client, counts, end)
                    load.start_soon(publisher, client, counts, end)
                nursery.cancel_scope.cancel()
            await trio.sleep(1)  # let closed connections go, then the final, quiet sample
            await take()
            caller.stop()
    return samples, counts, received


def plot(samples: list[Sample], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    for node_i in sorted({s.node for s in samples}):
        mine = [s for s in samples if s.node == node_i]
        t = [s.t / 60 for s in mine]
        axes[0].plot(t, [s.rss_kb / 1024 for s in mine], label=f"node {node_i}")
        axes[1].plot(t, [s.fds for s in mine], label=f"node {node_i}")
        axes[2].plot(t, [s.tasks for s in mine], label=f"node {node_i}")
    for ax, label in zip(axes, ("RSS (MiB)", "open fds", "trio tasks"), strict=True):
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    axes[2].set_xlabel("minutes")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python3 -m tests.cluster.soak")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--png", help="draw the samples into this PNG")
    parser.add_argument("--json", help="write the samples here")
    args = parser.parse_args()
    samples, counts, received = await run_soak(args.minutes * 60, args.interval)
    print(f"counts: {counts}; pub/sub received per node: {received}")
    for s in samples:
        print(f"t={s.t:7.1f}s node{s.node} rss={s.rss_kb / 1024:.1f}MiB fds={s.fds} tasks={s.tasks}")
    if args.json:
        Path(args.json).write_text(json.dumps({"samples": [attrs.asdict(s) for s in samples], "counts": attrs.asdict(counts), "received": received}))  # fmt: skip
    if args.png:
        plot(samples, args.png, f"soak: {args.minutes:g} min, 2 nodes, unary + bidi streams + pub/sub")


if __name__ == "__main__":
    trio.run(main)
