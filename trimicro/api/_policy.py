"""What the gateway lets through: an allow-list, an authorize hook, and internal endpoints kept out.

A gateway is the one door from outside to every service, so it decides what it exposes before it
asks the registry anything (a refused name costs no lookup, and its answer says nothing about
whether the service exists). Three checks, in this order (the gateway also refuses an endpoint that
is not ``Handler.Method``, :func:`well_formed`, after the allow-list and before the hook):

1. **Internal endpoints** (:func:`is_internal`) are refused unless ``expose_debug``: every method of
   the ``Debug`` handler (``Debug.Health``, ``Debug.Stats``, Go's ``Debug.Log``/``Debug.Trace``), in
   any letter case, and gRPC's own services (``grpc.health.v1``, ``grpc.reflection``) or raw gRPC
   paths (an endpoint starting with ``/``). Internal endpoints leak process details and are not
   advertised in the registry, so no browser has a reason to call them.
2. **The allow-list** (:class:`AllowList`), when given: ``service`` or ``service:Endpoint`` patterns
   where ``*`` matches any run of characters (dots included), e.g. ``greeter``,
   ``greeter:Greeter.*``, ``*:Public.*``. The service is the full name called (namespace included).
   An empty list exposes nothing; no list (None) exposes every service.
3. **The authorize hook** (:data:`Authorize`): ``await authorize(access)`` with an :class:`Access`;
   ``True`` lets the call through, ``False`` refuses it, a raised ``MicroError`` is answered as it is
   (e.g. 401), anything else raised is a 500 and refuses (fail closed).

A refusal is a 403 from ``go.micro.api`` (Go Micro's auth wrapper answers ``errors.Forbidden``).
Also here: :class:`MissCache`, the bounded, short-lived memory of services the registry did not know.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping

import attrs

__all__ = ["Access", "AllowList", "Authorize", "MissCache", "is_internal", "parse_allow", "well_formed"]

_PATTERN = re.compile(r"[A-Za-z0-9_.\-*/]+\Z")
_INTERNAL_HANDLERS = frozenset({"debug"})
_INTERNAL_PREFIXES = ("grpc.",)  # grpc.health.v1.Health, grpc.reflection.v1alpha.ServerReflection


@attrs.frozen
class Access:
    """One request the authorize hook decides on.

    ``headers`` has every request header under its canonical name (repeated ones joined by ``,``),
    ``Authorization`` and ``Host`` included; ``peer`` is the client's ``(host, port)`` as the server
    saw it (None if unknown); ``websocket`` tells a stream from a unary ``POST``.
    """

    service: str
    endpoint: str
    method: str
    path: str
    headers: Mapping[str, str]
    peer: tuple[str, int] | None
    websocket: bool = False


Authorize = Callable[[Access], Awaitable[bool]]
"""``await authorize(access) -> bool``: True lets the request through, False answers 403."""


def is_internal(endpoint: str) -> bool:
    """An endpoint a gateway never exposes by default: the ``Debug`` handler (any letter case, any
    method, stray spaces or dots around it) and gRPC's own ``grpc.*`` services, named as an endpoint
    (``grpc.health.v1.Health.Check``) or as a raw gRPC path (``/grpc.health.v1.Health/Check``,
    ``/greeter.Debug/Stats``)."""
    folded = endpoint.strip().casefold()
    if folded.startswith("/"):
        service = folded[1:].partition("/")[0].strip()
        return service.startswith(_INTERNAL_PREFIXES) or service.rpartition(".")[2] in _INTERNAL_HANDLERS
    if folded.startswith(_INTERNAL_PREFIXES):
        return True
    return folded.split(".", 1)[0].strip() in _INTERNAL_HANDLERS


def well_formed(endpoint: str) -> bool:
    """``Handler.Method`` (both parts non-empty, no spaces), or a raw gRPC path ``/pkg.Service/Method``:
    the only shapes a Go Micro or trimicro server can route; anything else is refused at the gateway
    rather than sent to a service to be refused there."""
    if any(ch.isspace() for ch in endpoint):
        return False
    if endpoint.startswith("/"):
        service, sep, method = endpoint[1:].partition("/")
        return bool(service and sep and method and "/" not in method)
    handler, sep, method = endpoint.partition(".")
    return bool(handler and sep and method and "." not in method and "/" not in endpoint)


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")) + r"\Z", re.DOTALL)


@attrs.frozen
class _Rule:
    text: str
    service: re.Pattern[str]
    endpoint: re.Pattern[str] | None  # None: every endpoint


def _rule(text: str) -> _Rule:
    service, sep, endpoint = text.strip().partition(":")
    if not service or (sep and not endpoint) or ":" in endpoint:
        raise ValueError(f"allow pattern {text!r}: want SERVICE or SERVICE:Endpoint.Method")
    for part in (service, endpoint) if sep else (service,):
        if not _PATTERN.match(part):
            raise ValueError(f"allow pattern {text!r}: only letters, digits, '_', '-', '.', '/' and '*'")
    return _Rule(text.strip(), _glob(service), _glob(endpoint) if sep else None)


@attrs.frozen
class AllowList:
    """Service/endpoint patterns a gateway exposes; see the module docstring for the syntax."""

    rules: tuple[_Rule, ...]

    @classmethod
    def parse(cls, patterns: Iterable[str]) -> AllowList:
        """Patterns as given to ``allow=`` or ``--allow`` (each may hold several, comma-separated);
        ValueError names the first bad one."""
        texts = [p for item in patterns for p in item.split(",") if p.strip()]
        return cls(tuple(_rule(t) for t in texts))

    @property
    def patterns(self) -> tuple[str, ...]:
        return tuple(r.text for r in self.rules)

    def allows(self, service: str, endpoint: str) -> bool:
        return any(
            r.service.match(service) and (r.endpoint is None or r.endpoint.match(endpoint))
            for r in self.rules
        )


def parse_allow(value: AllowList | Iterable[str] | str | None) -> AllowList | None:
    """``Gateway(allow=...)``'s converter: None (no allow-list: everything not internal is exposed),
    an :class:`AllowList`, a comma-separated string, or an iterable of patterns."""
    if value is None or isinstance(value, AllowList):
        return value
    return AllowList.parse([value] if isinstance(value, str) else list(value))


@attrs.define(eq=False)
class MissCache:
    """Service names the registry did not know, each remembered for ``ttl`` seconds, at most ``size``
    of them (least recently asked for evicted first): a spray of random names costs one lookup per
    name per ``ttl``, and memory stays bounded whatever the attacker sends."""

    ttl: float = 5.0
    size: int = 10_000
    _expiry: OrderedDict[str, float] = attrs.field(factory=OrderedDict, init=False)

    def __len__(self) -> int:
        return len(self._expiry)

    def missing(self, name: str, now: float) -> bool:
        """``name`` was not found less than ``ttl`` ago."""
        expires = self._expiry.get(name)
        if expires is None:
            return False
        if expires <= now:
            del self._expiry[name]
            return False
        self._expiry.move_to_end(name)
        return True

    def add(self, name: str, now: float) -> None:
        if self.size <= 0 or self.ttl <= 0:
            return
        self._expiry[name] = now + self.ttl
        self._expiry.move_to_end(name)
        while len(self._expiry) > self.size:
            self._expiry.popitem(last=False)

    def forget(self, name: str) -> None:
        self._expiry.pop(name, None)
