"""grpcio, the C-core gRPC: the blocking API (thread pool server, thread-per-caller client) and grpc.aio."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent import futures
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import grpc
import grpc.aio

from tests.protos import greeter_pb2_grpc as rpc
from tests.protos.greeter_pb2 import EchoMessage, HelloRequest, HelloResponse, StreamRequest, StreamResponse

# Keep every channel on its own TCP connection (grpc shares subchannels between identical channels).
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]
# Enough workers that 1,000 open streams each hold a thread (the sync server's model).
MAX_WORKERS = 1100


class SyncGreeter(rpc.GreeterServicer):
    def Hello(self, request: HelloRequest, context: Any) -> HelloResponse:
        return HelloResponse(greeting="Hello " + request.name)

    def Stream(self, request: StreamRequest, context: Any) -> Iterator[StreamResponse]:
        for i in range(request.count):
            yield StreamResponse(count=i, message="hello")

    def Echo(self, request_iterator: Iterator[EchoMessage], context: Any) -> Iterator[EchoMessage]:
        yield from request_iterator


class AioGreeter(rpc.GreeterServicer):
    async def Hello(self, request: HelloRequest, context: Any) -> HelloResponse:  # type: ignore[override]
        return HelloResponse(greeting="Hello " + request.name)

    async def Stream(self, request: StreamRequest, context: Any) -> AsyncIterator[StreamResponse]:  # type: ignore[override]
        for i in range(request.count):
            yield StreamResponse(count=i, message="hello")

    async def Echo(self, request_iterator: Any, context: Any) -> AsyncIterator[EchoMessage]:  # type: ignore[override]
        async for msg in request_iterator:
            yield msg


def serve_sync(announce: Callable[[int], None]) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=MAX_WORKERS), maximum_concurrent_rpcs=None)
    rpc.add_GreeterServicer_to_server(SyncGreeter(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    announce(port)
    server.wait_for_termination()


async def serve_aio(announce: Callable[[int], None]) -> None:
    server = grpc.aio.server()
    rpc.add_GreeterServicer_to_server(AioGreeter(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    announce(port)
    await server.wait_for_termination()


class SyncClient:
    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.stub = rpc.GreeterStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def unary(self, name: str) -> None:
        rsp = self.stub.Hello(HelloRequest(name=name))
        if len(rsp.greeting) != len(name) + 6:
            raise AssertionError("bad greeting")

    def server_stream(self, count: int, progress: list[int], timeout: float) -> None:
        call = self.stub.Stream(StreamRequest(count=count))
        timer = threading.Timer(timeout, call.cancel)
        timer.start()
        try:
            for _ in call:
                progress[0] += 1
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise
        finally:
            timer.cancel()

    @contextmanager
    def bidi(self) -> Iterator[Callable[[int], None]]:
        import queue

        outbox: queue.SimpleQueue[EchoMessage | None] = queue.SimpleQueue()

        def requests() -> Iterator[EchoMessage]:
            while (msg := outbox.get()) is not None:
                yield msg

        responses = self.stub.Echo(requests())

        def ping(seq: int) -> None:
            outbox.put(EchoMessage(text="ping", seq=seq))
            if next(responses).seq != seq:
                raise AssertionError("out of order")

        try:
            yield ping
        finally:
            outbox.put(None)
            for _ in responses:
                pass

    def hold_idle(self, n: int, ready: Callable[[], None]) -> None:
        channels = [grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS) for _ in range(n)]
        for ch in channels:
            rpc.GreeterStub(ch).Hello(HelloRequest(name="world"))
        ready()

    def hold_streams(self, n: int, ready: Callable[[], None]) -> None:
        held = []
        for _ in range(n):
            cm = self.bidi()
            ping = cm.__enter__()
            ping(0)
            held.append(cm)
        ready()


class AioClient:
    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.stub = rpc.GreeterStub(self.channel)

    async def unary(self, name: str) -> None:
        rsp = await self.stub.Hello(HelloRequest(name=name))
        if len(rsp.greeting) != len(name) + 6:
            raise AssertionError("bad greeting")

    async def server_stream(self, count: int, progress: list[int]) -> None:
        call = self.stub.Stream(StreamRequest(count=count))
        try:
            async for _ in call:
                progress[0] += 1
        finally:
            call.cancel()

    @asynccontextmanager
    async def bidi(self) -> AsyncIterator[Callable[[int], Awaitable[None]]]:
        call = self.stub.Echo()

        async def ping(seq: int) -> None:
            await call.write(EchoMessage(text="ping", seq=seq))
            back = await call.read()
            if back.seq != seq:
                raise AssertionError("out of order")

        try:
            yield ping
            await call.done_writing()
        finally:
            call.cancel()

    async def hold_idle(self, n: int, ready: Callable[[], Awaitable[None]]) -> None:
        channels = [grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS) for _ in range(n)]
        await asyncio.gather(*(rpc.GreeterStub(ch).Hello(HelloRequest(name="world")) for ch in channels))
        await ready()

    async def hold_streams(self, n: int, ready: Callable[[], Awaitable[None]]) -> None:
        calls = [self.stub.Echo() for _ in range(n)]

        async def first(call: Any) -> None:
            await call.write(EchoMessage(text="ping", seq=0))
            await call.read()

        await asyncio.gather(*(first(c) for c in calls))
        await ready()
