"""The SWIM core driven directly: N members on a fake clock over a simulated lossy network."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trimicro.registry._swim import (
    Ack,
    Alive,
    Dead,
    DecodeError,
    Effects,
    MemberEvent,
    Ping,
    PingReq,
    Suspect,
    Swim,
    SwimConfig,
    decode,
    decode_state,
    encode,
)

CONFIG = SwimConfig(push_pull_interval=5.0, reconnect_interval=2.0)


class Sim:
    """Members by address; datagrams delivered after 1-5 ms unless ``drop`` says otherwise."""

    def __init__(self, n: int, *, seed: int = 1, loss: float = 0.0, config: SwimConfig = CONFIG) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.loss = loss
        self.drop: Callable[[str, str], bool] = lambda a, b: False
        self.config = config
        self.nodes: dict[str, Swim] = {}
        self.crashed: set[str] = set()
        self.events: list[tuple[float, str, MemberEvent]] = []
        self._queue: list[tuple[float, int, str, str, bytes]] = []
        self._n = 0
        for i in range(n):
            self.add(f"10.0.0.{i + 1}:7946", seeds=["10.0.0.1:7946"] if i else [])

    def add(self, addr: str, seeds: list[str]) -> Swim:
        node = Swim(
            name=f"n-{addr}", addr=addr, now=self.now, seeds=seeds, config=self.config,
            rng=random.Random(self.rng.random()), meta={"addr": addr},
        )  # fmt: skip
        self.nodes[addr] = node
        return node

    def _lost(self, src: str, dst: str) -> bool:
        return dst in self.crashed or src in self.crashed or self.drop(src, dst) or self.rng.random() < self.loss

    def apply(self, src: str, out: Effects) -> None:
        for dst, data in out.packets:
            if not self._lost(src, dst):
                self._n += 1
                heapq.heappush(self._queue, (self.now + self.rng.uniform(0.001, 0.005), self._n, src, dst, data))
        for ev in out.events:
            self.events.append((self.now, src, ev))
        for dst in out.push_pulls:
            # A TCP exchange: both directions or nothing (a dropped link refuses the connection).
            if dst not in self.nodes or self.drop(src, dst) or dst in self.crashed:
                continue
            a, b = self.nodes[src], self.nodes[dst]
            self.apply(dst, b.merge_state(self.now, a.local_state()))
            self.apply(src, a.merge_state(self.now, b.local_state()))

    def run_until(self, t: float) -> None:
        while True:
            live = [a for a in self.nodes if a not in self.crashed]
            next_timer = min(self.nodes[a].next_deadline() for a in live)
            next_packet = self._queue[0][0] if self._queue else float("inf")
            step = min(next_timer, next_packet)
            if step > t:
                self.now = t
                return
            self.now = max(self.now, step)
            if next_packet <= next_timer:
                _, _, src, dst, data = heapq.heappop(self._queue)
                if dst not in self.crashed:
                    self.apply(dst, self.nodes[dst].receive(self.now, data, src))
            else:
                for a in live:
                    if self.nodes[a].next_deadline() <= self.now:
                        self.apply(a, self.nodes[a].tick(self.now))

    def view(self, addr: str) -> set[str]:
        return {a for _, a, _ in self.nodes[addr].alive_members()}

    def converged(self, members: set[str] | None = None) -> bool:
        members = members if members is not None else set(self.nodes) - self.crashed
        return all(self.view(a) == members - {a} for a in members)


def test_join_converges() -> None:
    sim = Sim(8)
    sim.run_until(10.0)
    assert sim.converged()
    # metadata came along with membership
    assert ("n-10.0.0.2:7946", "10.0.0.2:7946", {"addr": "10.0.0.2:7946"}) in sim.nodes[
        "10.0.0.5:7946"
    ].alive_members()


def test_metadata_update_spreads_by_gossip() -> None:
    sim = Sim(6)
    sim.run_until(10.0)
    node = sim.nodes["10.0.0.3:7946"]
    sim.apply(node.addr, node.set_meta({"services": ["x"]}))
    sim.run_until(11.0)  # well before the next push/pull
    for addr, other in sim.nodes.items():
        if addr != node.addr:
            assert (node.name, node.addr, {"services": ["x"]}) in other.alive_members()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_crash_detected_within_bound(seed: int) -> None:
    n = 5
    sim = Sim(n, seed=seed)
    sim.run_until(10.0)
    assert sim.converged()
    victim = "10.0.0.4:7946"
    sim.crashed.add(victim)
    crash_at = sim.now
    bound = CONFIG.detection_bound(n)
    sim.run_until(crash_at + bound)
    gone = [t for t, src, ev in sim.events if ev.kind == "leave" and ev.addr == victim and t >= crash_at]
    assert len(gone) == n - 1
    assert max(gone) - crash_at <= bound
    assert sim.converged()
    # the dead member is not resurrected later
    sim.run_until(crash_at + 3 * bound)
    assert sim.converged()


def test_crash_detected_with_message_loss() -> None:
    sim = Sim(6, loss=0.1, seed=7)
    sim.run_until(15.0)
    assert sim.converged()
    sim.crashed.add("10.0.0.6:7946")
    sim.run_until(15.0 + CONFIG.detection_bound(6) + 5)
    assert sim.converged()


def test_no_false_positives_under_loss() -> None:
    sim = Sim(6, loss=0.05, seed=3)
    sim.run_until(60.0)
    assert sim.converged()
    # suspicions may happen, but every suspected member refuted before it was declared dead
    assert not [ev for _, _, ev in sim.events if ev.kind == "leave"]


def test_refutation_outbids_a_false_suspicion() -> None:
    sim = Sim(4)
    sim.run_until(10.0)
    target = sim.nodes["10.0.0.2:7946"]
    before = target.inc
    # forge a suspicion from member 1 and let it spread
    sim.apply("10.0.0.1:7946", sim.nodes["10.0.0.1:7946"].receive(
        sim.now, encode([Suspect(target.name, target.inc, "forger")]), "10.0.0.9:1"))  # fmt: skip
    sim.run_until(20.0)
    assert target.inc > before
    assert sim.converged()
    assert not [ev for _, _, ev in sim.events if ev.kind == "leave"]


def test_leave_is_announced_and_not_refuted() -> None:
    sim = Sim(5)
    sim.run_until(10.0)
    node = sim.nodes["10.0.0.5:7946"]
    sim.apply(node.addr, node.leave())
    sim.crashed.add(node.addr)
    sim.run_until(10.5)
    for addr in set(sim.nodes) - {node.addr}:
        assert sim.nodes[addr].state_of(node.name) == "left"
    sim.run_until(30.0)
    assert sim.converged()


def test_partition_and_heal() -> None:
    sim = Sim(6)
    sim.run_until(10.0)
    assert sim.converged()
    a = {f"10.0.0.{i}:7946" for i in (1, 2, 3)}
    b = {f"10.0.0.{i}:7946" for i in (4, 5, 6)}
    sim.drop = lambda s, d: (s in a) != (d in a)
    sim.run_until(10.0 + 2 * CONFIG.detection_bound(6))
    assert sim.converged(a) and sim.converged(b)
    sim.drop = lambda s, d: False
    sim.run_until(sim.now + 2 * CONFIG.push_pull_interval + 2 * CONFIG.reconnect_interval)
    assert sim.converged()


def test_seed_down_at_start_join_retried() -> None:
    sim = Sim(1)
    late = sim.add("10.0.0.2:7946", seeds=["10.0.0.1:7946", "10.0.0.3:7946"])
    sim.crashed.add("10.0.0.1:7946")
    sim.run_until(5.0)
    assert late.alive_members() == []  # a lone node keeps working for itself
    sim.crashed.discard("10.0.0.1:7946")
    sim.run_until(40.0)  # the back-off is capped at 30 s
    assert sim.converged()


def test_detection_bound_scales_with_log_n() -> None:
    c = SwimConfig()
    assert c.suspicion_min(5) == c.suspicion_mult * c.probe_interval
    assert c.suspicion_min(100) == 2 * c.suspicion_mult * c.probe_interval


# -- codec ------------------------------------------------------------------------------------------
def test_round_trip() -> None:
    msgs = [Ping(1, "a", "b"), Ack(2), PingReq(3, "c", "h:1"), Alive("a", "h:2", 4, {"k": [1]}),
            Suspect("a", 5, "b"), Dead("a", 6, "a")]  # fmt: skip
    assert decode(encode(msgs)) == msgs  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        decode_state(encode([Ping(1, "a", "b")]))


@pytest.mark.parametrize(
    "data",
    [b"", b"[]", b"{}", b"\xff", b'[{"t":"ping"}]', b'[{"t":"ack","q":-1}]', b'[{"t":"ack","q":true}]',
     b'[{"t":"x"}]', b"[1]", b"[" * 100_000],
)  # fmt: skip
def test_bad_datagrams(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_decoder_bytes(data: bytes) -> None:
    try:
        decode(data)
    except DecodeError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["t", "q", "n", "a", "i", "f", "to", "m"]), inner, max_size=5),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values, max_size=4))
def test_fuzz_receive_structured(objs: list[object]) -> None:
    import json

    node = Swim(name="me", addr="h:1", now=0.0)
    try:
        node.receive(0.0, json.dumps(objs).encode(), "h:2")
    except DecodeError:
        pass
    node.tick(1.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(json_values, max_size=4))
def test_fuzz_push_pull_payload(objs: list[object]) -> None:
    import json

    node = Swim(name="me", addr="h:1", now=0.0, seeds=["h:2"])
    try:
        node.merge_state(0.0, json.dumps(objs).encode())
    except DecodeError:
        pass
    node.tick(1.0)
    decode_state(node.local_state())  # whatever it accepted, it can still describe
