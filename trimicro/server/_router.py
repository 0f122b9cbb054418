"""Handler reflection and endpoint routing, independent of any transport.

``Router.handle(obj)`` turns every public ``async def Method(self, req, ctx)`` of a plain class into
endpoint ``Class.Method``; the request and response types come from the type hints. A parameter
annotated :class:`~trimicro.stream.Stream` makes the method streaming: ``(stream, ctx)`` for client or
bidirectional streams, ``(req, stream, ctx)`` for server streams. Generated code passes explicit
:class:`MethodSpec` lists instead of relying on reflection.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs

from .. import errors
from ..registry import Endpoint, Value
from ..stream import Stream
from ._spec import MethodSpec

__all__ = ["HandlerFunc", "HandlerWrapper", "Request", "Route", "Router"]

SERVER_ID = "go.micro.server"


@attrs.define(slots=True)
class Request:
    """What a handler wrapper sees: routing facts plus the decoded request (``body``).

    For streaming endpoints ``body`` is the stream (or, for server streams, the first request)."""

    service: str
    endpoint: str
    content_type: str
    header: dict[str, str]
    body: Any
    stream: bool = False


#: ``(request, ctx) -> response``; wrappers decorate this.
HandlerFunc = Callable[[Request, Any], Awaitable[Any]]
HandlerWrapper = Callable[[HandlerFunc], HandlerFunc]


@attrs.define(eq=False)
class Route:
    """One endpoint, with its handler already wrapped."""

    name: str
    spec: MethodSpec
    method: Callable[..., Awaitable[Any]]
    call: HandlerFunc
    internal: bool = False

    @property
    def streaming(self) -> bool:
        return self.spec.streaming


def _stream_args(annotation: Any) -> tuple[Any, Any] | None:
    origin = typing.get_origin(annotation) or annotation
    if isinstance(origin, type) and issubclass(origin, Stream):
        args = typing.get_args(annotation)
        return (args[0], args[1]) if len(args) == 2 else (None, None)
    return None


def reflect(method: Callable[..., Any], name: str) -> MethodSpec:
    """Derive a :class:`MethodSpec` from an ``async def`` method's signature and type hints."""
    try:
        hints = typing.get_type_hints(method)
    except Exception:  # unresolvable forward references: fall back to untyped
        hints = {}
    params = [p for p in inspect.signature(method).parameters.values() if p.name != "self"]
    streams = [i for i, p in enumerate(params) if _stream_args(hints.get(p.name)) or p.name == "stream"]
    doc = inspect.getdoc(method) or ""
    if not streams:
        req = hints.get(params[0].name) if params else None
        return MethodSpec(name, request=req, response=_response_type(hints), doc=doc)
    idx = streams[0]
    req_t, rsp_t = _stream_args(hints.get(params[idx].name)) or (None, None)
    if idx == 0:
        return MethodSpec(name, req_t, rsp_t, client_streaming=True, server_streaming=True, doc=doc)
    first = hints.get(params[0].name)
    return MethodSpec(name, first if first is not None else req_t, rsp_t, server_streaming=True, doc=doc)


def _response_type(hints: dict[str, Any]) -> Any:
    rsp = hints.get("return")
    return None if rsp is type(None) else rsp


def _describe(cls: Any) -> Value | None:
    if cls is None:
        return None
    try:
        from ..codec.describe import describe
    except ImportError:  # pragma: no cover - codec package always ships describe
        return None
    try:
        return describe(cls)
    except Exception:
        return None


@attrs.define(eq=False)
class Router:
    """Endpoints by name; shared by every transport (mucp, gRPC) of a server."""

    wrappers: list[HandlerWrapper] = attrs.field(factory=list)
    routes: dict[str, Route] = attrs.field(factory=dict)
    #: gRPC path ``/pkg.Service/Method`` -> endpoint name
    grpc_paths: dict[str, str] = attrs.field(factory=dict)

    def handle(
        self,
        handler: object,
        *,
        name: str | None = None,
        methods: Sequence[MethodSpec] | None = None,
        grpc_service: str | None = None,
        internal: bool = False,
    ) -> list[str]:
        """Register ``handler``'s methods; returns the endpoint names added."""
        hname = name or type(handler).__name__
        if "." in hname or not hname:
            raise ValueError(f"handler name must be one word, got {hname!r}")
        specs: list[MethodSpec] = list(methods) if methods is not None else []
        if methods is None:
            for attr, fn in inspect.getmembers(handler, inspect.iscoroutinefunction):
                if attr.startswith("_"):
                    continue
                specs.append(reflect(fn, attr))
        added = []
        for spec in specs:
            fn = getattr(handler, spec.attr or spec.name)
            endpoint = f"{hname}.{spec.name}"
            self.routes[endpoint] = Route(endpoint, spec, fn, self._wrap(fn, spec), internal)
            self.grpc_paths[f"/{grpc_service or hname}/{spec.name}"] = endpoint
            added.append(endpoint)
        return added

    def _wrap(self, fn: Callable[..., Awaitable[Any]], spec: MethodSpec) -> HandlerFunc:
        call: HandlerFunc
        if spec.server_streaming and not spec.client_streaming:

            async def server_stream(req: Request, ctx: Any) -> Any:
                first, stream = req.body
                return await fn(first, stream, ctx)

            call = server_stream
        else:

            async def unary(req: Request, ctx: Any) -> Any:
                return await fn(req.body, ctx)

            call = unary

        for wrapper in reversed(self.wrappers):
            call = wrapper(call)
        return call

    def add_wrapper(self, wrapper: HandlerWrapper, *, first: bool = False) -> None:
        """Add a handler wrapper (outermost first; ``first=True`` makes it the outermost, as
        tracing and metrics want to be); re-wraps existing routes."""
        if first:
            self.wrappers.insert(0, wrapper)
        else:
            self.wrappers.append(wrapper)
        for route in self.routes.values():
            route.call = self._wrap(route.method, route.spec)

    def lookup(self, endpoint: str) -> Route:
        """The route for ``Handler.Method``; Go Micro's errors for ill-formed or unknown names."""
        route = self.routes.get(endpoint)
        if route is not None:
            return route
        parts = endpoint.split(".")
        if len(parts) != 2 or not all(parts):
            raise errors.bad_request(SERVER_ID, "rpc: endpoint ill-formed: %s", endpoint or "<empty>")
        if not any(e.startswith(parts[0] + ".") for e in self.routes):
            raise errors.not_found(SERVER_ID, "unknown service %s", parts[0])
        # Go Micro's wording first (clients may match on it), then what is actually wrong.
        raise errors.not_found(
            SERVER_ID, "unknown service %s.%s: handler %s has no method %s", parts[0], parts[1], parts[0], parts[1]
        )

    def endpoints(self) -> list[Endpoint]:
        """Advertised endpoint descriptions for the registry (internal ones excluded)."""
        out = []
        for route in sorted(self.routes.values(), key=lambda r: r.name):
            if route.internal:
                continue
            md = {"stream": "true"} if route.streaming else {}
            out.append(
                Endpoint(route.name, _describe(route.spec.request), _describe(route.spec.response), md)
            )
        return out
