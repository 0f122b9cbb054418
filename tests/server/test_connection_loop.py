"""The server's connection loop: a caller that hangs up cancels its handler, pipelining stays in order
behind a long call, and a drain closes idle connections but lets running calls and streams finish."""

from __future__ import annotations

import json

import pytest
import trio

import trimicro
from tests.conftest import Greeter
from tests.protos.greeter_pb2 import EchoMessage, SlowRequest
from tests.server.test_conformance import _open, _read_response, _request


@pytest.fixture
async def svc(registry, nursery):
    greeter = Greeter()
    service = trimicro.Service(
        "greeter", registry=registry, handlers=[greeter], argv=[], handle_signals=False
    )
    await nursery.start(service.run)
    yield service, greeter
    service.stop()


def _slow(ms: int, call_id: str = "0") -> bytes:
    return _request(
        {"Content-Type": "application/protobuf", "Micro-Endpoint": "Greeter.Slow", "Micro-Id": call_id},
        SlowRequest(sleep_ms=ms).SerializeToString(),
    )


@pytest.mark.parametrize("wait_before_close", [0.0, 0.2])
async def test_peer_hanging_up_cancels_the_handler(svc, wait_before_close):
    """Go Micro clients close the connection when their deadline passes: the handler is cancelled."""
    service, greeter = svc
    stream = await _open(service)
    await stream.send_all(_slow(5000))
    await greeter.started.wait()
    await trio.sleep(wait_before_close)
    await stream.aclose()
    with trio.fail_after(2):
        while not greeter.cancelled:
            await trio.sleep(0.01)


async def test_pipelined_frames_behind_a_long_call_stay_in_order(svc):
    service, greeter = svc
    stream = await _open(service)
    await stream.send_all(_slow(300))
    await greeter.started.wait()
    await trio.sleep(0.15)  # the long call now has a watcher reading ahead
    await stream.send_all(
        b"".join(
            _request(
                {"Content-Type": "application/json", "Micro-Endpoint": "Greeter.Hello", "Micro-Id": str(i)},
                json.dumps({"name": f"n{i}"}).encode(),
            )
            for i in range(1, 5)
        )
    )
    buf = bytearray()
    for i in range(5):
        _, headers, _ = await _read_response(stream, buf)
        assert headers["micro-id"] == str(i)
    await stream.aclose()
    assert greeter.cancelled == 0


async def test_drain_closes_idle_connections(svc):
    service, _ = svc
    streams = [await _open(service) for _ in range(5)]
    for stream in streams:
        await stream.send_all(
            _request({"Content-Type": "application/json", "Micro-Endpoint": "Greeter.Hello"}, b"{}")
        )
        await _read_response(stream, bytearray())
    service.stop()
    with trio.fail_after(2):
        for stream in streams:
            assert await stream.receive_some() == b""


async def test_drain_lets_an_open_stream_finish(registry, nursery):
    class Echo:
        cancelled = False

        async def Echo(
            self, stream: trimicro.Stream[EchoMessage, EchoMessage], ctx: trimicro.Context
        ) -> None:
            try:
                async for msg in stream:
                    await stream.send(msg)
            except trio.Cancelled:
                Echo.cancelled = True
                raise

    service = trimicro.Service("echo", registry=registry, handlers=[Echo()], argv=[], handle_signals=False)
    await nursery.start(service.run)
    async with service.client.stream("echo", "Echo.Echo", response_type=EchoMessage) as stream:
        await stream.send(EchoMessage(seq=1))
        assert (await stream.receive()).seq == 1
        nursery.start_soon(service.server.drain, 5)
        await trio.sleep(0.1)
        await stream.send(EchoMessage(seq=2))
        with trio.fail_after(2):
            assert (await stream.receive()).seq == 2
        await stream.close_send()
    assert not Echo.cancelled
    service.stop()
