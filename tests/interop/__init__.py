"""Shared pieces for gRPC tests: the greeter handler (tests/protos/greeter.proto) and a bare h2 server.

``serve_grpc`` serves a Router through :class:`GrpcServer` on a plain trio TCP listener, so the gRPC
side is tested without the HTTP/1.1 transport's preface sniffing in the way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio

import trimicro.errors as errors
from tests.protos.greeter_pb2 import (
    EchoMessage,
    HelloRequest,
    HelloResponse,
    Num,
    SlowRequest,
    SlowResponse,
    StreamRequest,
    StreamResponse,
    Total,
)
from trimicro.context import Context
from trimicro.server import Router, Server
from trimicro.server._grpc import GrpcServer, response_metadata
from trimicro.stream import Stream


class Greeter:
    """The interop greeter; records what happened to slow and streaming handlers."""

    def __init__(self) -> None:
        self.cancelled = 0
        self.started = trio.Event()
        self.last_metadata: dict[str, str] = {}
        self.streamed = 0

    async def Hello(self, req: HelloRequest, ctx: Context) -> HelloResponse:
        self.last_metadata = dict(ctx.metadata)
        response_metadata()["x-served-by"] = "trimicro"
        if "X-User" in ctx.metadata:
            response_metadata()["x-seen-user"] = ctx.metadata["X-User"]
        return HelloResponse(greeting=f"Hello {req.name}")

    async def Fail(self, req: HelloRequest, ctx: Context) -> HelloResponse:
        if req.name == "boom":
            raise RuntimeError("boom")
        raise errors.bad_request("greeter", "bad name: %s", req.name)

    async def Slow(self, req: SlowRequest, ctx: Context) -> SlowResponse:
        self.started.set()
        try:
            await trio.sleep(req.sleep_ms / 1000)
        except trio.Cancelled:
            self.cancelled += 1
            raise
        return SlowResponse(slept_ms=req.sleep_ms)

    async def Stream(
        self, req: StreamRequest, stream: Stream[StreamRequest, StreamResponse], ctx: Context
    ) -> None:
        self.started.set()
        try:
            for i in range(req.count):
                await stream.send(StreamResponse(count=i, message="x" * (1024 if req.count > 1000 else 8)))
                self.streamed += 1
            if req.count < 0:  # one message, then hang until cancelled
                await stream.send(StreamResponse(count=0, message="hang"))
                await trio.sleep_forever()
        except trio.Cancelled:
            self.cancelled += 1
            raise

    async def Sum(self, stream: Stream[Num, Total], ctx: Context) -> None:
        total = count = 0
        async for num in stream:
            total += num.value
            count += 1
            if num.value < 0:
                raise errors.bad_request("greeter", "negative number %d", num.value)
        await stream.send(Total(sum=total, count=count))

    async def Echo(self, stream: Stream[EchoMessage, EchoMessage], ctx: Context) -> None:
        self.started.set()
        try:
            async for msg in stream:
                if msg.text == "fail":
                    raise errors.conflict("greeter", "echo refused %d", msg.seq)
                await stream.send(msg)
        except trio.Cancelled:
            self.cancelled += 1
            raise


@asynccontextmanager
async def serve_grpc(
    handler: Any = None, *, ssl_context: Any = None, grpc_service: str | None = None, **kw: Any
) -> AsyncIterator[tuple[str, GrpcServer, Any]]:
    """``(address, grpc_server, handler)`` for a Router holding ``handler`` (a fresh Greeter by
    default; ``grpc_service`` names its proto service, as generated code does)."""
    handler = handler if handler is not None else Greeter()
    router = Router()
    router.handle(handler, grpc_service=grpc_service)
    server = Server("greeter", router, transport=None)  # type: ignore[arg-type]
    grpc_server = GrpcServer(server, **kw)

    async def on_connection(stream: trio.SocketStream) -> None:
        if ssl_context is not None:
            tls = trio.SSLStream(stream, ssl_context, server_side=True)
            try:
                await tls.do_handshake()
            except trio.BrokenResourceError:
                return
            await grpc_server.handle_connection(tls, b"")
        else:
            await grpc_server.handle_connection(stream, b"")

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, on_connection, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        try:
            yield f"127.0.0.1:{port}", grpc_server, handler
        finally:
            nursery.cancel_scope.cancel()
