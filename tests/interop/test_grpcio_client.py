"""A stock grpcio client (sync and grpc.aio) calls trimicro's gRPC server.

grpcio's client runs its own threads; its calls block, so each client session runs in a worker thread
via ``trio.to_thread.run_sync`` (forced by grpcio), and every call carries a grpc deadline so the
thread always ends.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import grpc.aio
import pytest
import trio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.interop import serve_grpc
from tests.protos import greeter_pb2 as pb
from tests.protos import greeter_pb2_grpc as pbg
from trimicro.errors import MicroError
from trimicro.transport._grpc_status import decode_status_details

pytestmark = pytest.mark.loopback

T = TypeVar("T")
MiB = 1024 * 1024


async def in_thread(fn: Callable[[], T]) -> T:
    with trio.fail_after(30):
        return await trio.to_thread.run_sync(fn)


def sync_session(address: str, fn: Callable[[pbg.GreeterStub], T], **options: Any) -> Callable[[], T]:
    def run() -> T:
        opts = list(options.items())
        with grpc.insecure_channel(address, options=opts) as channel:
            return fn(pbg.GreeterStub(channel))

    return run


async def test_unary_metadata_both_ways() -> None:
    async with serve_grpc() as (address, server, greeter):

        def call(stub: pbg.GreeterStub) -> Any:
            rsp, c = stub.Hello.with_call(
                pb.HelloRequest(name="Ann"), timeout=5, metadata=[("x-user", "bob"), ("x-trace-id", "t1")]
            )
            return rsp, dict(c.initial_metadata()), dict(c.trailing_metadata())

        rsp, initial, _trailing = await in_thread(sync_session(address, call))
        assert rsp.greeting == "Hello Ann"
        assert initial["x-served-by"] == "trimicro"
        assert initial["x-seen-user"] == "bob"
        assert greeter.last_metadata["X-User"] == "bob"
        assert greeter.last_metadata["X-Trace-Id"] == "t1"
        with trio.fail_after(5):
            await server.wait_idle()


async def test_four_kinds_sync() -> None:
    async with serve_grpc() as (address, _server, _):

        def calls(stub: pbg.GreeterStub) -> Any:
            unary = stub.Hello(pb.HelloRequest(name="x"), timeout=5).greeting
            server_stream = [r.count for r in stub.Stream(pb.StreamRequest(count=5), timeout=5)]
            total = stub.Sum(iter([pb.Num(value=i) for i in range(10)]), timeout=5)
            bidi = [
                m.seq for m in stub.Echo(iter([pb.EchoMessage(text="t", seq=i) for i in range(7)]), timeout=5)
            ]
            return unary, server_stream, (total.sum, total.count), bidi

        unary, server_stream, total, bidi = await in_thread(sync_session(address, calls))
        assert unary == "Hello x"
        assert server_stream == [0, 1, 2, 3, 4]
        assert total == (45, 10)
        assert bidi == list(range(7))


async def test_errors_and_deadline() -> None:
    async with serve_grpc() as (address, server, greeter):

        def calls(stub: pbg.GreeterStub) -> list[tuple[grpc.StatusCode, str]]:
            out: list[tuple[grpc.StatusCode, str]] = []
            try:
                stub.Fail(pb.HelloRequest(name="n"), timeout=5.0)
            except grpc.RpcError as exc:
                trailers.update(exc.trailing_metadata())  # type: ignore[attr-defined]
            for fn, req, timeout in (
                (stub.Fail, pb.HelloRequest(name="n"), 5.0),
                (stub.Fail, pb.HelloRequest(name="boom"), 5.0),
                (stub.Slow, pb.SlowRequest(sleep_ms=10_000), 0.3),
            ):
                try:
                    fn(req, timeout=timeout)
                except grpc.RpcError as exc:
                    out.append((exc.code(), exc.details()))
            try:
                list(stub.Echo(iter([pb.EchoMessage(text="fail", seq=3)]), timeout=5))
            except grpc.RpcError as exc:
                out.append((exc.code(), exc.details()))
            return out

        trailers: dict[str, Any] = {}
        results = await in_thread(sync_session(address, calls))
        # A stock client sees the plain detail; the whole Go Micro error is in the status details.
        assert results[0] == (grpc.StatusCode.INVALID_ARGUMENT, "bad name: n")
        details = base64.b64encode(trailers["grpc-status-details-bin"]).decode()
        assert decode_status_details(details) == MicroError("greeter", 400, "bad name: n")
        assert results[1][0] == grpc.StatusCode.INTERNAL and "RuntimeError: boom" in results[1][1]
        assert results[2][0] == grpc.StatusCode.DEADLINE_EXCEEDED
        assert results[3][0] == grpc.StatusCode.ALREADY_EXISTS and "echo refused 3" in results[3][1]
        with trio.fail_after(5):
            await server.wait_idle()
        # Either our deadline scope or the client's RST_STREAM ended the slow handler.
        assert greeter.cancelled >= 1


async def test_unknown_method_is_unimplemented() -> None:
    async with serve_grpc() as (address, _server, _):

        def call() -> Any:
            with grpc.insecure_channel(address) as channel:
                method = channel.unary_unary("/greeter.Greeter/Nope")
                try:
                    method(b"", timeout=5)
                except grpc.RpcError as exc:
                    return exc.code()
                return None

        assert await in_thread(call) == grpc.StatusCode.UNIMPLEMENTED


async def test_one_mib_messages_and_limit() -> None:
    async with serve_grpc() as (address, server, _):

        def calls(stub: pbg.GreeterStub) -> Any:
            big = "y" * MiB
            unary = stub.Hello(pb.HelloRequest(name=big), timeout=10).greeting
            echoed = [
                len(m.text)
                for m in stub.Echo(iter([pb.EchoMessage(text=big, seq=i) for i in range(3)]), timeout=10)
            ]
            try:
                stub.Hello(pb.HelloRequest(name="z" * (5 * MiB)), timeout=10)
            except grpc.RpcError as exc:
                too_big = exc.code()
            after = stub.Hello(pb.HelloRequest(name="ok"), timeout=5).greeting
            return len(unary), echoed, too_big, after

        n, echoed, too_big, after = await in_thread(
            sync_session(address, calls, **{"grpc.max_receive_message_length": 8 * MiB})
        )
        assert n == MiB + len("Hello ")
        assert echoed == [MiB] * 3
        assert too_big == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert after == "Hello ok"
        with trio.fail_after(5):
            await server.wait_idle()


async def test_health_check() -> None:
    async with serve_grpc() as (address, _server, _):

        def call() -> Any:
            with grpc.insecure_channel(address) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                whole = stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status
                named = stub.Check(health_pb2.HealthCheckRequest(service="greeter"), timeout=5).status
                try:
                    stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
                except grpc.RpcError as exc:
                    return whole, named, exc.code()
                return whole, named, None

        whole, named, unknown = await in_thread(call)
        assert whole == named == health_pb2.HealthCheckResponse.SERVING
        assert unknown == grpc.StatusCode.NOT_FOUND

async def test_health_watch_sees_changes_and_ends_on_drain() -> None:
    async with serve_grpc() as (address, server, _):
        health = server.health

        def call() -> Any:
            seen = []
            with grpc.insecure_channel(address) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                updates = stub.Watch(health_pb2.HealthCheckRequest(service="greeter"), timeout=10)
                seen.append(next(updates).status)
                trio.from_thread.run_sync(health.set_status, "greeter", 2)
                seen.append(next(updates).status)
                trio.from_thread.run_sync(health.shutdown)  # what the server's drain calls
                try:
                    next(updates)
                except grpc.RpcError as exc:
                    return seen, exc.code()
                return seen, None

        seen, end = await in_thread(call)
        S = health_pb2.HealthCheckResponse
        assert seen == [S.SERVING, S.NOT_SERVING]
        assert end == grpc.StatusCode.UNAVAILABLE
        with trio.fail_after(5):
            await server.wait_idle()



def aio_session(address: str, coro_fn: Callable[[pbg.GreeterStub], Any]) -> Callable[[], Any]:
    async def main() -> Any:
        async with grpc.aio.insecure_channel(address) as channel:
            return await coro_fn(pbg.GreeterStub(channel))

    return lambda: asyncio.run(main())


async def test_aio_four_kinds_and_100_concurrent_streams() -> None:
    async with serve_grpc() as (address, server, _):

        async def calls(stub: pbg.GreeterStub) -> Any:
            unary = (await stub.Hello(pb.HelloRequest(name="aio"), timeout=5)).greeting

            async def feed() -> Any:
                for i in range(4):
                    yield pb.Num(value=i)

            total = await stub.Sum(feed(), timeout=5)
            call = stub.Echo(timeout=5)
            for i in range(3):
                await call.write(pb.EchoMessage(text="a", seq=i))
            echoed = [(await call.read()).seq for _ in range(3)]
            await call.done_writing()

            async def one_stream(n: int) -> int:
                return sum([r.count async for r in stub.Stream(pb.StreamRequest(count=20), timeout=10)]) + n

            many = await asyncio.gather(*(one_stream(i) for i in range(100)))
            unaries = await asyncio.gather(
                *(stub.Hello(pb.HelloRequest(name=str(i)), timeout=10) for i in range(100))
            )
            return unary, total.sum, echoed, many, [u.greeting for u in unaries]

        unary, total, echoed, many, unaries = await in_thread(aio_session(address, calls))
        assert unary == "Hello aio"
        assert total == 6
        assert echoed == [0, 1, 2]
        assert many == [190 + i for i in range(100)]
        assert unaries == [f"Hello {i}" for i in range(100)]
        with trio.fail_after(5):
            await server.wait_idle()


async def test_aio_cancel_cancels_handler() -> None:
    async with serve_grpc() as (address, server, greeter):

        async def calls(stub: pbg.GreeterStub) -> Any:
            call = stub.Stream(pb.StreamRequest(count=-1), timeout=10)  # one message, then hangs
            first = await call.read()
            assert first.message == "hang"
            call.cancel()
            return call.cancelled()

        assert await in_thread(aio_session(address, calls))
        with trio.fail_after(5):
            await server.wait_idle()
        assert greeter.cancelled == 1


async def test_drain_goaway_lets_grpcio_finish_its_call() -> None:
    """grpc-core takes our drain GOAWAY in stride: its in-flight call is still answered."""
    async with serve_grpc() as (address, server, greeter):
        results: list[int] = []

        def call(stub: pbg.GreeterStub) -> None:
            results.append(stub.Slow(pb.SlowRequest(sleep_ms=300), timeout=10).slept_ms)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(in_thread, sync_session(address, call))
            await greeter.started.wait()
            with trio.fail_after(10):
                await server.server.drain(5.0)
                await server.wait_idle()
        assert results == [300]
