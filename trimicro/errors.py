"""Errors: one tree, Go Micro's wire shape.

The hierarchy, written down once::

    TrimicroError                       base of everything trimicro raises
    ├── MicroError                      an RPC error with Go Micro's {id, code, detail, status};
    │                                   travels in ``Micro-Error`` (mucp) or ``grpc-message`` (gRPC)
    ├── CodecError                      a body that cannot be encoded/decoded (-> 400 on the wire)
    ├── ProtocolError                   malformed frames / HTTP on a transport (connection is closed)
    ├── TransportError                  a connection could not be made or died (retryable)
    │   └── AttemptTimeout              one attempt got no answer in its per-attempt timeout
    ├── RegistryError                   the registry is unreachable or answered badly
    │   └── ServiceNotFound             no nodes for a service name
    └── BrokerError                     the broker is unreachable or refused a message

``MicroError`` is what handlers raise to send a specific error and what clients catch. The helpers
(:func:`bad_request`, :func:`not_found`, :func:`timeout`, ...) mirror Go Micro's ``errors`` package.
"""

from __future__ import annotations

import http
import json
from collections.abc import Callable
from typing import Any

__all__ = [
    "AttemptTimeout",
    "BrokerError",
    "CodecError",
    "MicroError",
    "ProtocolError",
    "RegistryError",
    "ServiceNotFound",
    "TransportError",
    "TrimicroError",
    "bad_request",
    "conflict",
    "forbidden",
    "from_grpc_status",
    "internal_server_error",
    "method_not_allowed",
    "not_found",
    "not_implemented",
    "parse",
    "service_unavailable",
    "timeout",
    "to_grpc_status",
    "unauthorized",
]


class TrimicroError(Exception):
    """Base class of every error trimicro raises."""


def _status_text(code: int) -> str:
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return ""


class MicroError(TrimicroError):
    """An RPC error as Go Micro's ``errors.Error``: ``{id, code, detail, status}``.

    ``code`` follows HTTP status codes; ``status`` is the HTTP reason phrase for it.
    """

    __slots__ = ("code", "detail", "id", "status")

    def __init__(self, id: str = "", code: int = 500, detail: str = "", status: str | None = None) -> None:
        self.id = id
        self.code = int(code)
        self.detail = detail
        self.status = _status_text(self.code) if status is None else status
        super().__init__(self.to_json())

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "code": self.code, "detail": self.detail, "status": self.status}

    def to_json(self) -> str:
        """Go Micro's JSON, field order as Go's encoder writes it."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MicroError):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.id, self.code, self.detail, self.status))

    def __repr__(self) -> str:
        return f"MicroError(id={self.id!r}, code={self.code}, detail={self.detail!r}, status={self.status!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (MicroError, (self.id, self.code, self.detail, self.status))


class CodecError(TrimicroError):
    """A message body could not be encoded or decoded."""


class ProtocolError(TrimicroError):
    """The peer broke the wire protocol (malformed HTTP, bad framing, oversized frame).

    ``code`` is the HTTP-style code to report when a reply is still possible (400 malformed,
    408 header timeout, 413 body too large, 431 headers too large).
    """

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.code = code


class TransportError(TrimicroError):
    """A connection could not be established or was lost."""


class AttemptTimeout(TransportError):
    """One attempt of a call got no answer within its per-attempt timeout (``client_attempt_timeout``).

    A transport error, not a 408: the call's own deadline has not passed, the node is suspect (it took
    the connection and said nothing), so the call is retried on another node and the node counts as
    failing for outlier ejection.
    """


class RegistryError(TrimicroError):
    """The registry could not be reached or returned something unusable."""


class ServiceNotFound(RegistryError):
    """The registry knows no node for the requested service."""


class BrokerError(TrimicroError):
    """The broker could not be reached or refused a message."""


def parse(text: str | bytes, *, default_id: str = "") -> MicroError:
    """Parse a ``Micro-Error`` value: Go Micro's JSON, or a plain string (-> 500 with that detail)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            code = obj.get("code", 500)
            try:
                code = int(code)
            except (TypeError, ValueError):
                code = 500
            return MicroError(
                str(obj.get("id", "") or default_id),
                code or 500,
                str(obj.get("detail", "")),
                obj.get("status") if isinstance(obj.get("status"), str) else None,
            )
    return MicroError(default_id, 500, text)


def _make(code: int) -> Callable[..., MicroError]:
    def helper(id: str, fmt: str = "", *args: Any) -> MicroError:
        return MicroError(id, code, fmt % args if args else fmt)

    return helper


bad_request = _make(400)
unauthorized = _make(401)
forbidden = _make(403)
not_found = _make(404)
method_not_allowed = _make(405)
timeout = _make(408)
conflict = _make(409)
internal_server_error = _make(500)
not_implemented = _make(501)
service_unavailable = _make(503)


# Go Micro code (HTTP) <-> gRPC status code.
_TO_GRPC = {400: 3, 401: 16, 403: 7, 404: 5, 408: 4, 409: 6, 412: 9, 429: 8, 500: 13, 501: 12, 503: 14}
_FROM_GRPC = {v: k for k, v in _TO_GRPC.items()} | {0: 200, 1: 499, 2: 500, 10: 409, 11: 400, 15: 500}


def to_grpc_status(code: int) -> int:
    """Map a Go Micro (HTTP) error code to a gRPC status code; unknown -> UNKNOWN (2)."""
    return _TO_GRPC.get(code, 2)


def from_grpc_status(status: int) -> int:
    """Map a gRPC status code to a Go Micro (HTTP) error code; unknown -> 500."""
    return _FROM_GRPC.get(status, 500)
