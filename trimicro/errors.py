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

import base64
import binascii
import http
import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ._protowire import fields, len_field

M = TypeVar("M")

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
    "UnknownPlugin",
    "bad_request",
    "conflict",
    "decode_details",
    "encode_any_details",
    "encode_details",
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

    ``details`` are gRPC's rich error details (``google.rpc.Status.details``: ``google.rpc.BadRequest``,
    ``ErrorInfo``, ``RetryInfo``, ... or any message of your own), as protobuf messages or
    ``(type_url, serialized)`` pairs; they are kept as pairs. They travel in
    ``grpc-status-details-bin`` after Go Micro's own error (so stock gRPC clients and grpc-go's
    ``status.FromError(err).Details()`` see them) and in ``Micro-Error-Details`` over mucp;
    :meth:`unpack` reads one back. Go Micro's JSON has no place for them: equality and
    :meth:`to_json` ignore them.
    """

    __slots__ = ("code", "detail", "details", "id", "status")

    def __init__(
        self,
        id: str = "",
        code: int = 500,
        detail: str = "",
        status: str | None = None,
        *,
        details: Iterable[Any] = (),
    ) -> None:
        self.id = id
        self.code = int(code)
        self.detail = detail
        self.status = _status_text(self.code) if status is None else status
        self.details: tuple[tuple[str, bytes], ...] = tuple(_as_any(d) for d in details)
        super().__init__(self.to_json())

    def unpack(self, message_type: type[M]) -> M | None:
        """The first detail of protobuf ``message_type`` (e.g. ``error_details_pb2.BadRequest``),
        parsed, or None when there is none."""
        name = message_type.DESCRIPTOR.full_name  # type: ignore[attr-defined]
        for url, value in self.details:
            if url.rpartition("/")[2] == name:
                return message_type.FromString(value)  # type: ignore[attr-defined, no-any-return]
        return None

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
        if self.details:
            return (_rebuild, (self.id, self.code, self.detail, self.status, self.details))
        return (MicroError, (self.id, self.code, self.detail, self.status))


def _rebuild(id: str, code: int, detail: str, status: str, details: Any) -> MicroError:
    return MicroError(id, code, detail, status, details=details)


def _as_any(detail: Any) -> tuple[str, bytes]:
    """A detail as ``(type_url, serialized)``: a protobuf message is packed as ``Any.Pack`` does."""
    if isinstance(detail, tuple) and len(detail) == 2:
        url, value = detail
        if isinstance(url, str) and isinstance(value, bytes | bytearray):
            return url, bytes(value)
    descriptor = getattr(detail, "DESCRIPTOR", None)
    if descriptor is not None and hasattr(detail, "SerializeToString"):
        return "type.googleapis.com/" + descriptor.full_name, detail.SerializeToString()
    raise TypeError(f"an error detail must be a protobuf message or (type_url, bytes), got {detail!r}")


# -- rich details on the wire: google.rpc.Status {details = 3: repeated Any {type_url = 1, value = 2}}
def _length_delimited(data: bytes) -> list[tuple[int, bytes]]:
    return [(number, value) for number, wire, value in fields(data) if wire == 2]


#: the details' Any naming Go Micro's own error: it is the error itself, not one of its details
_GO_MICRO_ERROR_TYPE_URL = "type.googleapis.com/errors.Error"


def encode_any_details(details: Iterable[tuple[str, bytes]]) -> bytes:
    """``google.rpc.Status.details`` entries (field 3) for ``(type_url, value)`` pairs."""
    return b"".join(len_field(3, len_field(1, url.encode()) + len_field(2, value)) for url, value in details)


def encode_details(details: Iterable[tuple[str, bytes]]) -> str:
    """``Micro-Error-Details``: base64 (unpadded) of a ``google.rpc.Status`` holding only ``details``."""
    return base64.b64encode(encode_any_details(details)).decode("ascii").rstrip("=")


def decode_details(value: str | None) -> tuple[tuple[str, bytes], ...]:
    """The rich details of a base64 ``google.rpc.Status`` (``Micro-Error-Details`` or
    ``grpc-status-details-bin``), without Go Micro's own error; () when absent or malformed."""
    if not value:
        return ()
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
        out = []
        for number, any_ in _length_delimited(raw):
            if number != 3:
                continue
            parts = dict(_length_delimited(any_))
            url = parts.get(1, b"").decode("utf-8")
            if url and url != _GO_MICRO_ERROR_TYPE_URL:
                out.append((url, parts.get(2, b"")))
        return tuple(out)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return ()


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


class UnknownPlugin(TrimicroError, ValueError):
    """No plugin of that kind has that name (``--registry foo`` with nothing installed as ``foo``).

    A ValueError, like any other bad option value, so the CLI prints it as one line; its message
    lists the names that are installed.
    """


def parse(text: str | bytes, *, default_id: str = "", details: str | None = None) -> MicroError:
    """Parse a ``Micro-Error`` value: Go Micro's JSON, or a plain string (-> 500 with that detail);
    ``details``: the ``Micro-Error-Details`` beside it."""
    err = _parse(text, default_id)
    if details:
        err.details = decode_details(details)
    return err


def _parse(text: str | bytes, default_id: str) -> MicroError:
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
