"""A sans-IO SWIM membership core (with Lifeguard's suspicion) for the gossip registry.

Why sans-IO: failure detection is all timers and lost datagrams, which are miserable to test over
real sockets. :class:`Swim` is a pure state machine: the driver feeds it datagrams (``receive``),
timer ticks (``tick``, at ``next_deadline()``) and TCP push/pull payloads, and carries out the
:class:`Effects` it returns (datagrams to send, push/pull exchanges to open, membership events).
Tests drive N of them on a fake clock over a simulated lossy network.

The protocol follows SWIM as refined by hashicorp/memberlist (learned from, not copied):

- every ``probe_interval`` a member pings the next member of a shuffled round-robin list; with no
  ack after ``probe_timeout`` it asks ``indirect_checks`` others to ping it for it (ping-req); with
  no ack by the end of the interval the target is *suspected*;
- a suspicion becomes *dead* after a timeout that starts at ``suspicion_mult·max(1, log10 n)·
  probe_interval`` times ``suspicion_max_mult`` and shrinks towards the minimum as independent
  members confirm it (Lifeguard), so a dead node goes quickly while a slow one gets time to refute;
- a member suspected or declared dead while alive *refutes* with a higher incarnation number;
- alive/suspect/dead/left messages are piggy-backed on pings and acks and also gossiped to a few
  random members every ``gossip_interval``, each at most ``retransmit_mult·ceil(log10(n+1))`` times;
- every ``push_pull_interval`` a member exchanges its whole state with one random member over TCP
  (anti-entropy); the same exchange is the join, retried with back-off while no peer is known, and
  is also tried with a recently dead member every ``reconnect_interval``, so a healed partition
  merges again (memberlist leaves that last part to Serf).

A member's *metadata* is an arbitrary JSON value (the registry puts its service records there);
changing it bumps the incarnation, so the newest metadata always wins. Leaving is a "dead" message
sent by the member about itself ("left"). Wire format: UTF-8 JSON, a datagram being a list of
messages (the first is the probe message, the rest piggy-backed broadcasts); see docs/registry.md.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any, Literal

import attrs

__all__ = [
    "Ack",
    "Alive",
    "Dead",
    "DecodeError",
    "Effects",
    "MemberEvent",
    "Ping",
    "PingReq",
    "Suspect",
    "Swim",
    "SwimConfig",
    "decode",
    "decode_state",
    "encode",
]

MAX_TCP_PAYLOAD = 16 * 1024 * 1024


class DecodeError(ValueError):
    """A datagram or push/pull payload that is not a well-formed gossip message."""


# -- messages ---------------------------------------------------------------------------------------
@attrs.frozen
class Ping:
    seq: int
    to: str  # the name the sender believes it is pinging (guards against a reused address)
    frm: str


@attrs.frozen
class Ack:
    seq: int


@attrs.frozen
class PingReq:
    seq: int
    target: str
    target_addr: str


@attrs.frozen
class Alive:
    name: str
    addr: str
    inc: int
    meta: Any


@attrs.frozen
class Suspect:
    name: str
    inc: int
    frm: str


@attrs.frozen
class Dead:
    """``frm == name`` means the member left on purpose."""

    name: str
    inc: int
    frm: str


Message = Ping | Ack | PingReq | Alive | Suspect | Dead
StateMessage = Alive | Suspect | Dead


def _to_obj(msg: Message) -> dict[str, Any]:
    match msg:
        case Ping():
            return {"t": "ping", "q": msg.seq, "to": msg.to, "f": msg.frm}
        case Ack():
            return {"t": "ack", "q": msg.seq}
        case PingReq():
            return {"t": "preq", "q": msg.seq, "n": msg.target, "a": msg.target_addr}
        case Alive():
            return {"t": "alive", "n": msg.name, "a": msg.addr, "i": msg.inc, "m": msg.meta}
        case Suspect():
            return {"t": "suspect", "n": msg.name, "i": msg.inc, "f": msg.frm}
        case Dead():
            return {"t": "dead", "n": msg.name, "i": msg.inc, "f": msg.frm}


def encode(messages: list[Message]) -> bytes:
    return json.dumps([_to_obj(m) for m in messages], separators=(",", ":")).encode()


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise DecodeError(f"field {key!r} must be a non-empty string")
    return value


def _int(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise DecodeError(f"field {key!r} must be a non-negative integer")
    return value


def _from_obj(obj: Any) -> Message:
    if not isinstance(obj, dict):
        raise DecodeError("a message must be an object")
    match obj.get("t"):
        case "ping":
            return Ping(_int(obj, "q"), _str(obj, "to"), _str(obj, "f"))
        case "ack":
            return Ack(_int(obj, "q"))
        case "preq":
            return PingReq(_int(obj, "q"), _str(obj, "n"), _str(obj, "a"))
        case "alive":
            return Alive(_str(obj, "n"), _str(obj, "a"), _int(obj, "i"), obj.get("m"))
        case "suspect":
            return Suspect(_str(obj, "n"), _int(obj, "i"), _str(obj, "f"))
        case "dead":
            return Dead(_str(obj, "n"), _int(obj, "i"), _str(obj, "f"))
        case other:
            raise DecodeError(f"unknown message type {other!r}")


def decode(data: bytes) -> list[Message]:
    """Parse a datagram; raises :class:`DecodeError` (and nothing else) on any malformed input."""
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise DecodeError(f"not JSON: {exc}") from None
    if not isinstance(raw, list) or not raw:
        raise DecodeError("a datagram must be a non-empty list of messages")
    return [_from_obj(o) for o in raw]


def decode_state(data: bytes) -> list[StateMessage]:
    """Parse a push/pull payload: a list of alive/suspect/dead records."""
    out: list[StateMessage] = []
    for msg in decode(data):
        if not isinstance(msg, Alive | Suspect | Dead):
            raise DecodeError("a push/pull payload holds only alive/suspect/dead records")
        out.append(msg)
    return out


# -- state ------------------------------------------------------------------------------------------
@attrs.frozen
class SwimConfig:
    """Timings in seconds; defaults are memberlist's LAN profile."""

    probe_interval: float = 1.0
    probe_timeout: float = 0.5
    indirect_checks: int = 3
    suspicion_mult: int = 4
    suspicion_max_mult: int = 6
    retransmit_mult: int = 4
    gossip_interval: float = 0.2
    gossip_nodes: int = 3
    gossip_to_the_dead: float = 30.0
    push_pull_interval: float = 30.0
    reconnect_interval: float = 10.0
    dead_reap: float = 300.0
    join_backoff_min: float = 0.5
    join_backoff_max: float = 30.0
    max_datagram: int = 60_000

    def suspicion_min(self, n: int) -> float:
        return self.suspicion_mult * max(1.0, math.log10(max(n, 1))) * self.probe_interval

    def detection_bound(self, n: int) -> float:
        """Worst case from a crash to every member having declared it dead (no message loss):
        one full round-robin of probes by its least lucky prober, a failed probe, the longest
        suspicion, and dissemination of the death (a probe and a few gossip rounds)."""
        return (
            (n - 1) * self.probe_interval
            + self.probe_interval
            + self.suspicion_min(n) * self.suspicion_max_mult
            + self.probe_interval
            + 3 * self.gossip_interval
        )


State = Literal["alive", "suspect", "dead", "left"]


@attrs.define(eq=False)
class _Member:
    name: str
    addr: str
    inc: int
    meta: Any
    state: State = "alive"
    since: float = 0.0
    # suspicion (Lifeguard): when it started, who confirmed it, when it fires
    suspect_start: float = 0.0
    confirmations: set[str] = attrs.field(factory=set)
    suspect_deadline: float = math.inf


@attrs.frozen
class MemberEvent:
    """``join``: a member became alive; ``update``: its metadata changed; ``leave``: dead or left."""

    kind: Literal["join", "update", "leave"]
    name: str
    addr: str
    meta: Any


@attrs.define
class Effects:
    packets: list[tuple[str, bytes]] = attrs.field(factory=list)
    push_pulls: list[str] = attrs.field(factory=list)  # addresses to exchange state with over TCP
    events: list[MemberEvent] = attrs.field(factory=list)

    def extend(self, other: Effects) -> None:
        self.packets += other.packets
        self.push_pulls += other.push_pulls
        self.events += other.events


@attrs.define(eq=False)
class _Broadcast:
    msg: StateMessage
    size: int
    transmits: int = 0


@attrs.define(eq=False)
class _Probe:
    target: str
    seq: int
    indirect_at: float
    end_at: float
    indirect_sent: bool = False


@attrs.define(eq=False)
class Swim:
    """One member's view of the group; see the module docstring. Not thread-safe, not async."""

    name: str
    addr: str
    now: float
    seeds: list[str] = attrs.field(factory=list)
    config: SwimConfig = attrs.field(factory=SwimConfig)
    meta: Any = None
    rng: random.Random = attrs.field(factory=random.Random)
    inc: int = attrs.field(default=0, init=False)
    leaving: bool = attrs.field(default=False, init=False)
    members: dict[str, _Member] = attrs.field(factory=dict, init=False)
    _bcasts: dict[str, _Broadcast] = attrs.field(factory=dict, init=False)
    _seq: int = attrs.field(default=0, init=False)
    _probe: _Probe | None = attrs.field(default=None, init=False)
    _probe_order: list[str] = attrs.field(factory=list, init=False)
    _forwards: dict[int, tuple[str, int, float]] = attrs.field(factory=dict, init=False)
    _next_probe: float = attrs.field(init=False)
    _next_gossip: float = attrs.field(init=False)
    _next_push_pull: float = attrs.field(init=False)
    _next_reconnect: float = attrs.field(init=False)
    _next_join: float = attrs.field(init=False)
    _join_backoff: float = attrs.field(init=False)
    _suspicion_n: int = attrs.field(default=1, init=False)  # group size when the last suspicion began

    def __attrs_post_init__(self) -> None:
        c = self.config
        # Spread the first probe so members started together do not probe in lock-step.
        self._next_probe = self.now + self.rng.uniform(0, c.probe_interval)
        self._next_gossip = self.now + c.gossip_interval
        self._next_push_pull = self.now + c.push_pull_interval * self.rng.uniform(0.5, 1.0)
        self._next_reconnect = self.now + c.reconnect_interval
        self._next_join = self.now  # join right away
        self._join_backoff = c.join_backoff_min
        self._queue(self._self_alive())

    # -- public API ---------------------------------------------------------------------------------
    def alive_members(self) -> list[tuple[str, str, Any]]:
        """(name, addr, meta) of every other member currently alive or suspect."""
        return [(m.name, m.addr, m.meta) for m in self.members.values() if m.state in ("alive", "suspect")]

    def state_of(self, name: str) -> State | None:
        m = self.members.get(name)
        return m.state if m else None

    def set_meta(self, meta: Any) -> Effects:
        """Publish new metadata: a new incarnation, gossiped like any alive message."""
        if meta != self.meta:
            self.meta = meta
            self.inc += 1
            self._queue(self._self_alive())
        return Effects()

    def leave(self) -> Effects:
        """Announce a deliberate leave to every live member at once (the caller then stops)."""
        self.leaving = True
        self.inc += 1
        msg = Dead(self.name, self.inc, self.name)
        out = Effects()
        data = encode([msg])
        for m in self.members.values():
            if m.state in ("alive", "suspect"):
                out.packets.append((m.addr, data))
        return out

    def local_state(self) -> bytes:
        """The push/pull payload: ourselves and every member we know of."""
        msgs: list[Message] = [self._self_alive()]
        for m in self.members.values():
            if m.state == "alive":
                msgs.append(Alive(m.name, m.addr, m.inc, m.meta))
            elif m.state == "suspect":
                msgs.append(Suspect(m.name, m.inc, self.name))
            else:
                msgs.append(Dead(m.name, m.inc, m.name if m.state == "left" else self.name))
        return encode(msgs)

    def merge_state(self, now: float, data: bytes) -> Effects:
        """Merge a peer's push/pull payload (both directions). Raises :class:`DecodeError`."""
        self.now = now
        out = Effects()
        for msg in decode_state(data):
            if isinstance(msg, Alive):
                self._on_alive(msg, out)
            elif isinstance(msg, Dead) and msg.frm == msg.name:
                self._on_dead(msg, out)
            else:  # a peer's "dead" may be a partition's artefact: suspect it, and let it refute
                self._on_suspect(Suspect(msg.name, msg.inc, self.name), out)
        return out

    def next_deadline(self) -> float:
        d = min(self._next_probe, self._next_gossip, self._next_push_pull, self._next_reconnect)
        if self._needs_join():
            d = min(d, self._next_join)
        if self._probe is not None:
            d = min(d, self._probe.end_at if self._probe.indirect_sent else self._probe.indirect_at)
        for m in self.members.values():
            if m.state == "suspect":
                d = min(d, m.suspect_deadline)
        return d

    # -- timers -------------------------------------------------------------------------------------
    def tick(self, now: float) -> Effects:
        self.now = now
        c = self.config
        out = Effects()
        if self._needs_join() and now >= self._next_join:
            out.push_pulls += [s for s in self.seeds if s != self.addr]
            self._next_join = now + self._join_backoff * self.rng.uniform(0.8, 1.2)
            self._join_backoff = min(self._join_backoff * 2, c.join_backoff_max)
        elif not self._needs_join():
            self._join_backoff = c.join_backoff_min
        self._tick_probe(now, out)
        for m in list(self.members.values()):
            if m.state == "suspect" and now >= m.suspect_deadline:
                self._declare_dead(m, Dead(m.name, m.inc, self.name), out)
            elif m.state in ("dead", "left") and now - m.since >= c.dead_reap:
                del self.members[m.name]
        for seq, (_, _, expires) in list(self._forwards.items()):
            if now >= expires:
                del self._forwards[seq]
        if now >= self._next_gossip:
            self._next_gossip = max(self._next_gossip + c.gossip_interval, now)
            self._gossip(out)
        if now >= self._next_push_pull:
            self._next_push_pull = now + c.push_pull_interval
            live = [m.addr for m in self.members.values() if m.state == "alive"]
            if live:
                out.push_pulls.append(self.rng.choice(live))
        if now >= self._next_reconnect:
            self._next_reconnect = now + c.reconnect_interval
            dead = [m.addr for m in self.members.values() if m.state == "dead"]
            if dead:
                out.push_pulls.append(self.rng.choice(dead))
        return out

    def _needs_join(self) -> bool:
        return bool(self.seeds) and not any(m.state in ("alive", "suspect") for m in self.members.values())

    def _tick_probe(self, now: float, out: Effects) -> None:
        c = self.config
        p = self._probe
        if p is not None:
            target = self.members.get(p.target)
            if target is None or target.state in ("dead", "left"):
                self._probe = p = None
            elif not p.indirect_sent and now >= p.indirect_at:
                p.indirect_sent = True
                helpers = [
                    m for m in self.members.values() if m.state == "alive" and m.name != target.name
                ]
                for h in self.rng.sample(helpers, min(c.indirect_checks, len(helpers))):
                    self._send(h.addr, PingReq(p.seq, target.name, target.addr), out)
            if p is not None and now >= p.end_at:
                self._probe = None
                self._on_suspect(Suspect(target.name, target.inc, self.name), out)  # type: ignore[union-attr]
        if now >= self._next_probe:
            self._next_probe = max(self._next_probe + c.probe_interval, now)
            if self._probe is None:
                target = self._next_target()
                if target is not None:
                    self._seq += 1
                    self._probe = _Probe(target.name, self._seq, now + c.probe_timeout, now + c.probe_interval)
                    self._send(target.addr, Ping(self._seq, target.name, self.name), out)

    def _next_target(self) -> _Member | None:
        for _ in range(2):
            while self._probe_order:
                m = self.members.get(self._probe_order.pop())
                if m is not None and m.state in ("alive", "suspect"):
                    return m
            self._probe_order = [n for n, m in self.members.items() if m.state in ("alive", "suspect")]
            self.rng.shuffle(self._probe_order)
        return None

    def _gossip(self, out: Effects) -> None:
        if not self._bcasts:
            return
        c = self.config
        peers = [
            m
            for m in self.members.values()
            if m.state in ("alive", "suspect")
            or (m.state == "dead" and self.now - m.since < c.gossip_to_the_dead)
        ]
        for m in self.rng.sample(peers, min(c.gossip_nodes, len(peers))):
            msgs = self._take_broadcasts(c.max_datagram)
            if not msgs:
                return
            out.packets.append((m.addr, encode(msgs)))

    # -- datagrams ----------------------------------------------------------------------------------
    def receive(self, now: float, data: bytes, source: str) -> Effects:
        """Handle one datagram from ``source`` (host:port). Raises :class:`DecodeError`."""
        self.now = now
        out = Effects()
        for msg in decode(data):
            match msg:
                case Ping():
                    if msg.to == self.name and not self.leaving:
                        self._send(source, Ack(msg.seq), out)
                case PingReq():
                    self._seq += 1
                    self._forwards[self._seq] = (source, msg.seq, now + self.config.probe_interval)
                    self._send(msg.target_addr, Ping(self._seq, msg.target, self.name), out)
                case Ack():
                    if self._probe is not None and msg.seq == self._probe.seq:
                        self._probe = None
                    fwd = self._forwards.pop(msg.seq, None)
                    if fwd is not None:
                        self._send(fwd[0], Ack(fwd[1]), out)
                case Alive():
                    self._on_alive(msg, out)
                case Suspect():
                    self._on_suspect(msg, out)
                case Dead():
                    self._on_dead(msg, out)
        return out

    def _send(self, addr: str, msg: Message, out: Effects) -> None:
        first = encode([msg])
        extra = self._take_broadcasts(self.config.max_datagram - len(first))
        out.packets.append((addr, encode([msg, *extra]) if extra else first))

    # -- broadcasts ---------------------------------------------------------------------------------
    def _retransmit_limit(self) -> int:
        n = 1 + sum(1 for m in self.members.values() if m.state in ("alive", "suspect"))
        return self.config.retransmit_mult * max(1, math.ceil(math.log10(n + 1)))

    def _queue(self, msg: StateMessage) -> None:
        # A newer message about a member replaces the older one still queued (memberlist's
        # invalidation), so the queue stays bounded by the number of members.
        self._bcasts[msg.name] = _Broadcast(msg, len(encode([msg])))

    def _take_broadcasts(self, budget: int) -> list[Message]:
        limit = self._retransmit_limit()
        taken: list[Message] = []
        for key, b in sorted(self._bcasts.items(), key=lambda kv: kv[1].transmits):
            if b.size + 1 > budget:
                continue
            budget -= b.size + 1
            taken.append(b.msg)
            b.transmits += 1
            if b.transmits >= limit:
                del self._bcasts[key]
        return taken

    def _self_alive(self) -> Alive:
        return Alive(self.name, self.addr, self.inc, self.meta)

    def _refute(self, inc: int) -> None:
        if self.leaving:
            return
        self.inc = max(self.inc, inc) + 1
        self._queue(self._self_alive())

    # -- state transitions --------------------------------------------------------------------------
    def _on_alive(self, msg: Alive, out: Effects) -> None:
        if msg.name == self.name:
            if msg.inc > self.inc or (msg.inc == self.inc and msg.meta != self.meta):
                self._refute(msg.inc)  # an older life of ours, or a forgery: outbid it
            return
        m = self.members.get(msg.name)
        if m is None:
            m = _Member(msg.name, msg.addr, msg.inc, msg.meta, "alive", self.now)
            self.members[msg.name] = m
            self._probe_order.insert(self.rng.randint(0, len(self._probe_order)), msg.name)
            out.events.append(MemberEvent("join", m.name, m.addr, m.meta))
            self._queue(msg)
            return
        if msg.inc <= m.inc:
            return
        was = m.state
        changed = msg.meta != m.meta
        m.addr, m.inc, m.meta, m.state = msg.addr, msg.inc, msg.meta, "alive"
        m.suspect_deadline = math.inf
        m.confirmations.clear()
        if was in ("dead", "left"):
            m.since = self.now
            out.events.append(MemberEvent("join", m.name, m.addr, m.meta))
        elif changed:
            out.events.append(MemberEvent("update", m.name, m.addr, m.meta))
        self._queue(msg)

    def _on_suspect(self, msg: Suspect, out: Effects) -> None:
        if msg.name == self.name:
            if msg.inc >= self.inc:
                self._refute(msg.inc)
            return
        m = self.members.get(msg.name)
        if m is None or msg.inc < m.inc or m.state in ("dead", "left"):
            return
        if m.state == "suspect":
            if msg.frm not in m.confirmations and msg.frm != self.name:
                m.confirmations.add(msg.frm)
                self._update_suspicion(m)
                self._queue(msg)
            return
        m.state, m.inc, m.since = "suspect", msg.inc, self.now
        m.suspect_start = self.now
        m.confirmations = {msg.frm} if msg.frm != self.name else set()
        self._suspicion_n = 1 + sum(1 for x in self.members.values() if x.state in ("alive", "suspect"))
        self._update_suspicion(m)
        self._queue(Suspect(m.name, m.inc, self.name))

    def _update_suspicion(self, m: _Member) -> None:
        """Lifeguard: from max timeout down to min as independent confirmations arrive."""
        c = self.config
        lo = c.suspicion_min(self._suspicion_n)
        hi = lo * c.suspicion_max_mult
        k = max(1, min(c.suspicion_mult - 2, self._suspicion_n - 2))
        frac = math.log(len(m.confirmations) + 1) / math.log(k + 1)
        timeout = max(lo, hi - (hi - lo) * frac)
        m.suspect_deadline = m.suspect_start + timeout

    def _on_dead(self, msg: Dead, out: Effects) -> None:
        if msg.name == self.name:
            if msg.frm != self.name and msg.inc >= self.inc:
                self._refute(msg.inc)
            return
        m = self.members.get(msg.name)
        if m is None or msg.inc < m.inc or m.state in ("dead", "left"):
            return
        self._declare_dead(m, msg, out)

    def _declare_dead(self, m: _Member, msg: Dead, out: Effects) -> None:
        m.state = "left" if msg.frm == msg.name else "dead"
        m.inc, m.since = msg.inc, self.now
        m.suspect_deadline = math.inf
        m.confirmations.clear()
        if self._probe is not None and self._probe.target == m.name:
            self._probe = None
        out.events.append(MemberEvent("leave", m.name, m.addr, m.meta))
        self._queue(msg)
