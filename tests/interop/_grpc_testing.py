"""grpc.testing.TestService as a trimicro handler, and the one-port server the interop suite calls.

The behaviour follows gRPC's interop spec (grpc/doc/interop-test-descriptions.md, "Server"): payloads
of the requested sizes (zero bytes, ``COMPRESSABLE``), ``response_status`` echoed as the call's
status, ``x-grpc-test-echo-initial`` echoed as a response header and ``x-grpc-test-echo-trailing-bin``
as a trailer, ``interval_us`` honoured between streamed responses, HalfDuplexCall answering only
after the client half-closes, and UnimplementedCall left unimplemented (UNIMPLEMENTED).

trimicro's errors carry HTTP-style codes, so an echoed gRPC status goes out through the code that
maps to it (:func:`trimicro.errors.to_grpc_status`); UNKNOWN (2), what the standard cases use, is
any unmapped code. gRPC codes with no HTTP counterpart here (1, 10, 11, 15) come back as UNKNOWN.

Compression: ``response_compressed`` asks for a gzip reply (``Context.set_compression``);
``expect_compressed`` is not checked (a handler does not see whether its request was compressed).
grpc-go's interop client has no compression cases anyway (tests/interop/test_grpc_compression.py
covers compression against grpcio).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import trio

import trimicro.errors as errors
from tests.protos.grpc_testing_pb2 import (
    EchoStatus,
    Empty,
    Payload,
    ResponseParameters,
    SimpleRequest,
    SimpleResponse,
    StreamingInputCallRequest,
    StreamingInputCallResponse,
    StreamingOutputCallRequest,
    StreamingOutputCallResponse,
)
from trimicro.context import Context
from trimicro.server import Router, Server
from trimicro.server._grpc import GrpcServer
from trimicro.stream import Stream
from trimicro.transport.http import HttpTransport

__all__ = ["SERVER_ID", "TestService", "serve_test_service"]

SERVER_ID: Final = "trimicro-interop"
ECHO_INITIAL: Final = "X-Grpc-Test-Echo-Initial"
ECHO_TRAILING: Final = "X-Grpc-Test-Echo-Trailing-Bin"
#: gRPC status -> the HTTP-style code whose gRPC status it is (inverse of errors.to_grpc_status)
_HTTP_FOR_GRPC: Final = {3: 400, 16: 401, 7: 403, 5: 404, 4: 408, 6: 409, 9: 412, 8: 429, 13: 500, 12: 501, 14: 503}  # fmt: skip
_UNMAPPED: Final = 520  # not in the map: to_grpc_status gives UNKNOWN (2)


def status_error(status: EchoStatus) -> errors.MicroError:
    """The error whose gRPC status and message are ``status``'s."""
    return errors.MicroError(SERVER_ID, _HTTP_FOR_GRPC.get(status.code, _UNMAPPED), status.message)


def _payload(size: int) -> Payload:
    if size < 0:
        raise errors.bad_request(SERVER_ID, "negative response size %d", size)
    return Payload(body=bytes(size))


def _echo_metadata(ctx: Context) -> None:
    value = ctx.metadata.get(ECHO_INITIAL)
    if value is not None:
        ctx.set_header(ECHO_INITIAL, value)
    value = ctx.metadata.get(ECHO_TRAILING)
    if value is not None:
        ctx.set_trailer(ECHO_TRAILING, value)


class TestService:
    """grpc.testing.TestService (served as handler ``TestService``: path /grpc.testing.TestService/*)."""

    __test__ = False  # not a pytest class

    async def EmptyCall(self, req: Empty, ctx: Context) -> Empty:
        _echo_metadata(ctx)
        return Empty()

    async def UnaryCall(self, req: SimpleRequest, ctx: Context) -> SimpleResponse:
        _echo_metadata(ctx)
        if req.response_compressed.value:
            ctx.set_compression("gzip")
        if req.HasField("response_status") and req.response_status.code != 0:
            raise status_error(req.response_status)
        rsp = SimpleResponse(payload=_payload(req.response_size))
        if req.fill_server_id:
            rsp.server_id = SERVER_ID
        return rsp

    async def CacheableUnaryCall(self, req: SimpleRequest, ctx: Context) -> SimpleResponse:
        return await self.UnaryCall(req, ctx)

    async def StreamingOutputCall(
        self,
        req: StreamingOutputCallRequest,
        stream: Stream[StreamingOutputCallRequest, StreamingOutputCallResponse],
        ctx: Context,
    ) -> None:
        _echo_metadata(ctx)
        await self._respond(req, stream)

    async def StreamingInputCall(
        self, stream: Stream[StreamingInputCallRequest, StreamingInputCallResponse], ctx: Context
    ) -> StreamingInputCallResponse:
        _echo_metadata(ctx)
        total = 0
        async for req in stream:
            total += len(req.payload.body)
        return StreamingInputCallResponse(aggregated_payload_size=total)

    async def FullDuplexCall(
        self, stream: Stream[StreamingOutputCallRequest, StreamingOutputCallResponse], ctx: Context
    ) -> None:
        _echo_metadata(ctx)
        async for req in stream:
            await self._respond(req, stream)

    async def HalfDuplexCall(
        self, stream: Stream[StreamingOutputCallRequest, StreamingOutputCallResponse], ctx: Context
    ) -> None:
        _echo_metadata(ctx)
        requests = [req async for req in stream]
        for req in requests:
            await self._respond(req, stream)

    async def UnimplementedCall(self, req: Empty, ctx: Context) -> Empty:
        raise errors.not_implemented(SERVER_ID, "UnimplementedCall is not implemented")

    @staticmethod
    async def _respond(
        req: StreamingOutputCallRequest,
        stream: Stream[StreamingOutputCallRequest, StreamingOutputCallResponse],
    ) -> None:
        if req.HasField("response_status") and req.response_status.code != 0:
            raise status_error(req.response_status)
        params: list[ResponseParameters] = list(req.response_parameters)
        for p in params:
            if p.interval_us > 0:
                await trio.sleep(p.interval_us / 1e6)
            await stream.send(StreamingOutputCallResponse(payload=_payload(p.size)))


@asynccontextmanager
async def serve_test_service(service: TestService | None = None) -> AsyncIterator[str]:
    """Serve TestService on trimicro's one port (mucp/HTTP and h2c gRPC) on 127.0.0.1; yields host:port."""
    router = Router()
    router.handle(service or TestService(), name="TestService")
    server = Server("grpc.testing", router, HttpTransport(), "127.0.0.1:0")
    server.h2_handler = GrpcServer(server).handle_connection
    async with trio.open_nursery() as nursery:
        address: str = await nursery.start(server.serve)
        try:
            yield address
        finally:
            nursery.cancel_scope.cancel()
