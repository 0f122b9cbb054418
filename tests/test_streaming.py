"""mucp streaming: server, client and bidi streams; ends, errors, cancellation, backpressure."""

from __future__ import annotations

import pytest
import trio

import trimicro
from tests.protos.greeter_pb2 import EchoMessage, Num, StreamRequest, StreamResponse, Total


class Streamer:
    def __init__(self) -> None:
        self.cancelled = trio.Event()
        self.sent = 0

    async def Stream(
        self,
        req: StreamRequest,
        stream: trimicro.Stream[StreamRequest, StreamResponse],
        ctx: trimicro.Context,
    ) -> None:
        for i in range(req.count):
            await stream.send(StreamResponse(count=i, message=f"m{i}"))
            self.sent += 1

    async def Sum(self, stream: trimicro.Stream[Num, Total], ctx: trimicro.Context) -> None:
        total = count = 0
        async for num in stream:
            total += num.value
            count += 1
        await stream.send(Total(sum=total, count=count))

    async def Echo(self, stream: trimicro.Stream[EchoMessage, EchoMessage], ctx: trimicro.Context) -> None:
        async for msg in stream:
            if msg.text == "fail":
                raise trimicro.errors.conflict("streamer", "fail requested at %d", msg.seq)
            await stream.send(EchoMessage(text=msg.text.upper(), seq=msg.seq))

    async def Forever(self, stream: trimicro.Stream[EchoMessage, EchoMessage], ctx: trimicro.Context) -> None:
        try:
            i = 0
            while True:
                await stream.send(EchoMessage(seq=i))
                i += 1
        except trio.Cancelled:
            self.cancelled.set()
            raise


@pytest.fixture
async def svc(registry, nursery):
    handler = Streamer()
    service = trimicro.Service(
        "streamer", registry=registry, handlers=[handler], argv=[], handle_signals=False
    )
    await nursery.start(service.run)
    service.handler = handler
    yield service
    service.stop()


async def test_streaming_endpoints_are_advertised(svc):
    eps = {e.name: e for e in svc.record().endpoints}
    assert eps["Streamer.Echo"].metadata == {"stream": "true"}
    assert eps["Streamer.Stream"].metadata == {"stream": "true"}


async def test_server_stream(svc):
    async with svc.client.stream(
        "streamer", "Streamer.Stream", request=StreamRequest(count=50), response_type=StreamResponse
    ) as stream:
        got = [m.count async for m in stream]
    assert got == list(range(50))


async def test_client_stream(svc):
    async with svc.client.stream("streamer", "Streamer.Sum", response_type=Total) as stream:
        for i in range(10):
            await stream.send(Num(value=i))
        await stream.close_send()
        total = await stream.receive()
        with pytest.raises(trio.EndOfChannel):
            await stream.receive()
    assert (total.sum, total.count) == (45, 10)


async def test_bidi_stream_and_json(svc):
    async with svc.client.stream("streamer", "Streamer.Echo", response_type=EchoMessage) as stream:
        for i in range(5):
            await stream.send(EchoMessage(text=f"hi{i}", seq=i))
            rsp = await stream.receive()
            assert (rsp.text, rsp.seq) == (f"HI{i}", i)
        await stream.close_send()
        assert [m async for m in stream] == []
    async with svc.client.stream("streamer", "Streamer.Echo", content_type="application/json") as stream:
        await stream.send({"text": "js", "seq": 1})
        assert await stream.receive() == {"text": "JS", "seq": "1"}


async def test_handler_error_ends_async_for_with_that_error(svc):
    async with svc.client.stream("streamer", "Streamer.Echo", response_type=EchoMessage) as stream:
        await stream.send(EchoMessage(text="a", seq=1))
        await stream.send(EchoMessage(text="fail", seq=2))
        got = []
        with pytest.raises(trimicro.MicroError) as info:
            async for m in stream:
                got.append(m.text)
    assert got == ["A"]
    assert info.value == trimicro.MicroError("streamer", 409, "fail requested at 2", "Conflict")


async def test_leaving_early_cancels_the_server_handler(svc):
    async with svc.client.stream("streamer", "Streamer.Forever", response_type=EchoMessage) as stream:
        for _ in range(3):
            await stream.receive()
    with trio.fail_after(5):
        await svc.handler.cancelled.wait()


async def test_cancelling_the_client_scope_cancels_the_handler(svc):
    with trio.move_on_after(0.2):
        async with svc.client.stream("streamer", "Streamer.Forever", response_type=EchoMessage) as stream:
            async for _ in stream:
                pass
    with trio.fail_after(5):
        await svc.handler.cancelled.wait()


async def test_slow_consumer_applies_backpressure(svc):
    """The server cannot run ahead of a client that does not read: buffers are bounded."""
    async with svc.client.stream(
        "streamer",
        "Streamer.Stream",
        request=StreamRequest(count=100_000),
        response_type=StreamResponse,
        buffer=4,
    ) as stream:
        await stream.receive()
        await trio.sleep(0.3)
        ahead = svc.handler.sent
        assert ahead < 100_000  # stuck on socket + channel buffers, not 100k messages in memory
        await trio.sleep(0.2)
        assert svc.handler.sent == ahead


async def test_stream_to_unary_endpoint_is_an_error(registry, nursery):
    class G:
        async def Hello(self, req: dict, ctx) -> dict:
            return {}

    service = trimicro.Service("g", registry=registry, handlers=[G()], argv=[], handle_signals=False)
    await nursery.start(service.run)
    async with service.client.stream("g", "G.Hello", content_type="application/json") as stream:
        with pytest.raises(trimicro.MicroError) as info:
            await stream.receive()
    assert info.value.code == 400


async def test_client_stream_handler_may_return_its_response(registry, nursery):
    class Adder:
        async def Sum(self, stream: trimicro.Stream[Num, Total], ctx: trimicro.Context) -> Total:
            return Total(sum=sum([n.value async for n in stream]))

    service = trimicro.Service("adder", registry=registry, handlers=[Adder()], argv=[], handle_signals=False)
    await nursery.start(service.run)
    async with service.client.stream("adder", "Adder.Sum", response_type=Total) as stream:
        for i in range(4):
            await stream.send(Num(value=i))
        total = await stream.close_and_receive()
    assert total.sum == 6


async def test_no_connection_or_task_outlives_its_stream(svc):
    listener = svc.server.listener
    before_tasks = len(trio.lowlevel.current_root_task().child_nurseries[0].child_tasks)
    for _ in range(5):
        async with svc.client.stream("streamer", "Streamer.Forever", response_type=EchoMessage) as stream:
            await stream.receive()
        async with svc.client.stream("streamer", "Streamer.Echo", response_type=EchoMessage) as stream:
            await stream.send(EchoMessage(text="x"))
            await stream.receive()
    with trio.fail_after(5):
        while listener.open_connections:
            await trio.sleep(0.01)
    assert svc.server.stats.in_flight == 0
    assert len(trio.lowlevel.current_root_task().child_nurseries[0].child_tasks) == before_tasks
