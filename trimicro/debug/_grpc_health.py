"""``grpc.health.v1.Health/Check`` without grpcio: the two tiny messages are hand-encoded protobuf.

``HealthCheckRequest {string service = 1}`` and ``HealthCheckResponse {ServingStatus status = 1}``
(UNKNOWN 0, SERVING 1, NOT_SERVING 2, SERVICE_UNKNOWN 3). The empty service name is the server as a
whole; an unknown name answers NOT_FOUND, as grpc's reference health service does.
"""

from __future__ import annotations

from typing import Final

import attrs

from .. import errors
from ..codec import encode_varint, read_varint
from ..errors import MicroError

__all__ = ["CHECK_PATH", "NOT_SERVING", "SERVING", "GrpcHealth", "decode_request", "encode_response"]

CHECK_PATH: Final = "/grpc.health.v1.Health/Check"
UNKNOWN: Final = 0
SERVING: Final = 1
NOT_SERVING: Final = 2


def decode_request(data: bytes) -> str:
    """The ``service`` field of a HealthCheckRequest (unknown fields skipped); ValueError if malformed."""
    pos, service = 0, ""
    while pos < len(data):
        key, pos = read_varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = read_varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, pos = read_varint(data, pos)
            if pos + size > len(data):
                raise ValueError("truncated field")
            if field == 1:
                service = data[pos : pos + size].decode("utf-8")
            pos += size
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated field")
    return service


def encode_response(status: int) -> bytes:
    """A HealthCheckResponse; proto3 omits the default (UNKNOWN) value."""
    return b"\x08" + encode_varint(status) if status else b""


@attrs.define(eq=False)
class GrpcHealth:
    """Serving status per service name; ``""`` (the whole server) is SERVING from the start."""

    statuses: dict[str, int] = attrs.field(factory=lambda: {"": SERVING})

    def set_status(self, service: str, status: int) -> None:
        self.statuses[service] = status

    async def check(self, request: bytes) -> bytes:
        """The Check method on raw protobuf bytes; raises MicroError for bad input/unknown services."""
        try:
            service = decode_request(request)
        except (ValueError, UnicodeDecodeError) as exc:
            raise errors.bad_request("grpc.health.v1", "bad HealthCheckRequest: %s", exc) from None
        status = self.statuses.get(service)
        if status is None:
            raise MicroError("grpc.health.v1", 404, f"unknown service {service!r}")
        return encode_response(status)
