"""Failure scenarios on simulated hosts, with figures: ``python3 -m tests.cluster.scenarios [--quick]
[--write-docs] [NAME ...]``.

Each scenario builds a fresh cluster (tests/cluster/netns.py, as root): a 3-member etcd cluster on host
``etcd``, three greeter node processes on hosts ``n1``..``n3`` (``n3`` reached through the fault proxy on
its own host, which it advertises), and the load driver (tests/cluster/_driver.py: 8 callers, 1 s
timeout) on host ``client``. It runs a healthy phase, then the same phase with the fault injected a
moment after it starts, and reports ok/failed, p50/p99 and calls/s against the healthy phase.
``--write-docs`` puts the table into docs/reliability.md between the scenario markers.

Partitions are nftables drop rules inside one namespace (nothing outside the test's namespaces is
touched); latency is the fault proxy; crashes and hangs are SIGKILL/SIGSTOP of the real process.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from tests.cluster.netns import Cluster, Host, open_cluster
from trimicro.testing.etcd import find_etcd
from trimicro.testing.nats import find_nats_server

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- scenarios:begin -->", "<!-- scenarios:end -->"
START = 20.0
ETCD_PORTS = (2379, 2479, 2579)
NATS_PORTS = (
    4222,
    4232,
    4242,
)  # client ports of the three nats-server members; cluster port + 2000  # client ports of the three members; peer port is client + 1
INJECT_AT = 0.3  # seconds into the faulted phase


@attrs.define(eq=False)
class Proc:
    """A process in a host speaking JSON lines on stdout (other lines kept as log)."""

    proc: trio.Process
    inbox: trio.MemoryReceiveChannel[dict[str, Any]]
    log: list[str] = attrs.field(factory=list)
    exited: trio.Event = attrs.field(factory=trio.Event)

    @property
    def pid(self) -> int:
        return self.proc.pid  # nsenter execs the command: same pid

    async def next_event(self, timeout: float = START) -> dict[str, Any]:
        with trio.fail_after(timeout):
            try:
                return await self.inbox.receive()
            except trio.EndOfChannel:
                raise RuntimeError("process exited; output:\n" + "\n".join(self.log[-30:])) from None

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all(line.encode() + b"\n")

    def signal(self, signum: int) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signum)

    def fds(self) -> int:
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return -1


@attrs.define(eq=False)
class Procs:
    """Processes started in one nursery; all SIGKILLed (after SIGCONT) when the block ends."""

    nursery: trio.Nursery
    all: list[Proc] = attrs.field(factory=list)

    async def start(self, host: Host, argv: Sequence[str], env: dict[str, str]) -> Proc:
        proc = await trio.lowlevel.open_process(
            host.command(argv),
            cwd=str(ROOT),
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        send, recv = trio.open_memory_channel[dict[str, Any]](100)
        p = Proc(proc, recv)
        self.all.append(p)
        self.nursery.start_soon(self._pump, p, send)
        return p

    async def _pump(self, p: Proc, events: trio.MemorySendChannel[dict[str, Any]]) -> None:
        assert p.proc.stdout is not None
        buf = b""
        async with events:
            async for chunk in p.proc.stdout:
                buf += chunk
                while b"\n" in buf:
                    raw, _, buf = buf.partition(b"\n")
                    line = raw.decode(errors="replace")
                    if line.startswith("{"):
                        await events.send(json.loads(line))
                    else:
                        p.log.append(line)
        await p.proc.wait()
        p.exited.set()

    def kill_all(self) -> None:
        for p in self.all:
            if p.proc.returncode is None:
                p.proc.send_signal(signal.SIGCONT)
                p.proc.kill()


@asynccontextmanager
async def open_procs() -> AsyncIterator[Procs]:
    async with trio.open_nursery() as nursery:
        procs = Procs(nursery)
        try:
            yield procs
        finally:
            procs.kill_all()
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                for p in procs.all:
                    await p.proc.wait()
            nursery.cancel_scope.cancel()


@attrs.define(eq=False)
class World:
    """One scenario's cluster: hosts, etcd members, nodes, the proxy in front of n3 and the driver."""

    cluster: Cluster
    procs: Procs
    data: str
    env: dict[str, str]
    etcd: list[Proc] = attrs.field(factory=list)
    nodes: dict[str, Proc] = attrs.field(factory=dict)
    ids: dict[str, str] = attrs.field(factory=dict)
    addresses: dict[str, str] = attrs.field(factory=dict)
    nats: list[Proc] = attrs.field(factory=list)
    nats_config: str = ""  # a nats-server config file (-c) for settings without a flag
    proxy: Proc | None = None
    driver: Proc | None = None

    def etcd_command(self, i: int) -> list[str]:
        host = self.cluster["etcd"].address
        peers = ",".join(f"e{j}=http://{host}:{p + 1}" for j, p in enumerate(ETCD_PORTS))
        url, peer = f"http://{host}:{ETCD_PORTS[i]}", f"http://{host}:{ETCD_PORTS[i] + 1}"
        return [
            find_etcd(), "--name", f"e{i}", "--data-dir", f"{self.data}/e{i}",
            "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", peers, "--initial-cluster-state", "new",
            "--heartbeat-interval", "20", "--election-timeout", "200", "--log-level", "error",
        ]  # fmt: skip

    async def start_etcd(self, i: int) -> None:
        proc = await self.procs.start(self.cluster["etcd"], self.etcd_command(i), {})
        if len(self.etcd) > i:
            self.etcd[i] = proc
        else:
            self.etcd.append(proc)

    def nats_command(self, i: int) -> list[str]:
        host = self.cluster["nats"].address
        routes = ",".join(f"nats://{host}:{p + 2000}" for j, p in enumerate(NATS_PORTS) if j != i)
        config = ["-c", self.nats_config] if self.nats_config else []
        return [
            find_nats_server(), *config, "-a", host, "-p", str(NATS_PORTS[i]), "--cluster_name", "t",
            "--cluster", f"nats://{host}:{NATS_PORTS[i] + 2000}", "--routes", routes,
        ]  # fmt: skip

    async def start_nats(self, i: int) -> None:
        proc = await self.procs.start(self.cluster["nats"], self.nats_command(i), {})
        if len(self.nats) > i:
            self.nats[i] = proc
        else:
            self.nats.append(proc)

    async def start_node(self, name: str) -> None:
        host = self.cluster[name]
        env = {**self.env, "MICRO_SERVER_ADDRESS": f"{host.address}:0"}
        if name == "n3":  # behind the fault proxy on its own host
            env = {**self.env, "MICRO_SERVER_ADDRESS": f"{host.address}:9000", "MICRO_SERVER_ADVERTISE": f"{host.address}:9001"}  # fmt: skip
        node = await self.procs.start(host, [sys.executable, "-m", "tests._nodes.soak_node"], env)
        info = await node.next_event()
        if info.get("event") != "started":
            raise RuntimeError(f"{name} did not start: {info}")
        self.nodes[name], self.ids[name], self.addresses[name] = node, info["id"], info["address"]

    async def stop_node(self, name: str) -> None:
        node = self.nodes[name]
        node.signal(signal.SIGTERM)
        with trio.fail_after(15):
            await node.exited.wait()

    async def nft_drop(self, host: str, peer: str) -> None:
        """Drop every packet between ``host``'s namespace and ``peer``'s address, both ways."""
        addr = self.cluster[peer].address
        rules = (
            "add table inet part\n"
            "add chain inet part out { type filter hook output priority 0 ; }\n"
            "add chain inet part in { type filter hook input priority 0 ; }\n"
            f"add rule inet part out ip daddr {addr} drop\n"
            f"add rule inet part in ip saddr {addr} drop\n"
        )
        with trio.fail_after(10):
            await trio.run_process(self.cluster[host].command(["nft", "-f", "-"]), stdin=rules.encode())

    async def nft_heal(self, host: str) -> None:
        with trio.fail_after(10):
            await trio.run_process(self.cluster[host].command(["nft", "delete", "table", "inet", "part"]))

    async def phase(
        self, name: str, seconds: float, fault: Callable[[], Awaitable[None]] | None = None
    ) -> dict[str, Any]:
        driver = self.driver
        assert driver is not None
        await driver.send(f"runfor {name} {seconds}")
        if fault is not None:
            await trio.sleep(INJECT_AT)
            await fault()
        return await driver.next_event(seconds + 60)


@asynccontextmanager
async def open_world(*, nats: bool = False, nats_config: str = "") -> AsyncIterator[World]:
    """The cluster; with ``nats`` a 3-member nats-server cluster on host ``nats`` is the nodes' broker
    (``nats_config``: the text of a nats-server config file its members also load)."""
    async with open_cluster(["client", "etcd", "n1", "n2", "n3", "nats"]) as cluster, open_procs() as procs:
        with tempfile.TemporaryDirectory() as data:
            etcd = cluster["etcd"].address
            env = {
                "MICRO_REGISTRY": "etcd",
                "MICRO_REGISTRY_ADDRESS": ",".join(f"{etcd}:{p}" for p in ETCD_PORTS),
                "MICRO_REGISTER_TTL": "60s",  # a crashed or partitioned node stays listed: the worst case
                "MICRO_REGISTER_INTERVAL": "20s",
                "MICRO_REGISTRY_TIMEOUT": "2s",
            }
            if nats:
                host = cluster["nats"].address
                env["MICRO_BROKER"] = "nats"
                env["MICRO_BROKER_ADDRESS"] = ",".join(f"{host}:{p}" for p in NATS_PORTS)
            world = World(cluster, procs, data, env)
            if nats_config:
                world.nats_config = f"{data}/nats.conf"
                Path(world.nats_config).write_text(nats_config)
            if nats:
                for i in range(len(NATS_PORTS)):
                    await world.start_nats(i)
                await trio.sleep(1.0)  # the routes form (nats-server prints no readiness line on stdout)
            for i in range(len(ETCD_PORTS)):
                await world.start_etcd(i)
            n3 = cluster["n3"].address
            world.proxy = await procs.start(cluster["n3"], [sys.executable, "-m", "tests.cluster.faultproxy", f"{n3}:9001", f"{n3}:9000"], {})  # fmt: skip
            assert (await world.proxy.next_event())["event"] == "listening"
            world.driver = await procs.start(
                cluster["client"], [sys.executable, "-m", "tests.cluster._driver"], env
            )
            await world.driver.send(f"wait-etcd {etcd}:{ETCD_PORTS[0]}")
            assert (await world.driver.next_event(40))["event"] == "etcd-ready"
            async with trio.open_nursery() as nursery:
                for name in ("n1", "n2", "n3"):
                    nursery.start_soon(world.start_node, name)
            yield world
            await world.driver.send("quit")


# ---- the scenarios: each a fault injected while the load runs ------------------------------------


async def sigkill(w: World) -> None:
    w.nodes["n1"].signal(signal.SIGKILL)


async def sigstop(w: World) -> None:
    w.nodes["n1"].signal(signal.SIGSTOP)


async def slow(w: World) -> None:
    assert w.proxy is not None
    await w.proxy.send("mode latency 0.2")


async def partition_clients(w: World) -> None:
    await w.nft_drop("client", "n3")


async def partition_etcd(w: World) -> None:
    await w.nft_drop("n2", "etcd")


async def lose_etcd_member(w: World) -> None:
    w.etcd[0].signal(signal.SIGKILL)  # the member every client talks to first


async def restart_etcd(w: World) -> None:
    for p in w.etcd:
        p.signal(signal.SIGKILL)
    for p in w.etcd:
        await p.exited.wait()
    await trio.sleep(0.5)
    for i in range(len(w.etcd)):
        await w.start_etcd(i)


async def rolling_deploy(w: World) -> None:
    for name in ("n1", "n2", "n3"):
        await w.stop_node(name)  # SIGTERM: deregister, drain, exit
        await w.start_node(name)


@attrs.define
class Scenario:
    name: str
    title: str
    fault: Callable[[World], Awaitable[None]]
    length: float = 1.0  # phase length, times the base duration
    victim: str = "n1"  # the node whose fds are counted


SCENARIOS = [
    Scenario("sigkill", "SIGKILL one node (still registered)", sigkill),
    Scenario("sigstop", "SIGSTOP one node (zombie: accepts, never answers)", sigstop),
    Scenario("slow", "+200 ms latency on one node", slow, victim="n3"),
    Scenario("partition-clients", "one node partitioned from the clients", partition_clients, victim="n3"),
    Scenario("partition-etcd", "one node partitioned from etcd only", partition_etcd, victim="n2"),
    Scenario("etcd-member", "lose one of 3 etcd members (SIGKILL)", lose_etcd_member, victim="n2"),
    Scenario("etcd-restart", "restart all of etcd", restart_etcd, victim="n2"),
    Scenario(
        "rolling", "rolling deploy of every node (SIGTERM, restart)", rolling_deploy, length=3.0, victim="n2"
    ),
]


async def run_scenario(s: Scenario, seconds: float) -> dict[str, Any]:
    async with open_world() as w:
        healthy = await w.phase("healthy", seconds * s.length)
        victim = w.nodes[s.victim]
        fds_before = victim.fds()
        faulted = await w.phase(s.name, seconds * s.length, lambda: s.fault(w))
        victim = w.nodes[s.victim]
        fds_after = victim.fds() if victim is w.nodes[s.victim] else -1
        return {"scenario": s.name, "title": s.title, "healthy": healthy, "faulted": faulted,
                "fds": [fds_before, fds_after]}  # fmt: skip


STREAMS, STREAM_TIMEOUT = 4, 2.0


async def run_stream_cut() -> dict[str, Any]:
    """Bidi streams from the client to n3, then n3 partitioned from the client mid-stream. Both sides
    must end within the stream's deadline; n3's fds and tasks, counted after the partition heals, must
    be back to where they were before the streams opened."""
    async with open_world() as w:
        driver, node = w.driver, w.nodes["n3"]
        assert driver is not None
        address = f"{w.cluster['n3'].address}:9001"
        await driver.send(f"stats {address}")
        before = await driver.next_event()
        fds_before = node.fds()
        await driver.send(f"streams {address} {STREAMS} {STREAM_TIMEOUT}")
        opened = await driver.next_event()
        fds_open = node.fds()
        await trio.sleep(0.3)
        await w.nft_drop("client", "n3")
        cut = trio.current_time()
        done = await driver.next_event(STREAM_TIMEOUT + 30)
        client_ended = trio.current_time() - cut
        await trio.sleep(1.0)  # past the deadline: the node's handlers have been cancelled by now
        fds_after = node.fds()
        await w.nft_heal("client")
        await driver.send(f"stats {address}")
        after = await driver.next_event()
        return {
            "opened": opened["opened"], "streams": done["streams"], "client_ended_after_cut": client_ended,
            "fds": [fds_before, fds_open, fds_after], "tasks": [before["tasks"], after["tasks"]],
        }  # fmt: skip


NATS_MESSAGES, NATS_RATE = 600, 200.0  # 3 s of publishing from n1
#: The long partition: nats-server gives up on a write to a client after this (default 10 s)...
WRITE_DEADLINE = 2.0
#: ...and n3 is cut off from NATS this long, from 1 s into the burst (past its end).
LONG_PARTITION = 5.0
AFTER_MESSAGES, AFTER_RATE = 300, 100.0  # published once the long partition healed


async def run_nats(kind: str) -> dict[str, Any]:
    """n1 publishes on ``soak.events`` (all three nodes subscribe, at-most-once NATS core) while one
    nats-server member is SIGKILLed and restarted (``member-restart``), n3 is partitioned from all of
    NATS for a second (``partitioned-subscriber``), or for :data:`LONG_PARTITION` seconds with the
    servers' ``write_deadline`` at :data:`WRITE_DEADLINE` (``long-partition``: the server drops n3 as a
    slow consumer); counts what each subscriber got. After a long partition a second burst shows
    whether n3 reconnected and resubscribed."""
    long = kind == "long-partition"
    config = f'write_deadline: "{WRITE_DEADLINE:g}s"\n' if long else ""
    async with open_world(nats=True, nats_config=config) as w:
        driver = w.driver
        assert driver is not None
        healed = trio.Event()

        async def fault() -> None:
            await trio.sleep(1.0)
            if kind == "member-restart":
                w.nats[0].signal(signal.SIGKILL)  # the member every node connected to first
                await w.nats[0].exited.wait()
                await trio.sleep(1.0)
                await w.start_nats(0)
            else:
                await w.nft_drop("n3", "nats")
                await trio.sleep(LONG_PARTITION if long else 1.0)
                await w.nft_heal("n3")
            healed.set()

        async def counts() -> dict[str, int]:
            received = {}
            for name in ("n1", "n2", "n3"):
                address = f"{w.cluster['n3'].address}:9001" if name == "n3" else w.addresses[name]
                await driver.send(f"stats {address}")
                received[name] = (await driver.next_event())["received"]
            return received

        async with trio.open_nursery() as nursery:
            nursery.start_soon(fault)
            await driver.send(f"publish {w.addresses['n1']} {NATS_MESSAGES} {NATS_RATE}")
            published = await driver.next_event(60)
            with trio.fail_after(LONG_PARTITION + 20):
                await healed.wait()
        await trio.sleep(1.0)  # in flight
        received = await counts()
        if long:  # data the server had buffered still trickles in at TCP's backed-off retransmit times
            with trio.move_on_after(15):
                while True:
                    await trio.sleep(1.0)
                    again = await counts()
                    if again == received:
                        break
                    received = again
        # nats-server logs it (stderr, kept as each process's log) when it drops a slow consumer.
        slow = [line for m in w.nats for line in m.log if "slow consumer" in line.lower()]
        result = {
            "kind": kind,
            "sent": published["sent"],
            "publish_failed": published["failed"],
            "received": received,
        }
        if long:
            # n3's connection was closed by the server; does it come back and resubscribe?
            await driver.send(f"publish {w.addresses['n1']} {AFTER_MESSAGES} {AFTER_RATE}")
            after = await driver.next_event(60)
            await trio.sleep(1.0)  # in flight
            later = await counts()
            result["slow_consumer_log"] = slow[:3]
            result["after"] = {
                "sent": after["sent"], "failed": after["failed"],
                "received": {n: later[n] - received[n] for n in later},
            }  # fmt: skip
        return result


def nats_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| NATS scenario | published (failed) | received n1 / n2 / n3 | lost (at-most-once) |",
        "|---|---|---|---|",
    ]
    for r in results:
        got = r["received"]
        lost = " / ".join(str(r["sent"] - got[n]) for n in ("n1", "n2", "n3"))
        title = {
            "member-restart": "restart one of 3 nats-server members",
            "partitioned-subscriber": "one subscriber partitioned from NATS for 1 s",
            "long-partition": f"n3 partitioned for {LONG_PARTITION:g} s, `write_deadline` {WRITE_DEADLINE:g} s",
        }[r["kind"]]
        lines.append(
            f"| {title} | {r['sent']} ({r['publish_failed']}) | {got['n1']} / {got['n2']} / {got['n3']} | {lost} |"
        )
        if "after" in r:
            a, got = r["after"], r["after"]["received"]
            lost = " / ".join(str(a["sent"] - got[n]) for n in ("n1", "n2", "n3"))
            lines.append(
                f"| then {a['sent']} more, 1 s after the heal | {a['sent']} ({a['failed']}) "
                f"| {got['n1']} / {got['n2']} / {got['n3']} | {lost} |"
            )
    return "\n".join(lines)


def stream_row(r: dict[str, Any]) -> str:
    errors = [s["error"] for s in r["streams"] if s["error"]]
    worst = max(s["open_for"] for s in r["streams"])
    f, t = r["fds"], r["tasks"]
    first = errors[0].split('"detail":"')[-1].split('"')[0] if errors else "-"
    return (
        f"| {len(r['streams'])} bidi streams, node partitioned mid-stream | {len(errors)} of {len(r['streams'])} "
        f"| {worst:.2f} s (deadline {STREAM_TIMEOUT:g} s) | {f[0]} / {f[1]} / {f[2]} | {t[0]} / {t[1]} | {first} |"
    )


def stream_table(r: dict[str, Any]) -> str:
    return "\n".join([
        "| scenario | streams ended with an error at the client | longest stream lived | node fds before / open / after | node tasks before / after | client's error |",
        "|---|---|---|---|---|---|",
        stream_row(r),
    ])  # fmt: skip


def row(r: dict[str, Any]) -> str:
    h, f = r["healthy"], r["faulted"]
    rate = f["rate"] / h["rate"] if h["rate"] else 0.0
    p99 = f["p99"] / h["p99"] if h["p99"] else 0.0
    return (
        f"| {r['title']} | {f['ok']} | {f['failures']} | {f['p50'] * 1e3:.1f} | {f['p99'] * 1e3:.1f} "
        f"({p99:.1f}x) | {f.get('max', 0) * 1e3:.0f} | {f['rate']:.0f} ({rate:.2f}x) | {h['p50'] * 1e3:.1f} / {h['p99'] * 1e3:.1f} | {h['rate']:.0f} |"
    )


def table(results: list[dict[str, Any]], seconds: float) -> str:
    head = (
        f"Each fault phase lasts {seconds:g} s (the rolling deploy 3x that), 8 callers, 1 s timeout; the "
        "fault is injected 0.3 s in, so the numbers include the moments before ejection.\n\n"
        "| scenario | ok | failed | p50 ms | p99 ms (vs healthy) | max ms | calls/s (vs healthy) | healthy p50/p99 ms | healthy calls/s |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([head, *(row(r) for r in results)])


def write_docs(text: str) -> None:
    doc = DOCS.read_text()
    before, _, rest = doc.partition(BEGIN)
    _, _, after = rest.partition(END)
    DOCS.write_text(f"{before}{BEGIN}\n{text}\n{END}{after}")


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m tests.cluster.scenarios")
    parser.add_argument("--quick", action="store_true", help="1.5 s phases instead of 5 s")
    parser.add_argument("--write-docs", action="store_true", help="put the table into docs/reliability.md")
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("names", nargs="*", help="scenarios to run (default: all)")
    args = parser.parse_args(argv)
    seconds = 1.5 if args.quick else 5.0
    chosen = [s for s in SCENARIOS if not args.names or s.name in args.names]
    results = []
    for s in chosen:
        r = await run_scenario(s, seconds)
        print(row(r), flush=True)
        results.append(r)
    text = table(results, seconds)
    if not args.names or "stream-cut" in args.names:
        cut = await run_stream_cut()
        results.append({"scenario": "stream-cut", **cut})
        text += "\n\nA stream cut by a partition:\n\n" + stream_table(cut)
    kinds = [
        k
        for k in ("member-restart", "partitioned-subscriber", "long-partition")
        if not args.names or k in args.names
    ]
    if kinds:
        nats_results = [await run_nats(k) for k in kinds]
        results.extend(nats_results)
        text += (
            "\n\nPub/sub over a 3-member NATS cluster (n1 publishes 600 messages over 3 s):\n\n"
            + nats_table(nats_results)
        )
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.write_docs:
        write_docs(text)


if __name__ == "__main__":
    trio.run(main)
