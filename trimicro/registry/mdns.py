"""The mdns registry (the default): zero-config discovery by multicast DNS, loopback-only by default.

Why not zeroconf's ``Zeroconf`` object: it runs its own asyncio loop in a thread (plus a browser thread)
and binds its listening socket to ``0.0.0.0:5353``, so a unicast query from the LAN could make it
answer off-loopback. Instead the protocol is a sans-IO state machine (``_mdns_proto``; it reuses
zeroconf's DNS record classes for the wire format) driven here by plain trio UDP sockets: no threads,
every wait cancellable, trio's clock (so tests can autojump), and full control of the sockets.

Network safety: one socket per configured interface (default only ``127.0.0.1``), each bound to the
mDNS group address (not ``0.0.0.0``, so no unicast reaches it), joined to the group on that interface
only, with ``IP_MULTICAST_ALL`` off (so groups joined by other sockets on other interfaces are not
delivered to it) and ``IP_MULTICAST_IF`` set (so sends leave only through that interface). Replies are
always multicast to the group, never unicast back to a source address. A LAN is opt-in:
``MICRO_MDNS_INTERFACES=192.168.1.10`` (IPv4 addresses of local interfaces). Multicast on ``lo`` works
on Linux with ``IP_MULTICAST_IF=127.0.0.1`` even without the ``MULTICAST`` link flag.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from .._lifecycle import NurseryOwner
from ..errors import RegistryError
from ._base import Watcher
from ._mdns_proto import SERVICE_TYPE, Effects, MdnsState
from ._model import Result, Service
from .memory import MemoryWatcher

__all__ = ["MDNS_GROUP", "MDNS_PORT", "MdnsRegistry", "from_options"]

log = logging.getLogger("trimicro.registry.mdns")

MDNS_GROUP = "224.0.0.251"
MDNS_PORT = 5353
_IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)  # Linux; absent from the socket module
#: After startup, list_services() waits this long for answers to the initial query.
_WARMUP = 0.2
#: After the first answer to a get_service() miss, wait this long for the other nodes' answers.
_SETTLE = 0.05


def _open_socket(interface: str) -> trio.socket.SocketType:
    try:
        ip = ipaddress.ip_address(interface)
    except ValueError:
        raise RegistryError(f"mdns interface must be an IPv4 address, got {interface!r}") from None
    if not isinstance(ip, ipaddress.IPv4Address):
        raise RegistryError(f"mdns supports IPv4 interfaces only, got {interface!r}")
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
        except OSError:  # not Linux: binding to the group address still keeps unicast out
            pass
        iface = socket.inet_aton(interface)
        group = socket.inet_aton(MDNS_GROUP)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group + iface)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, iface)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    except OSError as exc:
        sock.close()
        raise RegistryError(f"cannot open mDNS socket on {interface}: {exc}") from exc
    return sock


@attrs.define(eq=False)
class MdnsRegistry(NurseryOwner):
    """Go Micro's default registry over multicast DNS; see the module docstring for the safety story.

    ``interfaces``: IPv4 addresses to run on (default loopback only). ``port``: 5353 unless a test wants
    an isolated group. ``query_timeout``: how long ``get_service`` waits for answers on a cache miss.
    ``default_ttl``: used when ``register`` gets no ttl (``None``: announce until deregistered).
    """

    interfaces: list[str] = attrs.field(factory=lambda: ["127.0.0.1"])
    port: int = MDNS_PORT
    query_timeout: float = 1.0
    default_ttl: float | None = None
    service_type: str = SERVICE_TYPE
    name: str = attrs.field(default="mdns", init=False)
    _state: MdnsState = attrs.field(init=False)
    _sockets: list[tuple[str, trio.socket.SocketType]] = attrs.field(factory=list, init=False)
    _open: bool = attrs.field(default=False, init=False)
    _wakeup: trio.Event = attrs.field(factory=trio.Event, init=False)
    _changed: trio.Event = attrs.field(factory=trio.Event, init=False)
    _warm_at: float = attrs.field(default=0.0, init=False)
    _watchers: set[trio.MemorySendChannel[Result]] = attrs.field(factory=set, init=False)

    def __attrs_post_init__(self) -> None:
        self._state = MdnsState(self.service_type)

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        """Bound sockets around one nursery (a receive loop per interface, the timer loop); leaving
        sends goodbyes (so peers forget us now), ends the watchers, then closes the sockets."""
        if self._open:
            raise RuntimeError("MdnsRegistry is already open")
        if not self.interfaces:
            raise RegistryError("mdns needs at least one interface")
        sockets: list[tuple[str, trio.socket.SocketType]] = []
        try:
            for interface in self.interfaces:
                sock = _open_socket(interface)
                sockets.append((interface, sock))
                try:
                    # Bound to the group, not 0.0.0.0: only multicast to 224.0.0.251 reaches us.
                    await sock.bind((MDNS_GROUP, self.port))
                except OSError as exc:
                    raise RegistryError(f"cannot bind mDNS socket on {interface}: {exc}") from exc
        except BaseException:
            for _, sock in sockets:
                sock.close()
            raise
        self._sockets = sockets
        try:
            async with trio.open_nursery() as nursery:
                self._open = True
                for interface, sock in sockets:
                    nursery.start_soon(self._receive_loop, interface, sock)
                nursery.start_soon(self._timer_loop)
                self._warm_at = trio.current_time() + _WARMUP
                await self._apply(self._state.query())
                try:
                    yield
                finally:
                    self._open = False
                    try:
                        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                            await self._apply(self._state.unpublish_all())
                    except RegistryError as exc_:
                        log.warning("%s", exc_)
                    finally:
                        for send in list(self._watchers):
                            send.close()
                        self._watchers.clear()
                        nursery.cancel_scope.cancel()
        finally:
            self._open = False
            for _, sock in self._sockets:
                sock.close()
            self._sockets = []

    # -- Registry API -------------------------------------------------------------------------------
    async def register(self, service: Service, *, ttl: float | None = None) -> None:
        self._check_open()
        await self._apply(
            self._state.publish(service, ttl if ttl is not None else self.default_ttl, trio.current_time())
        )
        self._wakeup.set()

    async def deregister(self, service: Service) -> None:
        self._check_open()
        await self._apply(self._state.unpublish(service))
        self._wakeup.set()

    async def get_service(self, name: str) -> list[Service]:
        self._check_open()
        found = self._state.services(name)
        if found:
            await trio.lowlevel.checkpoint()
            return found
        await self._apply(self._state.query())
        with trio.move_on_after(self.query_timeout) as scope:
            while not self._state.services(name):
                await self._changed.wait()
            scope.deadline = min(scope.deadline, trio.current_time() + _SETTLE)
            await trio.sleep_forever()  # collect the other nodes' answers until the settle deadline
        return self._state.services(name)

    async def list_services(self) -> list[Service]:
        self._check_open()
        await trio.sleep_until(self._warm_at)
        return self._state.services()

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

    # -- plumbing -----------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if not self._open:
            raise RegistryError("mdns registry is not open; use `async with registry:`")

    async def _apply(self, effects: Effects) -> None:
        for send in list(self._watchers):
            for event in effects.events:
                try:
                    send.send_nowait(event)
                except trio.WouldBlock:
                    send.close()  # a watcher that cannot keep up loses its stream and must re-list
                    self._watchers.discard(send)
                    break
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._watchers.discard(send)
                    break
        if effects.events:
            self._changed.set()
            self._changed = trio.Event()
        for packet in effects.packets:
            for interface, sock in self._sockets:
                try:
                    await sock.sendto(packet, (MDNS_GROUP, self.port))
                except OSError as exc:
                    raise RegistryError(f"mDNS send on {interface} failed: {exc}") from exc

    async def _receive_loop(self, interface: str, sock: trio.socket.SocketType) -> None:
        loopback = ipaddress.ip_address(interface).is_loopback
        while True:
            try:
                data, source = await sock.recvfrom(9000)
            except OSError as exc:
                log.warning("mDNS receive on %s failed: %s", interface, exc)
                await trio.sleep(0.1)
                continue
            if loopback and not ipaddress.ip_address(source[0]).is_loopback:
                continue  # belt and braces: a loopback registry only listens to loopback peers
            try:
                await self._apply(self._state.receive(data, trio.current_time()))
            except RegistryError as exc:
                log.warning("%s", exc)
            self._wakeup.set()  # new records may expire before the timer's current deadline

    async def _timer_loop(self) -> None:
        while True:
            with trio.move_on_at(self._state.next_deadline()):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            try:
                await self._apply(self._state.tick(trio.current_time()))
            except RegistryError as exc:
                log.warning("%s", exc)


def from_options(options: Any) -> MdnsRegistry:
    """An :class:`MdnsRegistry` on ``options.mdns_interfaces`` (default ``127.0.0.1`` only)."""
    return MdnsRegistry(
        interfaces=list(options.mdns_interfaces) or ["127.0.0.1"],
        query_timeout=min(1.0, options.registry_timeout),
    )
