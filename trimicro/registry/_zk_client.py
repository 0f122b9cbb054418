"""A small trio-native ZooKeeper client: one session over one TCP connection at a time, kept alive.

Why our own: kazoo runs its I/O in threads; the registry needs a handful of requests, and with the
sans-IO codec in :mod:`._zk_proto` the client stays cancellable end to end, in the registry's nursery.

What it guarantees:

- ``async with client:`` connects (bounded: ``connect_timeout``, retrying every host with backoff) and
  raises :class:`~trimicro.errors.RegistryError` naming the hosts when none answers, instead of hanging.
- The session timeout is negotiated with the server; the client pings every third of it and declares
  the connection dead when nothing arrives for two thirds of it (the server's own rule).
- A lost connection is re-established in the background, on the next host of the list, resuming the
  session with its id and password, so ephemeral nodes survive a server restart or failover. Requests
  made meanwhile wait for the new connection (bounded by ``timeout``) and are then retried.
- When the server says the session has expired, a new session is opened and every ephemeral node this
  client owns (:meth:`ZkClient.ensure_ephemeral`) is created again.
- Watches: answers are matched to requests by xid; a request made with ``watch=queue`` arms a one-shot
  watch whose event is put on that :class:`WatchQueue`. Server-side watches die with the connection,
  so after every reconnection each queue receives one ``EVENT_NONE`` event: re-read and re-arm.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from .._lifecycle import NurseryOwner
from ..errors import RegistryError
from . import _zk_proto as p

__all__ = ["DEFAULT_PORT", "WatchQueue", "ZkClient", "parse_hosts"]

log = logging.getLogger("trimicro.registry.zookeeper")

DEFAULT_PORT = 2181
_READ_SIZE = 65536
_BACKOFF_START = 0.05
_BACKOFF_MAX = 1.0
_HANDSHAKE_MAX = 2.0  # bound on waiting for a ConnectResponse
_CLOSE_WAIT = 2.0  # bound on the closeSession round trip at exit


def parse_hosts(hosts: Sequence[str] | str) -> list[tuple[str, int]]:
    """``"h1:2181,h2"`` or a list of ``host[:port]`` (``[::1]:2181`` for IPv6) -> (host, port) pairs."""
    items = hosts.split(",") if isinstance(hosts, str) else [x for h in hosts for x in h.split(",")]
    out = []
    for raw in items:
        text = raw.strip()
        if not text:
            continue
        if "://" in text:
            text = text.partition("://")[2]
        text = text.split("/", 1)[0]  # a chroot suffix is not supported; ignore it
        if text.startswith("["):
            host, _, tail = text[1:].partition("]")
            port_text = tail[1:] if tail.startswith(":") else ""
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
        else:
            host, port_text = text, ""
        if not host:
            raise ValueError(f"zookeeper address {raw!r} has no host")
        try:
            port = int(port_text) if port_text else DEFAULT_PORT
        except ValueError:
            raise ValueError(f"zookeeper address {raw!r} has a bad port") from None
        out.append((host, port))
    if not out:
        raise ValueError("no zookeeper address given")
    return out


def _where(host: tuple[str, int]) -> str:
    return f"[{host[0]}]:{host[1]}" if ":" in host[0] else f"{host[0]}:{host[1]}"


class _Lost(Exception):
    """The connection can no longer be used (the request may or may not have reached the server)."""


class _Refused(_Lost):
    """The server closed the connection instead of answering our ConnectRequest."""


@attrs.define(eq=False)
class WatchQueue:
    """Where the watches a caller armed deliver their :class:`~._zk_proto.WatcherEvent`.

    Unbounded on purpose, yet bounded in practice: a watch fires at most once until it is armed again,
    so at most one event per armed (path, kind) plus one reconnection event can be waiting.
    """

    _send: trio.MemorySendChannel[p.WatcherEvent]
    _recv: trio.MemoryReceiveChannel[p.WatcherEvent]

    @classmethod
    def new(cls) -> WatchQueue:
        send, recv = trio.open_memory_channel[p.WatcherEvent](math.inf)
        return cls(send, recv)

    def put(self, event: p.WatcherEvent) -> None:
        try:
            self._send.send_nowait(event)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def close(self) -> None:
        self._send.close()

    async def receive(self) -> p.WatcherEvent:
        """The next event; RegistryError once the client (or the queue) is closed."""
        try:
            return await self._recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise RegistryError("zookeeper watch closed") from None


@attrs.define(eq=False)
class _Pending:
    op: int
    path: str
    watch: WatchQueue | None
    done: trio.Event = attrs.field(factory=trio.Event)
    header: p.ReplyHeader | None = None
    body: p.Reader | None = None
    lost: bool = False


def _outbox() -> tuple[trio.MemorySendChannel[bytes], trio.MemoryReceiveChannel[bytes]]:
    # Unbounded, yet bounded in practice: each request waits for its answer, so at most one packet per
    # caller (plus a ping) is ever queued.
    return trio.open_memory_channel[bytes](math.inf)


@attrs.define(eq=False)
class _Conn:
    """One TCP connection carrying the session; ``lost`` is set once it is unusable.

    Packets are written by one writer task from a queue, so a caller cancelled mid-request never
    leaves half a packet on the wire (which would poison the connection for everyone).
    """

    host: tuple[str, int]
    stream: trio.SocketStream
    timeout: float  # negotiated session timeout, seconds
    frames: p.FrameBuffer = attrs.field(factory=p.FrameBuffer)
    pending: dict[int, _Pending] = attrs.field(factory=dict)
    lost: trio.Event = attrs.field(factory=trio.Event)
    reason: str = ""
    _outbox: tuple[trio.MemorySendChannel[bytes], trio.MemoryReceiveChannel[bytes]] = attrs.field(
        factory=_outbox
    )

    def mark_lost(self, reason: str) -> None:
        if self.lost.is_set():
            return
        self.reason = reason
        self.lost.set()
        for pending in self.pending.values():
            pending.lost = True
            pending.done.set()
        self.pending.clear()

    def send(self, data: bytes) -> None:
        """Queue a whole packet for the writer task."""
        if self.lost.is_set():
            raise _Lost(self.reason)
        self._outbox[0].send_nowait(data)

    async def send_now(self, data: bytes) -> None:
        """Write a packet directly (the handshake, before the writer task runs)."""
        try:
            await self.stream.send_all(data)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.mark_lost(f"send failed: {exc!r}")
            raise _Lost(self.reason) from None

    async def writer(self) -> None:
        """Write queued packets in order until the connection is lost."""
        async for data in self._outbox[1]:
            try:
                await self.stream.send_all(data)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.mark_lost(f"send failed: {exc!r}")
                return

    async def read_packet(self, seconds: float) -> bytes:
        """The next packet, waiting at most ``seconds`` for each chunk of bytes to arrive."""
        while (packet := self.frames.next()) is None:
            data = b""
            with trio.move_on_after(seconds):
                try:
                    data = await self.stream.receive_some(_READ_SIZE)
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    raise _Lost(f"receive failed: {exc!r}") from None
                if not data:
                    raise _Lost("zookeeper closed the connection")
            if not data:
                raise _Lost(f"nothing from zookeeper for {seconds:g}s")
            self.frames.feed(data)
        return packet


@attrs.define(eq=False)
class _Owned:
    """An ephemeral node this client keeps alive: its wanted data, and a lock ordering changes to it."""

    data: bytes
    lock: trio.Lock = attrs.field(factory=trio.Lock)


_RETRY_ON_NEW_CONNECTION = frozenset({p.CONNECTION_LOSS, p.SESSION_EXPIRED, p.SESSION_MOVED})

_FIRES: dict[int, tuple[str, ...]] = {
    p.EVENT_NODE_CREATED: ("data", "exist"),
    p.EVENT_NODE_DATA_CHANGED: ("data", "exist"),
    p.EVENT_NODE_DELETED: ("data", "exist", "child"),
    p.EVENT_NODE_CHILDREN_CHANGED: ("child",),
}


@attrs.define(eq=False)
class ZkClient(NurseryOwner):
    """A ZooKeeper session; ``async with`` it. Every call is bounded by ``timeout`` (RegistryError)."""

    hosts: Sequence[str] | str = ("127.0.0.1:2181",)
    timeout: float = 10.0
    session_timeout: float = 10.0
    connect_timeout: float | None = None  # bound on the first connection; default ``timeout``
    _hosts: list[tuple[str, int]] = attrs.field(init=False)
    _next_host: int = attrs.field(default=0, init=False)
    _session_id: int = attrs.field(default=0, init=False)
    _password: bytes = attrs.field(default=b"\x00" * 16, init=False)
    _last_zxid: int = attrs.field(default=0, init=False)
    _conn: _Conn | None = attrs.field(default=None, init=False)
    _connected: trio.Event = attrs.field(factory=trio.Event, init=False)
    _xid: int = attrs.field(default=0, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    _restore_needed: bool = attrs.field(default=False, init=False)
    _owned: dict[str, _Owned] = attrs.field(factory=dict, init=False)
    _queues: set[WatchQueue] = attrs.field(factory=set, init=False)
    _watches: dict[tuple[str, str], set[WatchQueue]] = attrs.field(factory=dict, init=False)
    sessions: int = attrs.field(default=0, init=False)  # sessions opened so far (1 + expiries)
    connections: int = attrs.field(default=0, init=False)  # connections established so far

    def __attrs_post_init__(self) -> None:
        self._hosts = parse_hosts(self.hosts)

    # ---- state ----------------------------------------------------------------------------------

    @property
    def session_id(self) -> int:
        return self._session_id

    @property
    def password(self) -> bytes:
        return self._password

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.lost.is_set()

    @property
    def negotiated_timeout(self) -> float:
        """The session timeout the server granted, in seconds (0 while not connected)."""
        return self._conn.timeout if self._conn is not None else 0.0

    def where(self) -> str:
        return ",".join(_where(h) for h in self._hosts)

    # ---- lifecycle ------------------------------------------------------------------------------

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        self._closing = False
        conn = self._conn = await self._connect_first()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._maintain, conn)
                try:
                    yield
                finally:
                    self._closing = True
                    with trio.CancelScope(shield=True):
                        await self._close_session()
                    nursery.cancel_scope.cancel()
        finally:
            self._closing = True
            self._connected.set()  # requests waiting for a connection wake up and see the client closed
            current, self._conn = self._conn, None
            for c in {conn, current} - {None}:
                assert c is not None
                c.mark_lost("client closed")
                await trio.aclose_forcefully(c.stream)
            for queue in self._queues:
                queue.close()
            self._queues.clear()
            self._watches.clear()
            self._owned.clear()
            # The session is closed: entering this client again starts afresh.
            self._session_id, self._password, self._last_zxid = 0, b"\x00" * 16, 0
            self._restore_needed = False

    async def _close_session(self) -> None:
        """Tell the server we are done, so our ephemeral nodes go at once (not after the timeout)."""
        conn = self._conn
        if conn is None or conn.lost.is_set():
            return
        xid = self._next_xid()
        pending = _Pending(p.OP_CLOSE_SESSION, "", None)
        conn.pending[xid] = pending
        with trio.move_on_after(min(_CLOSE_WAIT, self.timeout)):
            try:
                conn.send(p.close_session(xid))
                await pending.done.wait()
            except _Lost:
                pass

    async def _connect_first(self) -> _Conn:
        limit = self.connect_timeout if self.connect_timeout is not None else self.timeout
        failures: dict[tuple[str, int], str] = {}  # the latest failure of each host
        attempts = 0
        backoff = _BACKOFF_START
        with trio.move_on_after(limit):
            while True:
                for _ in range(len(self._hosts)):
                    host = self._pick_host()
                    attempts += 1
                    failures[host] = f"{_where(host)}: no answer within {limit:g}s"
                    try:
                        return await self._open(host)
                    except _Lost as exc:
                        failures[host] = str(exc)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
        detail = "; ".join(failures.values())
        raise RegistryError(
            f"zookeeper unreachable at {self.where()} after {attempts} attempts in {limit:g}s: {detail}"
        )

    def _pick_host(self) -> tuple[str, int]:
        host = self._hosts[self._next_host % len(self._hosts)]
        self._next_host = (self._next_host + 1) % len(self._hosts)
        return host

    async def _open(self, host: tuple[str, int]) -> _Conn:
        """Connect to ``host`` and establish (or resume) the session; _Lost with a reason if not."""
        share = max(self.timeout / len(self._hosts), 0.1)
        # A server that accepted but does not answer must not hold a reconnection for a whole request
        # timeout: a ZooKeeper that is still starting accepts connections it then never answers (seen
        # with 3.8 on restart). A healthy one answers in milliseconds; a retry costs nothing.
        handshake = min(share, _HANDSHAKE_MAX)
        try:
            with trio.fail_after(share):
                stream = await trio.open_tcp_stream(*host)
        except trio.TooSlowError:
            raise _Lost(f"{_where(host)}: connect timed out after {share:g}s") from None
        except OSError as exc:
            raise _Lost(f"{_where(host)}: {exc.strerror or exc}") from None
        try:
            for _ in range(2):  # a second round only after the server declared the session expired
                conn = _Conn(host, stream, self.session_timeout)
                request = p.ConnectRequest(
                    timeout_ms=int(self.session_timeout * 1000),
                    session_id=self._session_id,
                    password=self._password,
                    last_zxid_seen=self._last_zxid,
                )
                try:
                    await conn.send_now(request.encode())
                    packet = await conn.read_packet(handshake)
                    answer = p.ConnectResponse.decode(packet)
                except _Lost as exc:
                    if "closed the connection" in str(exc):
                        raise _Refused(f"{_where(host)}: handshake refused: {exc}") from None
                    raise _Lost(f"{_where(host)}: handshake failed: {exc}") from None
                except p.ZkProtocolError as exc:
                    raise _Lost(f"{_where(host)}: handshake failed: {exc}") from None
                if answer.expired:
                    log.warning("zookeeper session 0x%x expired; starting a new one", self._session_id)
                    await trio.aclose_forcefully(stream)
                    self._session_id, self._password = 0, b"\x00" * 16
                    self._restore_needed = bool(self._owned)
                    with trio.fail_after(share):
                        stream = await trio.open_tcp_stream(*host)
                    continue
                if answer.session_id != self._session_id:
                    self.sessions += 1
                self._session_id, self._password = answer.session_id, answer.password
                conn.timeout = answer.timeout_ms / 1000
                self.connections += 1
                return conn
            raise _Lost(f"{_where(host)}: the new session expired at once")
        except trio.TooSlowError:
            await trio.aclose_forcefully(stream)
            raise _Lost(f"{_where(host)}: connect timed out after {share:g}s") from None
        except OSError as exc:
            await trio.aclose_forcefully(stream)
            raise _Lost(f"{_where(host)}: {exc.strerror or exc}") from None
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise

    async def _maintain(self, conn: _Conn) -> None:
        """Serve the connection; when it is lost, reconnect (forever, with backoff) and serve again."""
        reconnected = False
        while True:
            await self._serve(conn, reconnected=reconnected)
            if self._closing:
                return
            log.warning("zookeeper connection to %s lost (%s); reconnecting", _where(conn.host), conn.reason)
            conn = await self._reconnect()
            reconnected = True
            log.info("zookeeper reconnected to %s (session 0x%x)", _where(conn.host), self._session_id)

    async def _reconnect(self) -> _Conn:
        backoff = _BACKOFF_START
        refused_rounds = 0
        while True:
            refused = 0
            for _ in range(len(self._hosts)):
                try:
                    return await self._open(self._pick_host())
                except _Refused as exc:
                    refused += 1
                    log.debug("zookeeper reconnect refused: %s", exc)
                except _Lost as exc:
                    log.debug("zookeeper reconnect failed: %s", exc)
            refused_rounds = refused_rounds + 1 if refused else 0
            if refused_rounds >= 5 and self._last_zxid:
                # The servers that answer hang up on our ConnectRequest, round after round: what they
                # refuse is a client that has seen a later zxid than they have, i.e. the ensemble lost
                # its history (data wiped) or only a server of another ensemble is left. Forget the
                # zxid; the session is then unknown to them, so it expires and is opened anew. (A
                # follower lagging behind refuses too, but catches up within these rounds.)
                log.warning(
                    "zookeeper servers refuse our last seen zxid 0x%x (ensemble lost its data?); resetting",
                    self._last_zxid,
                )
                self._last_zxid = 0
                continue
            await trio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)

    async def _serve(self, conn: _Conn, *, reconnected: bool) -> None:
        self._watches.clear()  # server-side watches do not survive a connection
        self._conn = conn
        connected, self._connected = self._connected, trio.Event()
        connected.set()  # wake requests waiting for a connection
        self._connected.set()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader, conn)
                nursery.start_soon(conn.writer)
                nursery.start_soon(self._pinger, conn)
                if reconnected or self._restore_needed:
                    nursery.start_soon(self._after_reconnect)
                await conn.lost.wait()
                nursery.cancel_scope.cancel()
        finally:
            if self._connected.is_set():  # (an unset one may already have waiters: keep it)
                self._connected = trio.Event()
            conn.mark_lost(conn.reason or "connection closed")
            await trio.aclose_forcefully(conn.stream)

    async def _reader(self, conn: _Conn) -> None:
        read_timeout = conn.timeout * 2 / 3
        try:
            while True:
                packet = await conn.read_packet(read_timeout)
                self._dispatch(conn, packet)
        except (_Lost, p.ZkProtocolError) as exc:
            conn.mark_lost(str(exc))

    async def _pinger(self, conn: _Conn) -> None:
        try:
            while True:
                await trio.sleep(conn.timeout / 3)
                conn.send(p.ping())
        except _Lost:
            pass

    def _dispatch(self, conn: _Conn, packet: bytes) -> None:
        header, body = p.parse_reply(packet)
        if header.xid == p.XID_PING:
            return
        if header.xid == p.XID_NOTIFICATION:
            event = p.WatcherEvent.read(body)
            self._fire(event)
            return
        pending = conn.pending.pop(header.xid, None)
        if pending is None:
            return  # its caller gave up (cancelled or timed out)
        if header.zxid > 0:
            self._last_zxid = max(self._last_zxid, header.zxid)
        # Arm the watch here, not in the caller's task, so that an event right behind the answer finds it.
        if pending.watch is not None:
            kind = None
            if header.err == p.OK:
                kind = {p.OP_GET_DATA: "data", p.OP_EXISTS: "data", p.OP_GET_CHILDREN2: "child"}.get(
                    pending.op
                )
            elif header.err == p.NO_NODE and pending.op == p.OP_EXISTS:
                kind = "exist"
            if kind is not None:
                self._watches.setdefault((kind, pending.path), set()).add(pending.watch)
        pending.header, pending.body = header, body
        pending.done.set()

    def _fire(self, event: p.WatcherEvent) -> None:
        queues: set[WatchQueue] = set()
        for kind in _FIRES.get(event.type, ()):
            queues |= self._watches.pop((kind, event.path), set())
        for queue in queues:
            queue.put(event)

    def _broadcast_reconnected(self) -> None:
        event = p.WatcherEvent(p.EVENT_NONE, p.STATE_SYNC_CONNECTED, "")
        for queue in self._queues:
            queue.put(event)

    async def _after_reconnect(self) -> None:
        """Re-create the nodes if the session is new, then tell every watch queue to re-arm."""
        try:
            if self._restore_needed:
                await self._restore()
        finally:
            self._broadcast_reconnected()  # even if the restore failed: the watches are gone either way

    async def _restore(self) -> None:
        """After a session expiry: create every owned ephemeral node again."""
        for path in list(self._owned):
            owned = self._owned.get(path)
            if owned is None:
                continue
            async with owned.lock:
                if self._owned.get(path) is not owned:
                    continue
                try:
                    await self._put_ephemeral(path, owned.data)
                except RegistryError as exc:
                    log.warning("zookeeper: could not re-create %s after session expiry: %s", path, exc)
                    return  # retried on the next connection (or by the next register)
        self._restore_needed = False
        log.info("zookeeper: ephemeral nodes re-created in new session 0x%x", self._session_id)

    # ---- requests -------------------------------------------------------------------------------

    def _next_xid(self) -> int:
        self._xid = self._xid + 1 if self._xid < 2**31 - 1 else 1
        return self._xid

    async def _call(
        self, op: int, path: str, build: Callable[[int], bytes], watch: WatchQueue | None = None
    ) -> p.Reader:
        """Send one request and return its answer's body; ZkError for an error code.

        Bounded by ``timeout``. A connection lost before the answer is retried on the next connection,
        so a write may be applied twice (creates then see NODE_EXISTS, deletes NO_NODE).
        """
        if not self.is_open or self._closing:
            raise RegistryError("zookeeper client is closed")
        try:
            with trio.fail_after(self.timeout):
                while True:
                    conn = self._conn
                    if conn is None or conn.lost.is_set():
                        if self._connected.is_set():  # a loss _serve has not processed yet
                            self._connected = trio.Event()
                        await self._connected.wait()
                        if self._closing:
                            raise RegistryError("zookeeper client is closed")
                        continue
                    xid = self._next_xid()
                    pending = _Pending(op, path, watch)
                    conn.pending[xid] = pending
                    try:
                        conn.send(build(xid))
                        await pending.done.wait()
                    except _Lost:
                        continue
                    finally:
                        conn.pending.pop(xid, None)
                    if pending.lost:
                        continue
                    assert pending.header is not None and pending.body is not None
                    if pending.header.err in _RETRY_ON_NEW_CONNECTION:
                        # The session is being expired or moved under this connection: drop it, and
                        # retry once the client has reconnected (resumed, or in a new session).
                        conn.mark_lost(str(p.error_for(pending.header.err, path)))
                        continue
                    if pending.header.err != p.OK:
                        raise p.error_for(pending.header.err, path)
                    return pending.body
        except trio.TooSlowError:
            state = "connected" if self.connected else "not connected"
            raise RegistryError(
                f"zookeeper: no answer within {self.timeout:g}s ({state}; {self.where()})"
            ) from None

    async def create(self, path: str, data: bytes = b"", *, ephemeral: bool = False) -> str:
        body = await self._call(p.OP_CREATE, path, lambda x: p.create(x, path, data, ephemeral=ephemeral))
        return p.decode_create(body)

    async def delete(self, path: str, version: int = -1) -> None:
        await self._call(p.OP_DELETE, path, lambda x: p.delete(x, path, version))

    async def exists(self, path: str, *, watch: WatchQueue | None = None) -> p.Stat | None:
        try:
            body = await self._call(p.OP_EXISTS, path, lambda x: p.exists(x, path, watch=bool(watch)), watch)
        except p.ZkError as exc:
            if exc.code == p.NO_NODE:
                return None
            raise
        return p.decode_stat(body)

    async def get_data(self, path: str, *, watch: WatchQueue | None = None) -> tuple[bytes, p.Stat]:
        body = await self._call(p.OP_GET_DATA, path, lambda x: p.get_data(x, path, watch=bool(watch)), watch)
        return p.decode_data(body)

    async def set_data(self, path: str, data: bytes, version: int = -1) -> p.Stat:
        body = await self._call(p.OP_SET_DATA, path, lambda x: p.set_data(x, path, data, version))
        return p.decode_stat(body)

    async def get_children(self, path: str, *, watch: WatchQueue | None = None) -> tuple[list[str], p.Stat]:
        body = await self._call(
            p.OP_GET_CHILDREN2, path, lambda x: p.get_children2(x, path, watch=bool(watch)), watch
        )
        return p.decode_children(body)

    async def ensure_path(self, path: str) -> None:
        """Create ``path`` and its missing ancestors as empty persistent nodes."""
        parts = [x for x in path.split("/") if x]
        for i in range(1, len(parts) + 1):
            sub = "/" + "/".join(parts[:i])
            try:
                await self.create(sub)
            except p.ZkError as exc:
                if exc.code != p.NODE_EXISTS:
                    raise

    # ---- owned ephemeral nodes -----------------------------------------------------------------

    async def ensure_ephemeral(self, path: str, data: bytes) -> None:
        """Make ``path`` an ephemeral node of this session holding ``data``, and keep it so.

        Creates the parents (persistent) when missing; rewrites the data only when it differs (so a
        re-registration fires no watch); replaces a node owned by someone else. The node is re-created
        by the client if the session expires, until :meth:`drop_ephemeral`.
        """
        owned = self._owned.setdefault(path, _Owned(data))
        async with owned.lock:
            owned.data = data
            self._owned[path] = owned
            await self._put_ephemeral(path, data)

    async def drop_ephemeral(self, path: str) -> None:
        """Stop owning ``path`` and delete it (gone already is fine)."""
        owned = self._owned.pop(path, None)
        if owned is not None:
            async with owned.lock:
                await self._delete_quietly(path)
        else:
            await self._delete_quietly(path)

    async def _delete_quietly(self, path: str) -> None:
        try:
            await self.delete(path)
        except p.ZkError as exc:
            if exc.code != p.NO_NODE:
                raise

    async def _put_ephemeral(self, path: str, data: bytes) -> None:
        for _ in range(5):
            try:
                current, stat = await self.get_data(path)
            except p.ZkError as exc:
                if exc.code != p.NO_NODE:
                    raise
                try:
                    await self.create(path, data, ephemeral=True)
                    return
                except p.ZkError as exc2:
                    if exc2.code == p.NO_NODE:  # the parent is missing
                        await self.ensure_path(path.rsplit("/", 1)[0])
                    elif exc2.code != p.NODE_EXISTS:  # NODE_EXISTS: raced, or our retried create landed
                        raise
                continue
            if stat.ephemeral_owner == self._session_id:
                if current != data:
                    try:
                        await self.set_data(path, data, stat.version)
                    except p.ZkError as exc:
                        if exc.code not in (p.BAD_VERSION, p.NO_NODE):
                            raise
                        continue
                return
            # Someone else's node (a persistent record, another session's): ours must be ephemeral.
            log.info(
                "zookeeper: replacing %s (owner 0x%x) with our ephemeral node", path, stat.ephemeral_owner
            )
            try:
                await self.delete(path, stat.version)
            except p.ZkError as exc:
                if exc.code not in (p.NO_NODE, p.BAD_VERSION):
                    raise
        raise RegistryError(f"zookeeper: could not claim {path}: it keeps changing under us")

    # ---- watch queues ---------------------------------------------------------------------------

    @asynccontextmanager
    async def watch_queue(self) -> AsyncIterator[WatchQueue]:
        """A queue for watch events, told (``EVENT_NONE``) after every reconnection to re-arm."""
        queue = WatchQueue.new()
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)
            for queues in self._watches.values():
                queues.discard(queue)
            queue.close()

    def _debug_state(self) -> dict[str, Any]:
        return {"session": hex(self._session_id), "connected": self.connected, "owned": list(self._owned)}
