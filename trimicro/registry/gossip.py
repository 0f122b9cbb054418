"""The gossip registry: peer-to-peer discovery by SWIM membership, no server to run.

Every process is a member of a gossip group (``_swim``, a sans-IO SWIM core); its service records
are its member metadata, so they spread with its membership, a deregistration is a new incarnation
without them, a clean shutdown is a "left" broadcast and a crashed process's services disappear
when the group declares it dead (see :meth:`SwimConfig.detection_bound`). This module only moves
bytes: one UDP socket for probes and gossip and one TCP listener for push/pull state exchanges, both
bound to ``gossip_address`` (default ``127.0.0.1:0``: loopback, never ``0.0.0.0`` unless configured).

``seeds`` (``--registry_address``) are ``host:port`` of any members; joining is retried with
back-off while none answers, and a lone member still serves its own registrations.
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from .._lifecycle import NurseryOwner
from ..errors import RegistryError
from ._base import Watcher
from ._model import Result, Service
from ._swim import MAX_TCP_PAYLOAD, DecodeError, Effects, Swim, SwimConfig
from .memory import MemoryWatcher

__all__ = ["GossipRegistry", "SwimConfig", "from_options"]

log = logging.getLogger("trimicro.registry.gossip")

#: Right after opening, get_service/list_services wait up to this long for a first join (when seeds
#: are configured), so a fresh process does not answer "unknown service" before it has heard anyone.
_JOIN_WAIT = 1.0
#: A push/pull exchange (connect, send, receive) must finish within this.
_PUSH_PULL_TIMEOUT = 5.0


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise RegistryError(f"gossip address must be host:port, got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _member_services(meta: Any) -> list[Service]:
    """A peer's metadata as services; garbage from a peer is logged and ignored, never raised."""
    if not isinstance(meta, list):
        return []
    out = []
    for item in meta:
        try:
            out.append(Service.from_dict(item))
        except (AttributeError, TypeError, ValueError, RecursionError) as exc:
            log.debug("ignoring a malformed service record: %s", exc)
    return out


def _node_map(services: list[Service]) -> dict[tuple[str, str, str], Service]:
    return {
        (s.name, s.version, n.id): attrs.evolve(s, nodes=(n,)) for s in services for n in s.nodes
    }


def diff(old: list[Service], new: list[Service]) -> list[Result]:
    """Watch events turning ``old`` into ``new``, one per changed node."""
    a, b = _node_map(old), _node_map(new)
    out = [Result("delete", s) for k, s in a.items() if k not in b]
    for k, s in b.items():
        if k not in a:
            out.append(Result("create", s))
        elif a[k].to_dict() != s.to_dict():
            out.append(Result("update", s))
    return out


async def _read_frame(stream: trio.SocketStream) -> bytes:
    header = b""
    while len(header) < 4:
        chunk = await stream.receive_some(4 - len(header))
        if not chunk:
            raise RegistryError("push/pull peer closed the connection")
        header += chunk
    size = int.from_bytes(header, "big")
    if size > MAX_TCP_PAYLOAD:
        raise RegistryError(f"push/pull payload of {size} bytes is too large")
    buf = bytearray()
    while len(buf) < size:
        chunk = await stream.receive_some(min(65536, size - len(buf)))
        if not chunk:
            raise RegistryError("push/pull peer closed the connection")
        buf += chunk
    return bytes(buf)


@attrs.define(eq=False)
class GossipRegistry(NurseryOwner):
    """Go Micro's gossip registry on our own SWIM implementation (not memberlist's wire format).

    ``address``: where to bind UDP and TCP (one port, like memberlist). ``seeds``: members to join.
    ``config``: SWIM timings. ``drop``: a test hook ``(from_addr, to_addr) -> bool``; True loses the
    datagram or refuses the TCP exchange (used to simulate partitions and crashes).
    """

    address: str = "127.0.0.1:0"
    seeds: list[str] = attrs.field(factory=list)
    config: SwimConfig = attrs.field(factory=SwimConfig)
    drop: Callable[[str, str], bool] | None = None
    name: str = attrs.field(default="gossip", init=False)
    member_id: str = attrs.field(factory=lambda: uuid.uuid4().hex)
    _core: Swim | None = attrs.field(default=None, init=False)
    _udp: trio.socket.SocketType | None = attrs.field(default=None, init=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)
    _wakeup: trio.Event = attrs.field(factory=trio.Event, init=False)
    _joined: trio.Event = attrs.field(factory=trio.Event, init=False)
    _join_wait_until: float = attrs.field(default=0.0, init=False)
    _own: dict[tuple[str, str], Service] = attrs.field(factory=dict, init=False)
    _view: dict[str, list[Service]] = attrs.field(factory=dict, init=False)  # member -> services
    _watchers: set[trio.MemorySendChannel[Result]] = attrs.field(factory=set, init=False)

    @property
    def bound_address(self) -> str:
        """host:port actually bound (the port is chosen by the OS for ``:0``)."""
        if self._core is None:
            raise RegistryError("gossip registry is not open")
        return self._core.addr

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        if self._core is not None:
            raise RuntimeError("GossipRegistry is already open")
        host, port = split_address(self.address)
        try:
            family = trio.socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else trio.socket.AF_INET
        except ValueError:
            raise RegistryError(f"gossip address needs an IP address, got {host!r}") from None
        if ipaddress.ip_address(host).is_unspecified:
            raise RegistryError("gossip needs a concrete bind address to advertise, not a wildcard")
        udp = trio.socket.socket(family, trio.socket.SOCK_DGRAM)
        listeners: list[trio.SocketListener] = []
        try:
            for _attempt in range(20):  # UDP and TCP must share a port; retry if :0 picked a busy one
                try:
                    await udp.bind((host, port))
                    bound = udp.getsockname()[1]
                    listeners = await trio.open_tcp_listeners(bound, host=host)
                    break
                except OSError as exc:
                    if port:
                        raise RegistryError(f"cannot bind gossip address {self.address}: {exc}") from exc
                    udp.close()
                    udp = trio.socket.socket(family, trio.socket.SOCK_DGRAM)
            else:
                raise RegistryError(f"no free port for gossip on {host}")
            addr = f"[{host}]:{bound}" if family == trio.socket.AF_INET6 else f"{host}:{bound}"
            self._udp = udp
            self._core = Swim(
                name=self.member_id, addr=addr, now=trio.current_time(), seeds=list(self.seeds),
                config=self.config, meta=[],
            )  # fmt: skip
            if not [s for s in self.seeds if s != addr]:
                self._joined.set()
            self._join_wait_until = trio.current_time() + _JOIN_WAIT
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._receive_loop, udp)
                nursery.start_soon(trio.serve_listeners, self._serve_push_pull, listeners)
                nursery.start_soon(self._timer_loop)
                try:
                    yield
                finally:
                    with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                        await self._apply(self._core.leave())
                    for send in list(self._watchers):
                        send.close()
                    self._watchers.clear()
                    nursery.cancel_scope.cancel()
        finally:
            self._core = None
            self._nursery = None
            udp.close()
            for listener in listeners:
                with trio.CancelScope(shield=True):
                    await listener.aclose()

    # -- Registry API -------------------------------------------------------------------------------
    async def register(self, service: Service, *, ttl: float | None = None) -> None:
        """Add/refresh ``service.nodes``; ``ttl`` is not needed: our liveness is the member's."""
        self._check_open()
        key = (service.name, service.version)
        old = self._own.get(key)
        nodes = {n.id: n for n in old.nodes} if old else {}
        nodes.update({n.id: n for n in service.nodes})
        await self._publish({**self._own, key: attrs.evolve(service, nodes=tuple(nodes.values()))})

    async def deregister(self, service: Service) -> None:
        self._check_open()
        key = (service.name, service.version)
        own = dict(self._own)
        old = own.get(key)
        if old is not None:
            gone = {n.id for n in service.nodes}
            left = tuple(n for n in old.nodes if n.id not in gone)
            if left:
                own[key] = attrs.evolve(old, nodes=left)
            else:
                del own[key]
        await self._publish(own)

    async def get_service(self, name: str) -> list[Service]:
        await self._wait_joined()
        return [s for s in self._services() if s.name == name]

    async def list_services(self) -> list[Service]:
        await self._wait_joined()
        return self._services()

    @asynccontextmanager
    async def watch(self, service: str | None = None) -> AsyncIterator[Watcher]:
        self._check_open()
        send, receive = trio.open_memory_channel[Result](1000)
        self._watchers.add(send)
        try:
            yield MemoryWatcher(service, receive)
        finally:
            self._watchers.discard(send)
            send.close()
            receive.close()

    # -- views --------------------------------------------------------------------------------------
    def _services(self) -> list[Service]:
        merged: dict[tuple[str, str], Service] = {}
        for services in [list(self._own.values()), *self._view.values()]:
            for s in services:
                key = (s.name, s.version)
                have = merged.get(key)
                if have is None:
                    merged[key] = s
                else:
                    ids = {n.id for n in have.nodes}
                    merged[key] = attrs.evolve(have, nodes=have.nodes + tuple(n for n in s.nodes if n.id not in ids))
        return list(merged.values())

    async def _publish(self, own: dict[tuple[str, str], Service]) -> None:
        core = self._check_open()
        events = diff(list(self._own.values()), list(own.values()))
        self._own = own
        await self._apply(core.set_meta([s.to_dict() for s in own.values()]))
        self._notify(events)
        self._wakeup.set()

    def _check_open(self) -> Swim:
        if self._core is None:
            raise RegistryError("gossip registry is not open; use `async with registry:`")
        return self._core

    async def _wait_joined(self) -> None:
        self._check_open()
        with trio.move_on_at(self._join_wait_until):
            await self._joined.wait()

    def _notify(self, events: list[Result]) -> None:
        for send in list(self._watchers):
            for event in events:
                try:
                    send.send_nowait(event)
                except trio.WouldBlock:
                    send.close()  # a watcher that cannot keep up loses its stream and must re-list
                    self._watchers.discard(send)
                    break
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._watchers.discard(send)
                    break

    # -- plumbing -----------------------------------------------------------------------------------
    def _dropped(self, to: str) -> bool:
        return self.drop is not None and self._core is not None and self.drop(self._core.addr, to)

    async def _apply(self, effects: Effects) -> None:
        for ev in effects.events:
            new = [] if ev.kind == "leave" else _member_services(ev.meta)
            old = self._view.pop(ev.name, [])
            if ev.kind != "leave":
                self._view[ev.name] = new
                self._joined.set()
            self._notify(diff(old, new))
        udp = self._udp
        for to, data in effects.packets:
            if udp is None or self._dropped(to):
                continue
            try:
                await udp.sendto(data, split_address(to))
            except (OSError, RegistryError) as exc:
                log.debug("gossip send to %s failed: %s", to, exc)
        if effects.push_pulls and self._nursery is not None:
            for to in effects.push_pulls:
                self._nursery.start_soon(self._push_pull, to)

    async def _receive_loop(self, udp: trio.socket.SocketType) -> None:
        while True:
            try:
                data, source = await udp.recvfrom(65536)
            except OSError as exc:  # e.g. ICMP port unreachable surfacing as ECONNREFUSED
                log.debug("gossip receive failed: %s", exc)
                await trio.sleep(0.01)  # never spin if the error repeats
                continue
            core = self._core
            if core is None:
                return
            src = f"[{source[0]}]:{source[1]}" if ":" in source[0] else f"{source[0]}:{source[1]}"
            if self.drop is not None and self.drop(src, core.addr):
                continue
            try:
                effects = core.receive(trio.current_time(), data, src)
            except DecodeError as exc:
                log.debug("ignoring a bad gossip datagram from %s: %s", src, exc)
                continue
            await self._apply(effects)
            self._wakeup.set()

    async def _timer_loop(self) -> None:
        while (core := self._core) is not None:
            with trio.move_on_at(core.next_deadline()):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            await self._apply(core.tick(trio.current_time()))

    async def _push_pull(self, to: str) -> None:
        core = self._core
        if core is None or self._dropped(to):
            return
        try:
            host, port = split_address(to)
            with trio.fail_after(_PUSH_PULL_TIMEOUT):
                # bound to our own address, so the peer sees (and a partition hook matches) our host
                stream = await trio.open_tcp_stream(host, port, local_address=split_address(core.addr)[0])
                async with stream:
                    payload = core.local_state()
                    await stream.send_all(len(payload).to_bytes(4, "big") + payload)
                    reply = await _read_frame(stream)
            await self._apply(core.merge_state(trio.current_time(), reply))
        except (OSError, RegistryError, DecodeError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            log.debug("push/pull with %s failed: %s", to, exc)
        self._wakeup.set()

    async def _serve_push_pull(self, stream: trio.SocketStream) -> None:
        async with stream:
            core = self._core
            if core is None:
                return
            try:
                peer = stream.socket.getpeername()
                if self.drop is not None and self.drop(f"{peer[0]}:{peer[1]}", core.addr):
                    return
                with trio.fail_after(_PUSH_PULL_TIMEOUT):
                    request = await _read_frame(stream)
                    effects = core.merge_state(trio.current_time(), request)
                    payload = core.local_state()
                    await stream.send_all(len(payload).to_bytes(4, "big") + payload)
                await self._apply(effects)
            except (OSError, RegistryError, DecodeError, trio.TooSlowError, trio.BrokenResourceError) as exc:
                log.debug("push/pull from a peer failed: %s", exc)
            self._wakeup.set()


def from_options(options: Any) -> GossipRegistry:
    """Seeds from ``options.registry_address``, bind address from ``options.gossip_address``."""
    return GossipRegistry(
        address=getattr(options, "gossip_address", "") or "127.0.0.1:0",
        seeds=list(options.registry_address),
    )
