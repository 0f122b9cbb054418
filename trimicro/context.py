"""Call context: metadata and deadline propagation through contextvars.

A handler receives a :class:`Context` with the caller's metadata and the call's deadline. While the
handler runs, that metadata is also the *outgoing* metadata of any call it makes (as Go Micro forwards
``metadata.FromContext(ctx)``), and the server's cancel scope bounds nested calls, so they inherit the
remaining time: :func:`remaining` reads it from ``trio.current_effective_deadline()``.

``with trimicro.metadata(user="alice"):`` adds outgoing metadata for calls in that block. The header
names, the routing headers that are never metadata, and the ``Timeout`` codec live in
trimicro/_metadata.py.
"""

from __future__ import annotations

import contextvars
import math
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import attrs
import trio

from ._metadata import canonical

__all__ = [
    "Context",
    "ResponseMetadata",
    "current_metadata",
    "current_response_metadata",
    "metadata",
    "remaining",
    "reset_response_metadata",
    "set_response_metadata",
]

_EMPTY: Mapping[str, str] = types.MappingProxyType({})
_OUTGOING: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "trimicro_outgoing_metadata", default=_EMPTY
)


@attrs.define(eq=False)
class ResponseMetadata:
    """A call's response metadata: ``header`` goes out with the first response (gRPC's initial
    metadata), ``trailer`` with the final status (trailing metadata).

    Handlers fill the server's through :meth:`Context.set_header`/:meth:`Context.set_trailer`;
    callers pass one as ``metadata_out=`` to ``Client.call``/``Client.stream`` to read what came
    back (canonical names, ``X-Served-By``; ``-bin`` values stay base64 text)."""

    header: dict[str, str] = attrs.field(factory=dict)
    trailer: dict[str, str] = attrs.field(factory=dict)
    #: gRPC message compression: what a handler asks its responses to use (:meth:`Context.set_compression`);
    #: on a caller's ``metadata_out``, the ``grpc-encoding`` the response came with ("" for none)
    compression: str = ""


#: The running handler's response metadata: set per call by a server that can send it (gRPC).
_RESPONSE: contextvars.ContextVar[ResponseMetadata | None] = contextvars.ContextVar(
    "trimicro_response_metadata", default=None
)


def set_response_metadata(md: ResponseMetadata | None) -> contextvars.Token[ResponseMetadata | None]:
    """Make ``md`` where the current call's :meth:`Context.set_header`/``set_trailer`` write."""
    return _RESPONSE.set(md)


def current_response_metadata() -> ResponseMetadata | None:
    return _RESPONSE.get()


def reset_response_metadata(token: contextvars.Token[ResponseMetadata | None]) -> None:
    _RESPONSE.reset(token)


@attrs.define(eq=False)
class Context:
    """What a handler knows about its call.

    ``metadata`` holds the caller's headers (canonical names) except routing ones; ``deadline`` is in
    ``trio.current_time()`` units (``inf`` when the caller set none).
    """

    service: str = ""
    endpoint: str = ""
    metadata: dict[str, str] = attrs.field(factory=dict)
    deadline: float = math.inf
    remote: str = ""
    content_type: str = ""
    id: str = ""

    @property
    def remaining(self) -> float:
        """Seconds left before the deadline (``inf`` if none)."""
        return self.deadline - trio.current_time()

    def set_header(self, key: str, value: str) -> None:
        """Send ``key: value`` as response (initial) metadata; over gRPC it goes with the first
        response message, so set it before sending one. mucp replies carry no response metadata:
        there it is dropped."""
        md = _RESPONSE.get()
        if md is not None:
            md.header[key.lower()] = value

    def set_compression(self, encoding: str) -> None:
        """Compress this call's gRPC responses with ``encoding`` (``gzip``, ``deflate``, or
        ``identity`` for none), overriding the server's choice; set it before the first response.
        A client that does not list the encoding in ``grpc-accept-encoding`` gets plain messages,
        which every client can read. mucp ignores it."""
        from .codec import SUPPORTED_ENCODINGS

        if encoding not in SUPPORTED_ENCODINGS:
            raise ValueError(
                f"unsupported compression {encoding!r}; use one of {', '.join(SUPPORTED_ENCODINGS)}"
            )
        md = _RESPONSE.get()
        if md is not None:
            md.compression = encoding

    def set_trailer(self, key: str, value: str) -> None:
        """Send ``key: value`` as trailing metadata, with the call's final status (gRPC only; mucp
        drops it)."""
        md = _RESPONSE.get()
        if md is not None:
            md.trailer[key.lower()] = value


def current_metadata() -> dict[str, str]:
    """The metadata an outgoing call made here would carry."""
    return dict(_OUTGOING.get())


@contextmanager
def metadata(values: Mapping[str, str] | None = None, /, **kw: str) -> Iterator[None]:
    """Add outgoing metadata for calls made inside the block (merged over any inherited metadata)."""
    merged = dict(_OUTGOING.get())
    for k, v in {**(values or {}), **kw}.items():
        merged[canonical(k.replace("_", "-")) if "_" in k else canonical(k)] = str(v)
    token = _OUTGOING.set(merged)
    try:
        yield
    finally:
        _OUTGOING.reset(token)


def set_incoming(md: Mapping[str, str]) -> contextvars.Token[Mapping[str, str]]:
    """Make a handler's incoming metadata the outgoing metadata of its nested calls."""
    return _OUTGOING.set(md)


def reset_incoming(token: contextvars.Token[Mapping[str, str]]) -> None:
    _OUTGOING.reset(token)


def remaining(timeout: float | None = None) -> float | None:
    """Effective timeout for a call: ``timeout`` capped by the enclosing cancel scopes' deadline."""
    deadline = trio.current_effective_deadline()
    if deadline == math.inf:
        return timeout
    left = max(deadline - trio.current_time(), 0.0)
    return left if timeout is None else min(timeout, left)
