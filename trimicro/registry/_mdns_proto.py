"""Sans-IO mDNS for the mdns registry: records in, packets and events out, no sockets, no clock.

:class:`MdnsState` holds what this process publishes and a cache of what it has heard. It is fed
datagrams (:meth:`MdnsState.receive`) and the time (:meth:`MdnsState.tick`), and returns
:class:`Effects`: datagrams to multicast and registry :class:`~trimicro.registry.Result` events. The
trio adapter in ``mdns.py`` only moves bytes and sleeps until :meth:`MdnsState.next_deadline`.

Layout on the wire: one DNS-SD instance per node under ``_micro._tcp.local.`` (instance label = the
node id when it is a valid DNS label, else a hash of it), with PTR, SRV, A (for IPv4 literal hosts) and
a TXT record. The TXT record carries the Service JSON with that single node, zlib-compressed and split
into 255-byte character-strings after a ``tm=1`` marker; Go Micro uses hex(zlib(json)) for the same
reason (records stay small). DNS encoding/decoding reuses zeroconf's record classes.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import re
import zlib

import attrs

# Public names of the package (not re-exported for mypy; the submodules are private).
from zeroconf import (  # type: ignore[attr-defined]
    DNSAddress,
    DNSIncoming,
    DNSOutgoing,
    DNSPointer,
    DNSQuestion,
    DNSRecord,
    DNSService,
    DNSText,
)

from ..errors import RegistryError
from ._model import Node, Result, Service

__all__ = ["DEFAULT_TTL", "SERVICE_TYPE", "Effects", "MdnsState", "decode_txt", "encode_txt"]

log = logging.getLogger("trimicro.registry.mdns")

SERVICE_TYPE = "_micro._tcp.local."
#: TTL used on the wire when register() is given none; we re-announce at 80% of it.
DEFAULT_TTL = 120
_TYPE_A, _TYPE_PTR, _TYPE_TXT, _TYPE_SRV, _TYPE_ANY = 1, 12, 16, 33, 255
_CLASS_IN, _CLASS_UNIQUE = 1, 0x8000
_FLAGS_QUERY, _FLAGS_RESPONSE = 0x0000, 0x8400  # response: QR + AA
_MARKER = b"tm=1"
#: Largest TXT rdata we publish: one record must fit an mDNS packet (RFC 6762 s17: 9000 bytes).
MAX_TXT = 8000
#: Largest JSON we inflate from a TXT record (guards against zlib bombs).
MAX_JSON = 1 << 20
_SAFE_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}\Z")
_ANNOUNCE_GAP = 1.0  # RFC 6762 s8.3: announce twice, one second apart


def encode_txt(service: Service) -> bytes:
    """TXT rdata for ``service`` (one node): marker, then zlib(JSON) in 255-byte strings."""
    blob = zlib.compress(service.to_json().encode(), 9)
    parts = [_MARKER] + [blob[i : i + 255] for i in range(0, len(blob), 255)]
    return b"".join(bytes([len(p)]) + p for p in parts)


def decode_txt(rdata: bytes) -> Service:
    """Inverse of :func:`encode_txt`; ValueError for anything that is not our record."""
    parts: list[bytes] = []
    i = 0
    while i < len(rdata):
        n = rdata[i]
        if i + 1 + n > len(rdata):
            raise ValueError("truncated TXT string")
        parts.append(rdata[i + 1 : i + 1 + n])
        i += 1 + n
    if not parts or parts[0] != _MARKER:
        raise ValueError("not a trimicro TXT record")
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(b"".join(parts[1:]), MAX_JSON)
    except zlib.error as exc:
        raise ValueError(f"bad zlib data: {exc}") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise ValueError("TXT payload too large or truncated")
    service = Service.from_json(data)
    if not service.name or len(service.nodes) != 1:
        raise ValueError("TXT record must carry a named service with exactly one node")
    return service


def with_nodes(service: Service, nodes: tuple[Node, ...]) -> Service:
    """``service`` with ``nodes`` (attrs.evolve trips mypy on the tuple converter)."""
    return attrs.evolve(service, nodes=nodes)


def instance_name(node: Node, service_type: str = SERVICE_TYPE) -> str:
    """The DNS-SD instance name of ``node``: its id if that is a plain DNS label, else a hash."""
    label = (
        node.id
        if _SAFE_LABEL.match(node.id)
        else hashlib.blake2b(node.id.encode(), digest_size=16).hexdigest()
    )
    return f"{label}.{service_type}"


@attrs.frozen
class Effects:
    """What the adapter must do: multicast ``packets``, deliver ``events`` to watchers."""

    packets: tuple[bytes, ...] = ()
    events: tuple[Result, ...] = ()

    def __add__(self, other: Effects) -> Effects:
        return Effects(self.packets + other.packets, self.events + other.events)


@attrs.define(eq=False)
class _Entry:
    service: Service  # exactly one node
    expires: float  # cache: drop after; own: stop answering after (inf = until unpublished)


@attrs.define(eq=False)
class _Own:
    service: Service
    ttl: int  # on the wire
    expires: float
    announce_at: float  # next unsolicited announcement
    announces_left: int  # -1: keep re-announcing at 80% of ttl (no expiry)
    records: tuple[DNSPointer, DNSService, DNSText, DNSAddress | None]


def _build_records(name: str, service: Service, ttl: int, service_type: str) -> _Own:
    node = service.nodes[0]
    host, _, port_text = node.address.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        port = 0
    txt = encode_txt(service)
    if len(txt) > MAX_TXT:
        raise RegistryError(f"service {service.name!r} record is {len(txt)} bytes; mDNS allows {MAX_TXT}")
    label = name[: -len(service_type) - 1]
    target = f"{label}.local."
    address: DNSAddress | None = None
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    if isinstance(ip, ipaddress.IPv4Address):
        address = DNSAddress(target, _TYPE_A, _CLASS_IN | _CLASS_UNIQUE, ttl, ip.packed)
    return _Own(
        service=service,
        ttl=ttl,
        expires=math.inf,
        announce_at=0.0,
        announces_left=0,
        records=(
            DNSPointer(service_type, _TYPE_PTR, _CLASS_IN, ttl, name),
            DNSService(name, _TYPE_SRV, _CLASS_IN | _CLASS_UNIQUE, ttl, 0, 0, port, target),
            DNSText(name, _TYPE_TXT, _CLASS_IN | _CLASS_UNIQUE, ttl, txt),
            address,
        ),
    )


def _packets(
    answers: list[DNSRecord],
    extra: list[DNSRecord],
) -> tuple[bytes, ...]:
    if not answers:
        return ()
    out = DNSOutgoing(_FLAGS_RESPONSE, multicast=True)
    for rec in answers:
        out.add_answer_at_time(rec, 0)
    for rec in extra:
        out.add_additional_answer(rec)
    return tuple(out.packets())


def _goodbye(own: _Own) -> list[DNSRecord]:
    ptr, srv, txt, _ = own.records
    return [
        DNSPointer(ptr.name, _TYPE_PTR, _CLASS_IN, 0, ptr.alias),
        DNSService(srv.name, _TYPE_SRV, _CLASS_IN | _CLASS_UNIQUE, 0, 0, 0, srv.port, srv.server),
        DNSText(txt.name, _TYPE_TXT, _CLASS_IN | _CLASS_UNIQUE, 0, txt.text),
    ]


@attrs.define(eq=False)
class MdnsState:
    """The registry's mDNS state machine. Times are seconds on any monotonic clock (trio's)."""

    service_type: str = SERVICE_TYPE
    _own: dict[str, _Own] = attrs.field(factory=dict, init=False)  # lower-cased instance name -> ours
    _cache: dict[str, _Entry] = attrs.field(factory=dict, init=False)  # lower-cased instance name -> known

    # -- publishing ---------------------------------------------------------------------------------
    def publish(self, service: Service, ttl: float | None, now: float) -> Effects:
        """Announce every node of ``service``; ``ttl=None`` keeps it alive until :meth:`unpublish`."""
        events: list[Result] = []
        answers: list[DNSRecord] = []
        extra: list[DNSRecord] = []
        for node in service.nodes:
            one = with_nodes(service, (node,))
            name = instance_name(node, self.service_type)
            wire_ttl = DEFAULT_TTL if ttl is None else max(1, math.ceil(ttl))
            own = _build_records(name, one, wire_ttl, self.service_type)
            own.expires = math.inf if ttl is None else now + ttl
            own.announces_left = -1 if ttl is None else 1
            own.announce_at = now + _ANNOUNCE_GAP
            self._own[name.lower()] = own
            events.extend(self._upsert(name.lower(), one, own.expires))
            answers.extend(r for r in own.records[:3])
            if own.records[3] is not None:
                extra.append(own.records[3])
        return Effects(_packets(answers, extra), tuple(events))

    def unpublish(self, service: Service) -> Effects:
        """Withdraw the nodes of ``service`` (goodbye packets, TTL 0) and drop them from the cache."""
        events: list[Result] = []
        answers: list[DNSRecord] = []
        for node in service.nodes:
            key = instance_name(node, self.service_type).lower()
            own = self._own.pop(key, None)
            if own is not None:
                answers.extend(_goodbye(own))
            events.extend(self._remove(key))
        return Effects(_packets(answers, []), tuple(events))

    def unpublish_all(self) -> Effects:
        """Goodbyes for everything we publish (on close)."""
        out = Effects()
        for own in list(self._own.values()):
            out += self.unpublish(own.service)
        return out

    def query(self) -> Effects:
        """A PTR query for our service type: every responder answers with all its nodes."""
        out = DNSOutgoing(_FLAGS_QUERY, multicast=True)
        out.add_question(DNSQuestion(self.service_type, _TYPE_PTR, _CLASS_IN))
        return Effects(tuple(out.packets()))

    # -- input --------------------------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> Effects:
        """Feed one datagram. Malformed or foreign packets are ignored (logged at debug)."""
        msg = DNSIncoming(data)
        if not msg.valid:
            log.debug("ignoring malformed mDNS packet (%d bytes)", len(data))
            return Effects()
        if msg.is_query():
            return self._answer(msg)
        return self._learn(msg, now)

    def _answer(self, msg: DNSIncoming) -> Effects:
        answers: list[DNSRecord] = []
        extra: list[DNSRecord] = []
        type_key = self.service_type.lower()
        for q in msg.questions:
            qname = q.name.lower()
            if qname == type_key and q.type in (_TYPE_PTR, _TYPE_ANY):
                for own in self._own.values():
                    ptr, srv, txt, a = own.records
                    if not ptr.suppressed_by(msg):
                        answers.append(ptr)
                        extra.extend([srv, txt] + ([a] if a is not None else []))
            elif qname in self._own and q.type in (_TYPE_SRV, _TYPE_TXT, _TYPE_ANY):
                _, srv, txt, a = self._own[qname].records
                answers.extend(r for r in (srv, txt) if q.type in (r.type, _TYPE_ANY))
                if a is not None:
                    extra.append(a)
        return Effects(_packets(answers, extra))

    def _learn(self, msg: DNSIncoming, now: float) -> Effects:
        events: list[Result] = []
        suffix = "." + self.service_type.lower()
        for rec in msg.answers():
            name = rec.name.lower()
            if isinstance(rec, DNSPointer) and name == self.service_type.lower():
                if rec.ttl == 0 and rec.alias.lower() not in self._own:
                    events.extend(self._remove(rec.alias.lower()))
            elif isinstance(rec, DNSText) and name.endswith(suffix) and name not in self._own:
                if rec.ttl == 0:
                    events.extend(self._remove(name))
                    continue
                try:
                    service = decode_txt(rec.text)
                except ValueError as exc:
                    log.debug("ignoring TXT record %s: %s", rec.name, exc)
                    continue
                events.extend(self._upsert(name, service, now + rec.ttl))
        return Effects((), tuple(events))

    # -- time ---------------------------------------------------------------------------------------
    def tick(self, now: float) -> Effects:
        """Expire what is due and re-announce our own records when due."""
        events: list[Result] = []
        answers: list[DNSRecord] = []
        extra: list[DNSRecord] = []
        for key, own in list(self._own.items()):
            if own.expires <= now:
                del self._own[key]
            elif own.announce_at <= now:
                answers.extend(own.records[:3])
                if own.records[3] is not None:
                    extra.append(own.records[3])
                if own.announces_left > 0:
                    own.announces_left -= 1
                if own.announces_left == 0:
                    own.announce_at = math.inf
                else:
                    own.announce_at = now + 0.8 * own.ttl
        for key, entry in list(self._cache.items()):
            if entry.expires <= now and key not in self._own:
                events.extend(self._remove(key))
        return Effects(_packets(answers, extra), tuple(events))

    def next_deadline(self) -> float:
        """When :meth:`tick` next has something to do (``inf`` if never)."""
        times = [e.expires for e in self._cache.values()]
        times += [min(o.expires, o.announce_at) for o in self._own.values()]
        return min(times, default=math.inf)

    # -- queries ------------------------------------------------------------------------------------
    def services(self, name: str | None = None) -> list[Service]:
        """Known services (with nodes), merged per (name, version), optionally only ``name``."""
        merged: dict[tuple[str, str], Service] = {}
        for entry in self._cache.values():
            svc = entry.service
            if name is not None and svc.name != name:
                continue
            key = (svc.name, svc.version)
            prev = merged.get(key)
            merged[key] = svc if prev is None else with_nodes(prev, prev.nodes + svc.nodes)
        return list(merged.values())

    # -- cache --------------------------------------------------------------------------------------
    def _upsert(self, key: str, service: Service, expires: float) -> list[Result]:
        old = self._cache.get(key)
        self._cache[key] = _Entry(service, expires)
        if old is None:
            return [Result("create", service)]
        if (old.service.name, old.service.version) != (service.name, service.version):
            return [Result("delete", old.service), Result("create", service)]
        if old.service != service:
            return [Result("update", service)]
        return []

    def _remove(self, key: str) -> list[Result]:
        old = self._cache.pop(key, None)
        return [] if old is None else [Result("delete", old.service)]
