"""``grpc.health.v1.Health`` (Check and Watch) without grpcio: the two tiny messages are hand-encoded.

``HealthCheckRequest {string service = 1}`` and ``HealthCheckResponse {ServingStatus status = 1}``
(UNKNOWN 0, SERVING 1, NOT_SERVING 2, SERVICE_UNKNOWN 3). The empty service name is the server as a
whole. As in grpc's reference health service, Check answers NOT_FOUND for an unknown name and Watch
answers SERVICE_UNKNOWN (and keeps watching: the name may appear later).

Watch sends the current status at once and then every change, for as long as the client stays.
A watch would otherwise hold a drain open for its whole grace period, so :meth:`GrpcHealth.shutdown`
(the server's drain hook) sends each watcher its last status and ends the stream with UNAVAILABLE,
which grpc clients answer by watching another node.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import attrs
import trio

from .. import errors
from .._protowire import encode_varint, fields
from ..errors import MicroError

__all__ = [
    "CHECK_PATH",
    "NOT_SERVING",
    "SERVICE_UNKNOWN",
    "SERVING",
    "WATCH_PATH",
    "GrpcHealth",
    "decode_request",
    "encode_response",
]

CHECK_PATH: Final = "/grpc.health.v1.Health/Check"
WATCH_PATH: Final = "/grpc.health.v1.Health/Watch"
UNKNOWN: Final = 0
SERVING: Final = 1
NOT_SERVING: Final = 2
SERVICE_UNKNOWN: Final = 3


def decode_request(data: bytes) -> str:
    """The ``service`` field of a HealthCheckRequest (unknown fields skipped); ValueError if malformed."""
    service = ""
    for number, wire, value in fields(data):
        if number == 1 and wire == 2:
            service = value.decode("utf-8")
    return service


def encode_response(status: int) -> bytes:
    """A HealthCheckResponse; proto3 omits the default (UNKNOWN) value."""
    return b"\x08" + encode_varint(status) if status else b""


@attrs.define(eq=False)
class GrpcHealth:
    """Serving status per service name; ``""`` (the whole server) is SERVING from the start."""

    statuses: dict[str, int] = attrs.field(factory=lambda: {"": SERVING})
    #: set (and replaced) on every change: what watchers wait for
    _changed: trio.Event = attrs.field(factory=trio.Event, init=False)
    #: the server is draining: watches end
    _closed: bool = attrs.field(default=False, init=False)

    def set_status(self, service: str, status: int) -> None:
        if self.statuses.get(service) != status:
            self.statuses[service] = status
            self._notify()

    def shutdown(self) -> None:
        """End every Watch (after its last status): the server drains."""
        self._closed = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    @staticmethod
    def _service(request: bytes) -> str:
        try:
            return decode_request(request)
        except (ValueError, UnicodeDecodeError) as exc:
            raise errors.bad_request("grpc.health.v1", "bad HealthCheckRequest: %s", exc) from None

    async def check(self, request: bytes) -> bytes:
        """The Check method on raw protobuf bytes; raises MicroError for bad input/unknown services."""
        service = self._service(request)
        status = self.statuses.get(service)
        if status is None:
            raise MicroError("grpc.health.v1", 404, f"unknown service {service!r}")
        return encode_response(status)

    async def watch(
        self, receive: Callable[[], Awaitable[bytes | None]], send: Callable[[bytes], Awaitable[None]]
    ) -> None:
        """The Watch method (server streaming) on raw protobuf bytes: the status now, then each change."""
        request = await receive()
        if request is None:
            raise errors.bad_request("grpc.health.v1", "Watch needs a HealthCheckRequest")
        service = self._service(request)
        sent: int | None = None
        while True:
            changed = self._changed
            status = self.statuses.get(service, SERVICE_UNKNOWN)
            if status != sent:
                await send(encode_response(status))
                sent = status
            if self._closed:
                raise MicroError("grpc.health.v1", 503, "server is shutting down")
            await changed.wait()
