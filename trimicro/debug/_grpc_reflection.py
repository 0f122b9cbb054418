"""gRPC server reflection (``grpc.reflection.v1`` and ``v1alpha``), so grpcurl and grpcui work.

Both versions share one wire format: a bidi stream of ``ServerReflectionRequest`` in and one
``ServerReflectionResponse`` out per request, hand-encoded here as the health messages are (the
protos are small and stable; depending on grpcio-reflection would pull in grpcio).

What it can describe comes from protobuf's descriptor pools: the default pool, where every
generated ``*_pb2`` module registers its file (a handler made by ``protoc-gen-trimicro`` imports
its ``_pb2``), the pools of the routes' own message types, and a private pool holding
``grpc/health/v1/health.proto`` so ``grpc.health.v1.Health`` can be described and called without
grpcio. A handler without protos (plain Python types on JSON) is listed by name but cannot be
described: there is no schema to give. ``Debug`` and other internal endpoints are never listed.

Lookups that find nothing answer an ``ErrorResponse`` (NOT_FOUND) on the stream, as grpc-go does;
a malformed request ends the call with INVALID_ARGUMENT.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from functools import cache
from typing import Any, Final

import attrs
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor

from .. import errors
from .._protowire import fields as _fields
from .._protowire import len_field as _bytes_field
from .._protowire import varint_field as _varint_field

__all__ = ["REFLECTION_PATHS", "GrpcReflection"]

REFLECTION_PATHS: Final = (
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
)
HEALTH_SERVICE: Final = "grpc.health.v1.Health"
_NOT_FOUND: Final = 5
_ID: Final = "grpc.reflection"


@cache
def _own_pool() -> descriptor_pool.DescriptorPool:
    """A private pool with grpc.health.v1 (what this package serves by hand)."""
    f = descriptor_pb2.FileDescriptorProto(
        name="grpc/health/v1/health.proto", package="grpc.health.v1", syntax="proto3"
    )
    f.message_type.add(name="HealthCheckRequest").field.add(
        name="service", number=1, type=9, label=1, json_name="service"
    )
    resp = f.message_type.add(name="HealthCheckResponse")
    status = resp.enum_type.add(name="ServingStatus")
    for number, name in enumerate(("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")):
        status.value.add(name=name, number=number)
    resp.field.add(
        name="status",
        number=1,
        type=14,
        label=1,
        type_name=".grpc.health.v1.HealthCheckResponse.ServingStatus",
        json_name="status",
    )
    svc = f.service.add(name="Health")
    svc.method.add(
        name="Check",
        input_type=".grpc.health.v1.HealthCheckRequest",
        output_type=".grpc.health.v1.HealthCheckResponse",
    )
    svc.method.add(
        name="Watch",
        input_type=".grpc.health.v1.HealthCheckRequest",
        output_type=".grpc.health.v1.HealthCheckResponse",
        server_streaming=True,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return pool


def _file_containing(pool: Any, symbol: str) -> Any:
    """The file defining ``symbol``; also for a method (``pkg.Service.Method``, as grpcurl asks to
    describe one), which not every pool implementation indexes."""
    try:
        return pool.FindFileContainingSymbol(symbol)
    except KeyError:
        parent, _, method = symbol.rpartition(".")
        if parent:
            service = pool.FindServiceByName(parent)  # KeyError: not found either
            if method in service.methods_by_name:
                return service.file
        raise


@attrs.define(eq=False)
class GrpcReflection:
    """Answers reflection requests from what ``services()`` lists and ``types()`` carries."""

    #: the gRPC service names to list (``greeter.Greeter``), internal ones already left out
    services: Callable[[], Iterable[str]]
    #: the routes' request and response types, whose descriptors' pools are searched too
    types: Callable[[], Iterable[Any]] = lambda: ()

    async def info(
        self, receive: Callable[[], Awaitable[bytes | None]], send: Callable[[bytes], Awaitable[None]]
    ) -> None:
        """``ServerReflectionInfo``: one response per request until the client half-closes."""
        while (request := await receive()) is not None:
            await send(self.answer(request))

    def answer(self, request: bytes) -> bytes:
        """The encoded ServerReflectionResponse to one encoded ServerReflectionRequest."""
        host, kind, arg = "", 0, b""
        try:
            for field, wire, value in _fields(request):
                if field == 1 and wire == 2:
                    host = value.decode("utf-8")
                elif field in (3, 4, 5, 6, 7) and wire == 2:
                    kind, arg = field, value
        except (ValueError, UnicodeDecodeError) as exc:
            raise errors.MicroError(_ID, 400, f"bad ServerReflectionRequest: {exc}") from None
        if kind == 0:
            raise errors.MicroError(_ID, 400, "ServerReflectionRequest asks nothing")
        try:
            body = self._respond(kind, arg)
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            body = _bytes_field(7, _varint_field(1, _NOT_FOUND) + _bytes_field(2, str(reason).encode()))
        head = _bytes_field(1, host.encode()) if host else b""
        return head + _bytes_field(2, request) + body

    # -- the four questions --
    def _respond(self, kind: int, arg: bytes) -> bytes:
        if kind == 7:  # list_services
            listed = b"".join(_bytes_field(1, _bytes_field(1, n.encode())) for n in self.service_names())
            return _bytes_field(6, listed)
        if kind == 3:  # file_by_filename
            return self._files(self._find(lambda p: p.FindFileByName(arg.decode()), arg.decode()))
        if kind == 4:  # file_containing_symbol
            symbol = arg.decode()
            return self._files(self._find(lambda p: _file_containing(p, symbol), symbol))
        if kind == 5:  # file_containing_extension {containing_type = 1; extension_number = 2}
            base, number = "", 0
            for field, _, value in _fields(arg):
                if field == 1:
                    base = value.decode()
                elif field == 2:
                    number = value
            what = f"extension {number} of {base}"
            ext = self._find(lambda p: p.FindExtensionByNumber(p.FindMessageTypeByName(base), number), what)
            return self._files(ext.file)
        if kind == 6:  # all_extension_numbers_of_type
            base = arg.decode()
            for pool in self._pools():
                try:
                    message = pool.FindMessageTypeByName(base)
                except KeyError:
                    continue
                numbers = b"".join(_varint_field(2, e.number) for e in pool.FindAllExtensions(message))
                return _bytes_field(5, _bytes_field(1, base.encode()) + numbers)
            raise KeyError(f"message type {base} not found")
        raise errors.MicroError(_ID, 400, "ServerReflectionRequest asks nothing")

    def service_names(self) -> list[str]:
        return sorted({*self.services(), HEALTH_SERVICE})

    def _pools(self) -> list[Any]:
        pools: list[Any] = [descriptor_pool.Default(), _own_pool()]
        for t in self.types():
            pool = getattr(getattr(getattr(t, "DESCRIPTOR", None), "file", None), "pool", None)
            if pool is not None and all(pool is not p for p in pools):
                pools.append(pool)
        return pools

    def _find(self, lookup: Callable[[Any], Any], what: str) -> Any:
        for pool in self._pools():
            try:
                return lookup(pool)
            except KeyError:
                continue
        raise KeyError(f"{what} not found")

    @staticmethod
    def _files(first: FileDescriptor) -> bytes:
        """A FileDescriptorResponse: the file and everything it imports, each once (grpc-go's way:
        one round trip instead of one per import)."""
        seen: dict[str, FileDescriptor] = {}
        todo = [first]
        while todo:
            f = todo.pop()
            if f.name not in seen:
                seen[f.name] = f
                todo.extend(f.dependencies)
        return _bytes_field(4, b"".join(_bytes_field(1, f.serialized_pb) for f in seen.values()))
