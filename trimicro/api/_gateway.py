"""The HTTP/websocket gateway: Go Micro's ``micro api`` with its ``rpc`` handler, as an ASGI app.

``POST /greeter/Greeter/Hello`` with a JSON body calls service ``greeter``, endpoint ``Greeter.Hello``
through a trimicro :class:`~trimicro.client.Client` and answers with the service's JSON. The body
travels as raw bytes both ways (the JSON codec passes bytes through), so the gateway never needs the
service's types. A websocket on the same path opens a stream: each message is one request, each
response one message.

It follows go-micro v4 ``api/handler/rpc/rpc.go`` and ``stream.go`` (commit d392e7202): request headers
become call metadata, an error answers with HTTP status = its code and Go Micro's error JSON, and a
service missing from the registry is a 500 ``service not found`` from ``go.micro.api``.
docs/api.md lists where we differ.

:meth:`Gateway.serve` runs hypercorn's trio worker in the caller's nursery tree (no threads).
Shutdown (:meth:`Gateway.stop` or cancellation) stops accepting, closes websockets with 1001, gives
unary calls ``grace`` seconds, then cancels them (503) and the server.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import attrs
import trio

from .. import errors
from .._metadata import MICRO_PREFIX, ROUTING_HEADERS, canonical
from .._util import collapse_excgroups
from ..client import Client
from ..codec.json import loads as json_loads
from ..errors import MicroError, RegistryError, ServiceNotFound, TrimicroError
from ..transport.http import split_address
from ._policy import Access, AllowList, Authorize, MissCache, is_internal, parse_allow, well_formed
from ._resolver import Resolver, Route, rpc_resolver

__all__ = ["DEFAULT_MAX_BODY", "DEFAULT_MAX_HEADER", "GATEWAY_ID", "Gateway", "request_metadata"]

log = logging.getLogger("trimicro.api")

GATEWAY_ID = "go.micro.api"
"""The ``id`` of errors the gateway itself answers (Go Micro's api ``packageID``)."""
DEFAULT_MAX_BODY = 4 << 20
"""Largest request body / websocket message accepted, in bytes (4 MiB)."""
DEFAULT_MAX_HEADER = 16 << 10
"""Largest request line plus headers (HTTP/1.1) or header list (HTTP/2) accepted, in bytes (16 KiB)."""

_JSON = "application/json"
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_CLOSE_MARGIN = 1.0  # seconds for cancelled calls to write their 503 before the server is cancelled
_WS_CLOSE_NORMAL, _WS_GOING_AWAY, _WS_BAD_DATA, _WS_ERROR = 1000, 1001, 1007, 1011

# Headers that describe this HTTP hop or route the call: never call metadata. Every Micro-* header is
# dropped too, so a browser cannot set Micro-Stream or Micro-Endpoint behind the client's back.
_HOP_HEADERS = frozenset(
    {
        "Accept-Encoding",
        "Content-Encoding",
        "Expect",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "Te",
        "Trailer",
        "Upgrade",
        "Http2-Settings",
        "Sec-Websocket-Accept",
        "Sec-Websocket-Extensions",
        "Sec-Websocket-Key",
        "Sec-Websocket-Protocol",
        "Sec-Websocket-Version",
    }
)
_SKIP_HEADERS = ROUTING_HEADERS | _HOP_HEADERS

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _TooLarge(Exception):
    pass


@attrs.define(eq=False)
class _Lookup:
    """One registry lookup in flight, shared by every request for the same name meanwhile."""

    done: trio.Event = attrs.field(factory=trio.Event)
    found: bool | None = None  # None: failed or cancelled, so a waiter asks again


def request_metadata(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Call metadata from HTTP request headers: canonical names, repeated headers joined by ``,``
    (as Go's ``ctx.FromRequest``), hop-by-hop, routing and ``Micro-*`` headers left out."""
    md: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("ascii", "replace")
        if name.startswith(":"):  # HTTP/2 pseudo-headers
            continue
        key = canonical(name)
        if key in _SKIP_HEADERS or key.startswith(MICRO_PREFIX):
            continue
        value = raw_value.decode("utf-8", "surrogateescape")  # bytes pass through, as in Go
        md[key] = f"{md[key]},{value}" if key in md else value
    return md


def _all_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Every request header (canonical name, repeats joined by ``,``) for the authorize hook."""
    out: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("ascii", "replace")
        if name.startswith(":"):
            continue
        key = canonical(name)
        value = raw_value.decode("utf-8", "surrogateescape")
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


def _peer(scope: Scope) -> tuple[str, int] | None:
    client = scope.get("client")
    if not client:
        return None
    try:
        return (str(client[0]), int(client[1]))
    except (TypeError, ValueError, IndexError):
        return None


def _header_size(scope: Scope) -> int:
    """The request target plus headers as they came, about as HTTP/1.1 framed them."""
    raw_path = scope.get("raw_path") or str(scope.get("path", "")).encode("utf-8", "surrogateescape")
    size = len(raw_path) + len(scope.get("query_string") or b"")
    return size + sum(len(name) + len(value) + 4 for name, value in scope.get("headers", []))


def _http_status(code: int) -> int:
    # An error's code is its HTTP status when it is one that means an error; else a plain 500.
    return code if 400 <= code <= 599 else 500


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


@attrs.define(eq=False)
class Gateway:
    """An ASGI app that turns HTTP requests and websockets into calls and streams through ``client``.

    ``namespace`` prefixes service names (``go.micro.api`` -> ``/greeter/hello`` calls
    ``go.micro.api.greeter``); ``resolver`` maps a path to a :class:`Route` (Go Micro's ``rpc``
    rules by default); ``max_body`` bounds request bodies and websocket messages, ``max_header`` the
    request line and headers; ``grace`` is how long in-flight calls may run after :meth:`stop`.

    What is exposed (:mod:`trimicro.api._policy`, checked before any registry lookup): never the
    ``Debug`` handler or gRPC's internal services unless ``expose_debug``; only what ``allow``
    patterns match, when given; only what ``authorize`` approves, when given. A refusal is 403.
    Services the registry did not know are remembered for ``miss_ttl`` seconds (at most
    ``miss_cache_size`` names), so unknown names cannot turn each request into a registry round trip.
    A gateway serves once.
    """

    client: Client
    namespace: str = attrs.field(default="", kw_only=True)
    resolver: Resolver = attrs.field(default=rpc_resolver, kw_only=True)
    max_body: int = attrs.field(default=DEFAULT_MAX_BODY, kw_only=True)
    grace: float = attrs.field(default=10.0, kw_only=True)
    max_header: int = attrs.field(default=DEFAULT_MAX_HEADER, kw_only=True)
    #: ``service`` / ``service:Endpoint`` glob patterns (a list, or one comma-separated string);
    #: None exposes every service (but internal endpoints)
    allow: AllowList | None = attrs.field(default=None, kw_only=True, converter=parse_allow)
    #: ``await authorize(Access) -> bool``, after the allow-list; may raise MicroError (e.g. 401)
    authorize: Authorize | None = attrs.field(default=None, kw_only=True)
    #: let ``Debug.*`` and ``grpc.*`` endpoints through (still subject to ``allow`` and ``authorize``)
    expose_debug: bool = attrs.field(default=False, kw_only=True)
    miss_ttl: float = attrs.field(default=5.0, kw_only=True)
    miss_cache_size: int = attrs.field(default=10_000, kw_only=True)
    #: how long a connection may leave our replies unread (TCP_USER_TIMEOUT) before the kernel drops
    #: it; it also bounds shutdown, since a write to a client that never reads cannot be cancelled
    write_timeout: float = attrs.field(default=30.0, kw_only=True)
    _stopping: trio.Event = attrs.field(factory=trio.Event, init=False)
    _calls: set[trio.CancelScope] = attrs.field(factory=set, init=False)
    _sockets: set[trio.CancelScope] = attrs.field(factory=set, init=False)
    _idle: trio.Event = attrs.field(factory=trio.Event, init=False)
    _misses: MissCache = attrs.field(init=False)
    _looking_up: dict[str, _Lookup] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        for name in ("max_body", "max_header", "miss_cache_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"Gateway {name} must not be negative")
        if not self.miss_ttl >= 0:
            raise ValueError("Gateway miss_ttl must not be negative")
        self._misses = MissCache(self.miss_ttl, self.miss_cache_size)

    # -- lifecycle --
    @property
    def stopping(self) -> bool:
        """:meth:`stop` was called (or serving was cancelled): draining or done."""
        return self._stopping.is_set()

    def stop(self) -> None:
        """Begin a graceful stop: :meth:`serve` drains and returns."""
        self._stopping.set()

    async def serve(
        self, address: str = "127.0.0.1:8080", *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve HTTP on ``address`` until :meth:`stop` or cancellation; ``task_status.started`` gets
        the bound ``host:port``. An empty host (``:8080``) means loopback; other interfaces are opt-in."""
        from hypercorn.config import Config
        from hypercorn.trio.run import worker_serve
        from hypercorn.utils import wrap_app

        host, port = split_address(address)
        config = Config()
        config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        config.accesslog = None
        config.errorlog = log
        config.include_server_header = False
        config.websocket_max_message_size = self.max_body
        config.h11_max_incomplete_size = self.max_header
        config.h2_max_header_list_size = self.max_header
        config.graceful_timeout = self.grace + _CLOSE_MARGIN
        server_done = trio.Event()
        shield = trio.CancelScope(shield=True)
        app: Any = self  # hypercorn's ASGI types are TypedDicts; ours are plain mappings

        async def run(task_status: trio.TaskStatus[list[str]]) -> None:
            # Shielded so that cancelling serve() drains (below) instead of dropping every connection;
            # the drain cancels this scope when its time is up.
            try:
                with shield:
                    # hypercorn.trio.serve, but on sockets we made: hypercorn writes to clients
                    # in shielded scopes, so only the kernel can end a write to a client that
                    # never reads (TCP_USER_TIMEOUT, inherited by accepted sockets on Linux).
                    sockets = config.create_sockets()
                    for sock in sockets.insecure_sockets:
                        if hasattr(socket, "TCP_USER_TIMEOUT"):
                            ms = int(self.write_timeout * 1000)
                            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, ms)
                        sock.listen(config.backlog)
                    await worker_serve(
                        wrap_app(app, config.wsgi_max_body_size, "asgi"),
                        config,
                        sockets=sockets,
                        shutdown_trigger=self._stopping.wait,
                        task_status=task_status,
                    )
            finally:
                server_done.set()

        with collapse_excgroups():  # a bind error surfaces as the OSError it is
            async with trio.open_nursery() as nursery:
                binds: list[str] = await nursery.start(run)
                bound = binds[0].partition("://")[2] if binds else f"{host}:{port}"
                log.info("api gateway listening on http://%s", bound)
                task_status.started(bound)
                try:
                    await self._stopping.wait()
                finally:
                    with trio.CancelScope(shield=True):
                        await self._drain()
                        with trio.move_on_after(_CLOSE_MARGIN):
                            await server_done.wait()
                    shield.cancel()

    async def _drain(self) -> None:
        self._stopping.set()  # hypercorn stops accepting; idle keep-alive connections close
        for scope in list(self._sockets):
            scope.cancel()  # websockets: 1001 going away
        with trio.move_on_after(self.grace):
            while self._calls:
                self._idle = trio.Event()
                await self._idle.wait()
        for scope in list(self._calls):
            scope.cancel()  # answered 503

    def _enter(self, registry: set[trio.CancelScope]) -> trio.CancelScope:
        scope = trio.CancelScope()
        registry.add(scope)
        return scope

    def _exit(self, registry: set[trio.CancelScope], scope: trio.CancelScope) -> None:
        registry.discard(scope)
        if not self._calls:
            self._idle.set()

    # -- ASGI --
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind in ("http", "websocket") and _header_size(scope) > self.max_header:
            # hypercorn (h11) bounds only a header block that arrives in pieces; one that arrives
            # whole is checked here, before anything else looks at it
            too_big = MicroError(GATEWAY_ID, 431, f"request headers larger than {self.max_header} bytes")
            if kind == "http":
                await _reply_error(send, too_big)
            elif (await receive()).get("type") == "websocket.connect":
                await _refuse_websocket(scope, send, too_big)
            return
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)

    def _route(self, scope: Scope) -> Route:
        route = self.resolver(str(scope.get("path", "/")), self.namespace)
        # A decoded path may hold control characters (%00, %0d%0a): no service or endpoint name
        # does, and letting them reach the transport would fail there and mark a healthy node bad.
        if _CONTROL.search(route.service) or _CONTROL.search(route.endpoint):
            raise errors.bad_request(GATEWAY_ID, "path has control characters")
        return route

    async def _authorize(self, scope: Scope, route: Route, *, websocket: bool) -> None:
        """Raise the refusal (403, or the hook's own MicroError) unless the policy lets ``route`` through.
        Runs before any registry lookup: a refused name costs nothing and reveals nothing."""
        if not self.expose_debug and is_internal(route.endpoint):
            raise errors.forbidden(
                GATEWAY_ID, "endpoint %s is internal: not exposed by the gateway", route.endpoint
            )
        if self.allow is not None and not self.allow.allows(route.service, route.endpoint):
            raise errors.forbidden(
                GATEWAY_ID, "%s %s is not in the gateway's allow-list", route.service, route.endpoint
            )
        if route.service and not well_formed(route.endpoint):
            raise errors.bad_request(
                GATEWAY_ID, "endpoint %s is ill-formed: want Handler.Method", route.endpoint
            )
        if self.authorize is None:
            return
        access = Access(
            service=route.service,
            endpoint=route.endpoint,
            method=str(scope.get("method") or "GET"),
            path=str(scope.get("path", "/")),
            headers=_all_headers(list(scope.get("headers", []))),
            peer=_peer(scope),
            websocket=websocket,
        )
        try:
            allowed = await self.authorize(access)
        except MicroError:
            raise
        except Exception:
            log.exception("api gateway: authorize hook failed for %s %s", route.service, route.endpoint)
            raise errors.internal_server_error(GATEWAY_ID, "authorization failed") from None
        if allowed is not True:
            raise errors.forbidden(GATEWAY_ID, "%s %s: access denied", route.service, route.endpoint)

    async def _check_service(self, service: str) -> None:
        """Go Micro's router looks the service up before calling: unknown -> 500 service not found.

        A miss is remembered for ``miss_ttl`` (bounded LRU), and concurrent requests for one name
        share a single lookup, so N requests for an unknown name cost one registry round trip per
        ``miss_ttl``. A known service is looked up by the selector as usual (its cache, its watch)."""
        selector = self.client.selector
        not_found = errors.internal_server_error(GATEWAY_ID, "service not found")
        if not service:
            raise not_found
        if selector is None or self.client.options.proxy:
            return
        while True:
            if self._misses.missing(service, trio.current_time()):
                await trio.lowlevel.checkpoint()
                raise not_found
            pending = self._looking_up.get(service)
            if pending is None:
                break
            await pending.done.wait()  # another request is asking: share its answer
            if pending.found is True:
                return
            if pending.found is False:
                raise not_found
            # it failed or was cancelled: ask again ourselves
        lookup = self._looking_up[service] = _Lookup()
        try:
            await selector.select(service)
            lookup.found = True
        except ServiceNotFound:
            lookup.found = False
            self._misses.add(service, trio.current_time())
            raise not_found from None
        except RegistryError as exc:  # not a miss: the registry may be down, do not remember it
            raise errors.internal_server_error(GATEWAY_ID, "%s", exc) from None
        finally:
            if self._looking_up.get(service) is lookup:
                del self._looking_up[service]
            lookup.done.set()

    # -- HTTP --
    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") != "POST":
            err = errors.method_not_allowed(
                GATEWAY_ID,
                "method %s not allowed: POST a JSON body, or open a websocket",
                scope.get("method"),
            )
            await _reply_error(send, err, [(b"allow", b"POST")])
            return
        if self._stopping.is_set():
            await _reply_error(send, errors.service_unavailable(GATEWAY_ID, "gateway shutting down"))
            return
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", []))
        too_large = errors.MicroError(GATEWAY_ID, 413, f"request body larger than {self.max_body} bytes")
        declared = _content_length(headers)
        if declared is not None and declared > self.max_body:
            await _reply_error(send, too_large)
            return
        try:
            body = await self._read_body(receive)
        except _TooLarge:
            await _reply_error(send, too_large)
            return
        if body is None:
            return  # the client went away
        try:
            if json_loads(body) is None:
                body = b"{}"  # an empty body is an empty request, as Go Micro's api sends it
        except errors.CodecError as exc:
            await _reply_error(send, errors.bad_request(GATEWAY_ID, "%s", exc))
            return
        gone = False
        result: bytes | MicroError = errors.service_unavailable(GATEWAY_ID, "gateway shutting down")

        async def watch_disconnect(cancel: trio.CancelScope) -> None:
            nonlocal gone
            while (await receive()).get("type") != "http.disconnect":
                pass
            gone = True
            cancel.cancel()  # nobody to answer: cancel the call, as Go's request context does

        call = self._enter(self._calls)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_disconnect, call)
                with call:
                    result = await self._unary(scope, headers, body)
                nursery.cancel_scope.cancel()
        finally:
            self._exit(self._calls, call)
        if gone:
            return
        if isinstance(result, MicroError):
            await _reply_error(send, result)
        elif not result:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:
            await _reply(send, 200, result)

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg.get("type") == "http.disconnect":
                return None
            chunk = bytes(msg.get("body", b""))
            size += len(chunk)
            if size > self.max_body:
                raise _TooLarge
            chunks.append(chunk)
            if not msg.get("more_body", False):
                return b"".join(chunks)

    async def _unary(
        self, scope: Scope, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> bytes | MicroError:
        """The call's reply bytes, or the error to answer with; never raises (but Cancelled)."""
        try:
            route = self._route(scope)
            await self._authorize(scope, route, websocket=False)
            await self._check_service(route.service)
            reply = await self.client.call(
                route.service, route.endpoint, body,
                response_type=bytes, content_type=_JSON, metadata=request_metadata(headers),
            )  # fmt: skip
            return bytes(reply)
        except MicroError as err:
            return err
        except TrimicroError as exc:
            return errors.internal_server_error(GATEWAY_ID, "%s", exc)
        except Exception:
            log.exception("api gateway: call to %s failed", scope.get("path"))
            return errors.internal_server_error(GATEWAY_ID, "internal error")

    # -- websocket --
    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive()).get("type") != "websocket.connect":
            return
        if self._stopping.is_set():
            await send({"type": "websocket.close", "code": _WS_GOING_AWAY})  # before accept: HTTP 403
            return
        try:  # refused before the handshake completes: no stream is opened, nothing is looked up
            route = self._route(scope)
            await self._authorize(scope, route, websocket=True)
        except MicroError as refusal:
            await _refuse_websocket(scope, send, refusal)
            return
        except Exception:
            log.exception("api gateway: websocket %s refused", scope.get("path"))
            await _refuse_websocket(scope, send, errors.internal_server_error(GATEWAY_ID, "internal error"))
            return
        await send({"type": "websocket.accept"})
        going_away = self._enter(self._sockets)
        outcome: tuple[int, MicroError | None] | None = (_WS_GOING_AWAY, None)
        try:
            with going_away:
                outcome = await self._pump(scope, route, receive, send)
        finally:
            self._exit(self._sockets, going_away)
        if outcome is None:
            return  # the browser closed it
        code, err = outcome
        if err is not None:
            await send({"type": "websocket.send", "text": err.to_json()})
        reason = (
            err.status if err is not None else ("gateway shutting down" if code == _WS_GOING_AWAY else "")
        )
        await send({"type": "websocket.close", "code": code, "reason": reason[:120]})

    async def _pump(
        self, scope: Scope, route: Route, receive: Receive, send: Send
    ) -> tuple[int, MicroError | None] | None:
        """Run the stream; return how to close the websocket (code, error to send first), or None if
        the browser already closed it."""
        outcome: list[tuple[int, MicroError | None] | None] = []
        try:
            await self._check_service(route.service)
            md = request_metadata(list(scope.get("headers", [])))
            with collapse_excgroups():
                async with self.client.stream(
                    route.service, route.endpoint, response_type=bytes, content_type=_JSON, metadata=md
                ) as stream:

                    async def upstream() -> None:  # browser -> service: one message, one request
                        while True:
                            msg = await receive()
                            kind = msg.get("type")
                            if kind == "websocket.disconnect":
                                outcome.append(None)
                                break
                            if kind != "websocket.receive":
                                continue
                            raw = msg.get("bytes")
                            data = bytes(raw) if raw is not None else str(msg.get("text") or "").encode()
                            try:
                                if json_loads(data) is None:
                                    data = b"{}"
                            except errors.CodecError as exc:
                                outcome.append((_WS_BAD_DATA, errors.bad_request(GATEWAY_ID, "%s", exc)))
                                break
                            await stream.send(data)
                        nursery.cancel_scope.cancel()

                    async def downstream() -> None:  # service -> browser: one response, one text message
                        async for reply in stream:
                            # One JSON document per message: Go's encoder's closing newline adds nothing.
                            text = bytes(reply).rstrip(b"\n").decode("utf-8", "replace")
                            await send({"type": "websocket.send", "text": text})
                        outcome.append((_WS_CLOSE_NORMAL, None))
                        nursery.cancel_scope.cancel()

                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(upstream)
                        nursery.start_soon(downstream)
        except MicroError as err:
            return (_WS_ERROR, err)
        except TrimicroError as exc:
            return (_WS_ERROR, errors.internal_server_error(GATEWAY_ID, "%s", exc))
        except Exception:
            log.exception("api gateway: stream %s failed", scope.get("path"))
            return (_WS_ERROR, errors.internal_server_error(GATEWAY_ID, "internal error"))
        return outcome[0] if outcome else (_WS_CLOSE_NORMAL, None)


async def _reply(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", _JSON.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})


async def _reply_error(send: Send, err: MicroError, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await _reply(send, _http_status(err.code), err.to_json().encode(), extra)


async def _refuse_websocket(scope: Scope, send: Send, err: MicroError) -> None:
    """Refuse a handshake with the error's status and JSON (ASGI's websocket.http.response), or a
    bare 403 from servers without that extension."""
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    body = err.to_json().encode()
    headers = [(b"content-type", _JSON.encode()), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "websocket.http.response.start", "status": _http_status(err.code), "headers": headers}
    )
    await send({"type": "websocket.http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        kind = (await receive()).get("type")
        if kind == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif kind == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
