"""gRPC-over-HTTP/2 header rules, sans-IO: paths, content types, metadata, ``grpc-message``.

One place owns every translation between Go Micro's mucp vocabulary (``Micro-Endpoint``, ``Micro-Error``
JSON) and gRPC's (``/pkg.Service/Method``, ``grpc-status``/``grpc-message``), so the server and the
client transport agree by construction. The header names and reserved sets both sides use, and the
``Timeout`` <-> ``grpc-timeout`` codecs, are in trimicro/_metadata.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

from .._metadata import CARRIED_BY_GRPC, CONNECTION_SPECIFIC, GRPC_RESERVED, canonical
from ..errors import MicroError, decode_details, from_grpc_status, parse, to_grpc_status
from ._grpc_status import decode_status_details, encode_status_details

__all__ = [
    "GRPC_CONTENT_TYPES",
    "Status",
    "check_metadata",
    "decode_grpc_message",
    "encode_grpc_message",
    "endpoint_for_path",
    "error_from_status",
    "grpc_content_type",
    "incoming_metadata",
    "mucp_content_type",
    "outgoing_metadata",
    "path_for_endpoint",
    "status_details_for_error",
    "status_for_error",
]


class Status:
    """gRPC status codes used by trimicro (the full list is in grpc/doc/statuscodes.md)."""

    OK: Final = 0
    CANCELLED: Final = 1
    UNKNOWN: Final = 2
    INVALID_ARGUMENT: Final = 3
    DEADLINE_EXCEEDED: Final = 4
    NOT_FOUND: Final = 5
    RESOURCE_EXHAUSTED: Final = 8
    UNIMPLEMENTED: Final = 12
    INTERNAL: Final = 13
    UNAVAILABLE: Final = 14


# -- grpc-message: percent-encoded UTF-8 --
_SAFE: Final = frozenset(range(0x20, 0x7F)) - {ord("%")}


def encode_grpc_message(text: str) -> str:
    """Percent-encode as the gRPC spec says: bytes outside printable ASCII, and ``%`` itself."""
    raw = text.encode("utf-8", "surrogateescape")
    if all(b in _SAFE for b in raw):
        return text
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in raw)


def decode_grpc_message(value: str) -> str:
    """Undo :func:`encode_grpc_message`; malformed escapes are kept literally (the spec says so)."""
    if "%" not in value:
        return value
    out = bytearray()
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch == "%" and i + 2 < n and _is_hex(value[i + 1 : i + 3]):
            out.append(int(value[i + 1 : i + 3], 16))
            i += 3
            continue
        out += ch.encode("utf-8", "surrogateescape")
        i += 1
    return out.decode("utf-8", "replace")


def _is_hex(s: str) -> bool:
    return len(s) == 2 and all(c in "0123456789abcdefABCDEF" for c in s)


# -- errors <-> status --
def status_for_error(err: MicroError) -> tuple[int, str]:
    """``(grpc-status, grpc-message)`` for a MicroError: the message is the plain detail, what a stock
    gRPC client shows; the whole error travels in :func:`status_details_for_error`."""
    return to_grpc_status(err.code), encode_grpc_message(err.detail)


def status_details_for_error(err: MicroError) -> str:
    """``grpc-status-details-bin`` for a MicroError: Go Micro v5's encoding (see ``_grpc_status``)."""
    return encode_status_details(to_grpc_status(err.code), err.detail, err)


def error_from_status(status: int, message: str, *, default_id: str, details: str | None = None) -> MicroError:
    """A MicroError from trailers: Go Micro's error from ``grpc-status-details-bin`` when present,
    else its JSON when ``grpc-message`` is one (older trimicro and Go Micro servers), else built from
    the code and message."""
    if details:
        found = decode_status_details(details)
        if found is not None:
            return found
    text = decode_grpc_message(message)
    if text.lstrip().startswith("{"):
        err = parse(text, default_id=default_id, details=details)
        if err.detail or err.id != default_id:
            return err
    # a stock server's rich status (google.rpc.Status with details) keeps its details
    return MicroError(
        default_id,
        from_grpc_status(status),
        text or f"grpc status {status}",
        details=decode_details(details),
    )


# -- paths --
def path_for_endpoint(service: str, endpoint: str) -> str:
    """Go Micro's ``methodToGRPC``: ``(greeter, Greeter.Hello)`` -> ``/greeter.Greeter/Hello``.

    An endpoint that already starts with ``/`` is a full gRPC path and is used as is."""
    if not endpoint or endpoint.startswith("/"):
        return endpoint
    parts = endpoint.split(".")
    if len(parts) != 2:
        return endpoint
    if not service:
        return f"/{parts[0]}/{parts[1]}"
    return f"/{service}.{parts[0]}/{parts[1]}"


def endpoint_for_path(path: str, grpc_paths: Mapping[str, str]) -> str | None:
    """``/greeter.Greeter/Hello`` -> ``Greeter.Hello``; explicit registrations win (Go Micro's server)."""
    found = grpc_paths.get(path)
    if found is not None:
        return found
    if not path.startswith("/"):
        return None
    service, sep, method = path[1:].partition("/")
    if not sep or not service or not method or "/" in method:
        return None
    return f"{service.rpartition('.')[2]}.{method}"


# -- content types --
_TO_GRPC_CT: Final = {
    "application/protobuf": "application/grpc+proto",
    "application/proto": "application/grpc+proto",
    "application/x-protobuf": "application/grpc+proto",
    "application/octet-stream": "application/grpc+proto",
    "application/proto-rpc": "application/grpc+proto",
    "application/json": "application/grpc+json",
    "application/json-rpc": "application/grpc+json",
}
GRPC_CONTENT_TYPES: Final = frozenset({"application/grpc", "application/grpc+proto", "application/grpc+json"})


def grpc_content_type(content_type: str | None) -> str:
    """mucp Content-Type -> the gRPC one; gRPC types pass through; unknown -> ``application/grpc``."""
    key = (content_type or "").partition(";")[0].strip().lower()
    if key in GRPC_CONTENT_TYPES:
        return key
    return _TO_GRPC_CT.get(key, "application/grpc")


def mucp_content_type(grpc_ct: str) -> str:
    """``application/grpc+json`` -> ``application/json``; every protobuf flavour -> ``application/protobuf``."""
    return "application/json" if grpc_ct.endswith("+json") else "application/protobuf"


# -- metadata --
def incoming_metadata(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Application metadata from HTTP/2 headers, canonical names (``x-user`` -> ``X-User``).

    Binary (``-bin``) values stay base64 text; repeated keys are joined with ``,`` as HTTP allows."""
    out: dict[str, str] = {}
    for name, value in headers:
        if name.startswith(":") or name in GRPC_RESERVED:
            continue
        key = canonical(name)
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
#: metadata names already found to be tokens (bounded: names are few, but a caller could vary them)
_GOOD_NAMES: set[str] = set()
_GOOD_NAMES_MAX = 1024


def check_metadata(name: str, value: str) -> str:
    """The value to send for metadata ``name`` (surrounding blanks stripped), or ValueError.

    HTTP/2 wants lower-case token names and values free of CR, LF and NUL. We check here, once,
    because our HTTP/2 layer (``_http2``) sends headers as given, and because a peer that
    receives a bad header may tear down the whole shared connection."""
    if name not in _GOOD_NAMES:
        if _TOKEN.fullmatch(name) is None:
            raise ValueError(f"metadata name {name!r} is not a lower-case HTTP token")
        if len(_GOOD_NAMES) < _GOOD_NAMES_MAX:
            _GOOD_NAMES.add(name)
    if "\r" in value or "\n" in value or "\0" in value:  # memchr each: faster than a regex class
        raise ValueError(f"metadata {name!r}: value contains CR, LF or NUL")
    return value.strip(" \t")


def outgoing_metadata(header: Mapping[str, str]) -> list[tuple[str, str]]:
    """mucp headers -> lower-case gRPC metadata, dropping what the path/content type/deadline carry.

    ValueError for a name or value HTTP/2 cannot carry (:func:`check_metadata`)."""
    out = []
    for name, value in header.items():
        if name in CARRIED_BY_GRPC:
            continue
        lname = name.lower()
        if (
            lname in GRPC_RESERVED
            or lname in CONNECTION_SPECIFIC
            or lname.startswith(":")
            or lname.startswith("grpc-")
        ):
            continue
        out.append((lname, check_metadata(lname, value)))
    return out
