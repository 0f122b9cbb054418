"""A small trio-native etcd v3 client over the gRPC-gateway's HTTP/1.1 JSON API (h11 on trio streams).

Why not gRPC: etcd's JSON gateway needs nothing but HTTP/1.1, which we drive with h11 the same way the
transport does, so the registry adds no dependency and stays cancellable end to end.

- Each request is bounded by ``timeout`` (a trio cancel scope) and raises RegistryError when it expires.
- Connections are kept alive and pooled per endpoint (one request at a time per connection).
- ``endpoints`` are tried in order: a connection error moves on to the next one, and the client sticks
  to the endpoint that last worked.
- ``username``/``password`` authenticate via ``/v3/auth/authenticate``; the token goes in the
  ``Authorization`` header and is renewed once when etcd calls it invalid.
- ``https://`` endpoints, or any endpoint when ``ssl_context`` is given, use TLS.
"""

from __future__ import annotations

import json
import ssl
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import h11
import trio

from ..errors import RegistryError
from ._etcd_proto import (
    NOT_FOUND,
    UNAUTHENTICATED,
    EtcdCompacted,
    EtcdError,
    JsonLines,
    KeyValue,
    WatchEvent,
    WatchResponse,
    b64,
    error_from_body,
    parse_json,
    parse_stream_result,
    parse_watch_message,
    prefix_end,
    to_bytes,
)

__all__ = ["Endpoint", "EtcdClient", "EtcdWatch", "RangeResult"]

_READ_SIZE = 65536
_MAX_BODY = 64 * 1024 * 1024


@attrs.frozen
class Endpoint:
    """``host:port`` of one etcd member, with its scheme (``None`` = decided by the ssl context)."""

    host: str
    port: int
    scheme: str | None = None

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """``127.0.0.1:2379``, ``http://h:p``, ``https://h``, ``[::1]:2379``; the port defaults to 2379."""
        scheme: str | None = None
        rest = text.strip()
        if "://" in rest:
            scheme, _, rest = rest.partition("://")
            scheme = scheme.lower()
            if scheme not in ("http", "https"):
                raise ValueError(f"etcd endpoint {text!r}: scheme must be http or https")
        rest = rest.rstrip("/")
        if rest.startswith("["):
            host, _, tail = rest[1:].partition("]")
            port_text = tail[1:] if tail.startswith(":") else ""
        elif rest.count(":") == 1:
            host, _, port_text = rest.partition(":")
        else:
            host, port_text = rest, ""
        if not host:
            raise ValueError(f"etcd endpoint {text!r} has no host")
        try:
            port = int(port_text) if port_text else 2379
        except ValueError:
            raise ValueError(f"etcd endpoint {text!r} has a bad port") from None
        return cls(host, port, scheme)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme + '://' if self.scheme else ''}{host}:{self.port}"


@attrs.frozen
class RangeResult:
    kvs: tuple[KeyValue, ...]
    revision: int


class _Unreachable(Exception):
    """Could not talk to an endpoint at all (so trying the next one is safe)."""


class _ConnectionLost(Exception):
    """The connection died mid-exchange."""

    def __init__(self, message: str, *, got_response: bool) -> None:
        super().__init__(message)
        self.got_response = got_response


@attrs.define(eq=False)
class _Connection:
    endpoint: Endpoint
    stream: trio.abc.Stream
    proto: h11.Connection = attrs.field(
        factory=lambda: h11.Connection(h11.CLIENT, max_incomplete_event_size=65536)
    )

    async def send(self, event: Any) -> None:
        data = self.proto.send(event)
        if data:
            try:
                await self.stream.send_all(data)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise _ConnectionLost(f"send failed: {exc!r}", got_response=False) from None

    async def next_event(self, *, got_response: bool) -> Any:
        while True:
            try:
                event = self.proto.next_event()
            except h11.RemoteProtocolError as exc:
                raise _ConnectionLost(f"bad HTTP from etcd: {exc}", got_response=got_response) from None
            if event is h11.NEED_DATA:
                try:
                    data = await self.stream.receive_some(_READ_SIZE)
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    raise _ConnectionLost(f"receive failed: {exc!r}", got_response=got_response) from None
                self.proto.receive_data(bytes(data))
                continue
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                raise _ConnectionLost("etcd closed the connection", got_response=got_response)
            return event

    @property
    def reusable(self) -> bool:
        return self.proto.our_state is h11.DONE and self.proto.their_state is h11.DONE

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


def _request(endpoint: Endpoint, path: str, body: bytes, headers: list[tuple[str, str]]) -> h11.Request:
    return h11.Request(
        method="POST",
        target=path,
        headers=[
            ("Host", f"{endpoint.host}:{endpoint.port}"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            *headers,
        ],
    )


@attrs.define(eq=False)
class EtcdClient:
    """etcd v3 KV, lease and watch calls; ``async with`` it (closing drops pooled connections)."""

    endpoints: Sequence[str] = ("127.0.0.1:2379",)
    timeout: float = 5.0
    username: str = ""
    password: str = ""
    ssl_context: ssl.SSLContext | None = None
    pool_size: int = 4
    _endpoints: list[Endpoint] = attrs.field(init=False)
    _current: int = attrs.field(default=0, init=False)
    _idle: dict[Endpoint, list[_Connection]] = attrs.field(factory=dict, init=False)
    _token: str | None = attrs.field(default=None, init=False)
    _auth_lock: trio.Lock = attrs.field(factory=trio.Lock, init=False)
    _closed: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.endpoints, str):
            self.endpoints = [self.endpoints]
        self._endpoints = [Endpoint.parse(e) for e in self.endpoints]
        if not self._endpoints:
            raise ValueError("EtcdClient needs at least one endpoint")

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                await conn.aclose()

    # ---- KV -------------------------------------------------------------------------------------

    async def range(
        self, key: bytes | str, *, prefix: bool = False, keys_only: bool = False, serializable: bool = False
    ) -> RangeResult:
        """Keys equal to ``key`` (or starting with it when ``prefix``), sorted by key.

        ``serializable`` reads the answering member's local state without a consensus round (faster,
        possibly a little stale), as Go Micro's registry lookups do.
        """
        k = to_bytes(key)
        body: dict[str, Any] = {"key": b64(k)}
        if prefix:
            body["range_end"] = b64(prefix_end(k))
        if keys_only:
            body["keys_only"] = True
        if serializable:
            body["serializable"] = True
        rsp = await self.call("/v3/kv/range", body)
        kvs = tuple(KeyValue.from_json(kv) for kv in rsp.get("kvs") or ())
        return RangeResult(kvs, _revision(rsp))

    async def put(self, key: bytes | str, value: bytes | str, *, lease: int = 0) -> int:
        """Store ``value`` (attached to ``lease`` when non-zero); returns the new revision."""
        body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        return _revision(await self.call("/v3/kv/put", body))

    async def delete(self, key: bytes | str, *, prefix: bool = False) -> int:
        """Delete ``key`` (or every key under it); returns how many keys went."""
        k = to_bytes(key)
        body: dict[str, Any] = {"key": b64(k)}
        if prefix:
            body["range_end"] = b64(prefix_end(k))
        rsp = await self.call("/v3/kv/deleterange", body)
        return int(rsp.get("deleted") or 0)

    # ---- leases ---------------------------------------------------------------------------------

    async def lease_grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds (etcd may round it up to its minimum); returns its id."""
        rsp = await self.call("/v3/lease/grant", {"TTL": str(int(ttl))})
        if rsp.get("error"):
            raise EtcdError(f"etcd lease grant: {rsp['error']}")
        lease = int(rsp.get("ID") or 0)
        if not lease:
            raise RegistryError(f"etcd lease grant returned no lease id: {str(rsp)[:200]}")
        return lease

    async def lease_keepalive_once(self, lease: int) -> int:
        """Refresh ``lease``; returns the TTL it now has left, 0 when the lease no longer exists."""
        # The gateway runs the bidi LeaseKeepAlive stream for the one request in our body and ends the
        # response when the body ends, so one POST is one keep-alive.
        rsp = await self.call("/v3/lease/keepalive", {"ID": str(lease)})
        if "result" in rsp or "error" in rsp:
            rsp = parse_stream_result(rsp, "lease keepalive")
        return int(rsp.get("TTL") or 0)

    async def lease_revoke(self, lease: int) -> bool:
        """Revoke ``lease`` and delete its keys; False when it did not exist (any more)."""
        try:
            await self.call("/v3/lease/revoke", {"ID": str(lease)})
        except EtcdError as exc:
            if exc.code == NOT_FOUND:
                return False
            raise
        return True

    # ---- watch ----------------------------------------------------------------------------------

    @asynccontextmanager
    async def watch(
        self,
        key: bytes | str,
        *,
        prefix: bool = False,
        start_revision: int | None = None,
        prev_kv: bool = False,
    ) -> AsyncIterator[EtcdWatch]:
        """Watch ``key`` (or the prefix): yields an :class:`EtcdWatch`, an async iterator of events.

        The watch is established (etcd confirmed it) before the block runs, so every change made after
        entering is seen. A broken stream raises RegistryError from the iterator; a compacted
        ``start_revision`` raises :class:`EtcdCompacted`.
        """
        watch = await self.open_watch(key, prefix=prefix, start_revision=start_revision, prev_kv=prev_kv)
        try:
            yield watch
        finally:
            await watch.aclose()

    async def open_watch(
        self,
        key: bytes | str,
        *,
        prefix: bool = False,
        start_revision: int | None = None,
        prev_kv: bool = False,
    ) -> EtcdWatch:
        """Like :meth:`watch` but the caller must ``await watch.aclose()``."""
        k = to_bytes(key)
        create: dict[str, Any] = {"key": b64(k)}
        if prefix:
            create["range_end"] = b64(prefix_end(k))
        if start_revision:
            create["start_revision"] = str(start_revision)
        if prev_kv:
            create["prev_kv"] = True
        body = json.dumps({"create_request": create}).encode()
        try:
            with trio.fail_after(self.timeout):
                for attempt in range(2):
                    token = await self._ensure_token()
                    conn = await self._failover(
                        lambda ep, token=token: self._open_stream(ep, "/v3/watch", body, token)
                    )
                    watch = EtcdWatch(conn)
                    try:
                        first = await watch.next_response()
                        if first.canceled and first.compact_revision:
                            raise EtcdCompacted(first.compact_revision)
                        if first.canceled:
                            raise EtcdError(f"etcd refused the watch: {first.cancel_reason}")
                        if not first.created:
                            raise RegistryError(f"etcd watch did not confirm creation: {first}")
                        watch.revision = first.revision
                        return watch
                    except EtcdError as exc:
                        await watch.aclose()
                        if attempt == 0 and self._is_auth_failure(exc):
                            self._drop_token(token)
                            continue
                        raise
                    except BaseException:
                        await watch.aclose()
                        raise
        except trio.TooSlowError:
            raise RegistryError(f"etcd watch: no answer within {self.timeout:g}s ({self._where()})") from None
        raise AssertionError("unreachable")

    # ---- requests -------------------------------------------------------------------------------

    async def call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST ``payload`` to a gateway path and return the JSON answer (RegistryError otherwise)."""
        if self._closed:
            raise RegistryError("etcd client is closed")
        body = json.dumps(payload).encode()
        try:
            with trio.fail_after(self.timeout):
                for attempt in range(2):
                    token = await self._ensure_token()
                    try:
                        return await self._call_once(path, body, token)
                    except EtcdError as exc:
                        if attempt == 0 and self._is_auth_failure(exc):
                            self._drop_token(token)
                            continue
                        raise
        except trio.TooSlowError:
            raise RegistryError(
                f"etcd {path}: no answer within {self.timeout:g}s ({self._where()})"
            ) from None
        raise AssertionError("unreachable")

    async def _call_once(self, path: str, body: bytes, token: str | None) -> dict[str, Any]:
        headers = [("Authorization", token)] if token else []
        status, data = await self._failover(lambda ep: self._exchange(ep, path, body, headers))
        if status != 200:
            raise error_from_body(status, data, path)
        return parse_json(data)

    def _where(self) -> str:
        return ", ".join(str(e) for e in self._endpoints)

    async def _failover(self, attempt: Any) -> Any:
        """Run ``attempt(endpoint)`` on the current endpoint, then the others in order, until one works."""
        failures: list[str] = []
        count = len(self._endpoints)
        for i in range(count):
            index = (self._current + i) % count
            endpoint = self._endpoints[index]
            try:
                result = await attempt(endpoint)
            except _Unreachable as exc:
                failures.append(f"{endpoint}: {exc}")
                continue
            self._current = index
            return result
        raise RegistryError("etcd unreachable: " + "; ".join(failures))

    async def _connect(self, endpoint: Endpoint) -> _Connection:
        # Each endpoint gets an equal share of the request's time, so one black-holed member cannot
        # starve the others of their turn.
        share = self.timeout / len(self._endpoints)
        try:
            with trio.fail_after(share):
                stream: trio.abc.Stream = await trio.open_tcp_stream(endpoint.host, endpoint.port)
                use_tls = endpoint.scheme == "https" or (endpoint.scheme is None and self.ssl_context)
                if use_tls:
                    ctx = self.ssl_context or ssl.create_default_context()
                    tls = trio.SSLStream(stream, ctx, server_hostname=endpoint.host)
                    try:
                        await tls.do_handshake()
                    except BaseException:
                        await trio.aclose_forcefully(tls)
                        raise
                    stream = tls
        except trio.TooSlowError:
            raise _Unreachable(f"connect timed out after {share:g}s") from None
        except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
            raise _Unreachable(f"connect failed: {_describe(exc)}") from None
        return _Connection(endpoint, stream)

    def _checkout(self, endpoint: Endpoint) -> _Connection | None:
        conns = self._idle.get(endpoint)
        return conns.pop() if conns else None

    async def _checkin(self, conn: _Connection) -> None:
        if conn.reusable and not self._closed:
            conn.proto.start_next_cycle()
            conns = self._idle.setdefault(conn.endpoint, [])
            if len(conns) < self.pool_size:
                conns.append(conn)
                return
        await conn.aclose()

    async def _exchange(
        self, endpoint: Endpoint, path: str, body: bytes, headers: list[tuple[str, str]]
    ) -> tuple[int, bytes]:
        """One request/response on a pooled connection, or a fresh one if the pooled one was stale."""
        conn = self._checkout(endpoint)
        if conn is not None:
            try:
                result = await self._roundtrip(conn, path, body, headers)
            except _ConnectionLost as exc:
                if exc.got_response:
                    raise _Unreachable(str(exc)) from None
                # The server closed an idle keep-alive connection: retry once on a fresh one.
            else:
                return _check_available(result)
        conn = await self._connect(endpoint)
        try:
            return _check_available(await self._roundtrip(conn, path, body, headers))
        except _ConnectionLost as exc:
            raise _Unreachable(str(exc)) from None

    async def _roundtrip(
        self, conn: _Connection, path: str, body: bytes, headers: list[tuple[str, str]]
    ) -> tuple[int, bytes]:
        try:
            await conn.send(_request(conn.endpoint, path, body, headers))
            await conn.send(h11.Data(data=body))
            await conn.send(h11.EndOfMessage())
            event = await conn.next_event(got_response=False)
            while isinstance(event, h11.InformationalResponse):
                event = await conn.next_event(got_response=False)
            if not isinstance(event, h11.Response):
                raise _ConnectionLost(f"unexpected {type(event).__name__}", got_response=True)
            chunks = bytearray()
            while True:
                part = await conn.next_event(got_response=True)
                if isinstance(part, h11.Data):
                    chunks += part.data
                    if len(chunks) > _MAX_BODY:
                        raise RegistryError(f"etcd {path}: answer larger than {_MAX_BODY} bytes")
                elif isinstance(part, h11.EndOfMessage):
                    break
        except BaseException:
            await conn.aclose()
            raise
        await self._checkin(conn)
        return event.status_code, bytes(chunks)

    async def _open_stream(
        self, endpoint: Endpoint, path: str, body: bytes, token: str | None
    ) -> _Connection:
        """A fresh connection (not pooled: it stays busy) with a streaming response under way."""
        conn = await self._connect(endpoint)
        headers = [("Authorization", token)] if token else []
        try:
            await conn.send(_request(endpoint, path, body, headers))
            await conn.send(h11.Data(data=body))
            await conn.send(h11.EndOfMessage())
            event = await conn.next_event(got_response=False)
            while isinstance(event, h11.InformationalResponse):
                event = await conn.next_event(got_response=False)
            if not isinstance(event, h11.Response):
                raise _ConnectionLost(f"unexpected {type(event).__name__}", got_response=True)
            if event.status_code != 200:
                chunks = bytearray()
                while isinstance(part := await conn.next_event(got_response=True), h11.Data):
                    chunks += part.data
                raise error_from_body(event.status_code, bytes(chunks), path)
        except _ConnectionLost as exc:
            await conn.aclose()
            raise _Unreachable(str(exc)) from None
        except BaseException:
            await conn.aclose()
            raise
        return conn

    # ---- auth -----------------------------------------------------------------------------------

    def _is_auth_failure(self, exc: EtcdError) -> bool:
        if not self.username:
            return False
        return exc.code == UNAUTHENTICATED or "invalid auth token" in str(exc)

    def _drop_token(self, token: str | None) -> None:
        if self._token == token:
            self._token = None

    async def _ensure_token(self) -> str | None:
        if not self.username:
            return None
        async with self._auth_lock:
            if self._token is None:
                body = json.dumps({"name": self.username, "password": self.password}).encode()
                status, data = await self._failover(
                    lambda ep: self._exchange(ep, "/v3/auth/authenticate", body, [])
                )
                if status != 200:
                    raise error_from_body(status, data, "authenticate")
                token = parse_json(data).get("token")
                if not token:
                    raise RegistryError("etcd authenticate returned no token (is auth enabled?)")
                self._token = str(token)
            return self._token


def _describe(exc: BaseException) -> str:
    """The most useful text for an error (trio wraps TLS failures without a message of their own)."""
    while not str(exc) and exc.__cause__ is not None:
        exc = exc.__cause__
    return str(exc) or type(exc).__name__


def _check_available(result: tuple[int, bytes]) -> tuple[int, bytes]:
    """A member without a leader (HTTP 503 / UNAVAILABLE) counts as unreachable: try the next one."""
    status, data = result
    if status == 503:
        raise _Unreachable(str(error_from_body(status, data, "request")))
    return result


def _revision(rsp: dict[str, Any]) -> int:
    header = rsp.get("header")
    return int(header.get("revision") or 0) if isinstance(header, dict) else 0


@attrs.define(eq=False)
class EtcdWatch:
    """An established watch stream: ``async for event in watch`` yields :class:`WatchEvent`.

    ``revision`` is the revision of the latest message; resume with ``start_revision=revision + 1``.
    Iteration stops after :meth:`aclose`; a stream etcd ends or breaks raises RegistryError, and
    etcd cancelling the watch raises EtcdError (:class:`EtcdCompacted` for compaction).
    """

    _conn: _Connection
    revision: int = 0
    _lines: JsonLines = attrs.field(factory=JsonLines, init=False)
    _ready: deque[dict[str, Any]] = attrs.field(factory=deque, init=False)
    _events: deque[WatchEvent] = attrs.field(factory=deque, init=False)
    _closed: bool = attrs.field(default=False, init=False)
    _ended: bool = attrs.field(default=False, init=False)

    def __aiter__(self) -> EtcdWatch:
        return self

    async def __anext__(self) -> WatchEvent:
        while not self._events:
            if self._closed:
                raise StopAsyncIteration
            rsp = await self.next_response()
            if rsp.canceled:
                if rsp.compact_revision:
                    raise EtcdCompacted(rsp.compact_revision)
                raise EtcdError(f"etcd cancelled the watch: {rsp.cancel_reason or 'no reason given'}")
            self.revision = max(self.revision, rsp.revision)
            self._events.extend(rsp.events)
        return self._events.popleft()

    async def next_response(self) -> WatchResponse:
        """The next raw watch message (including progress and cancel messages)."""
        while not self._ready:
            if self._closed:
                raise RegistryError("etcd watch is closed")
            if self._ended:
                raise RegistryError("etcd ended the watch stream")
            try:
                event = await self._conn.next_event(got_response=True)
            except _ConnectionLost as exc:
                raise RegistryError(f"etcd watch stream broke: {exc}") from None
            if isinstance(event, h11.Data):
                self._ready.extend(self._lines.feed(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self._ended = True
                self._ready.extend(self._lines.close())
        return parse_watch_message(self._ready.popleft())

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._conn.aclose()
