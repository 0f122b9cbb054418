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
    "current_metadata",
    "metadata",
    "remaining",
]

_EMPTY: Mapping[str, str] = types.MappingProxyType({})
_OUTGOING: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "trimicro_outgoing_metadata", default=_EMPTY
)


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
