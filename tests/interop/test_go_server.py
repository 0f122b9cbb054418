"""The trimicro client calling a real Go Micro v5 greeter found through the shared etcd: unary and streams."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

import trimicro
from tests.interop._go import GoProcess, go_flags, open_go, run_go
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
from trimicro.errors import MicroError, TransportError

pytestmark = pytest.mark.loopback

CODECS = ["application/json", "application/protobuf"]


@asynccontextmanager
async def go_greeter(binary: Path, etcd: str, name: str, *extra: str) -> AsyncIterator[GoProcess]:
    async with open_go(
        binary, ["server", *go_flags(etcd), "--server_address", "127.0.0.1:0", "--name", name, *extra]
    ) as go:
        await go.expect("started")
        yield go


@asynccontextmanager
async def py_client(etcd: str) -> AsyncIterator[trimicro.Client]:
    async with trimicro.open_client(registry="etcd", registry_address=[etcd]) as client:
        yield client


@pytest.mark.parametrize("content_type", CODECS)
async def test_unary_to_go(go_interop: Path, shared_etcd: str, uniq: str, content_type: str) -> None:
    name = f"greeter-go-{uniq}"
    async with go_greeter(go_interop, shared_etcd, name) as go, py_client(shared_etcd) as client:
        rsp = await client.call(
            name,
            "Greeter.Hello",
            HelloRequest(name="Bob"),
            response_type=HelloResponse,
            content_type=content_type,
            metadata={"X-Trace": "abc"},
            timeout=5,
        )
        assert rsp == HelloResponse(greeting="Hello Bob")
        seen = await go.expect("hello")
    assert seen["name"] == "Bob"
    assert seen["metadata"].get("X-Trace") == "abc"


async def test_unary_to_go_camel_case_json_decodes(go_interop: Path, shared_etcd: str, uniq: str) -> None:
    """Go's JSON codec answers in lowerCamelCase with int64 as strings ({"sleptMs":"20"})."""
    name = f"greeter-go-{uniq}"
    async with go_greeter(go_interop, shared_etcd, name), py_client(shared_etcd) as client:
        rsp = await client.call(
            name,
            "Greeter.Slow",
            SlowRequest(sleep_ms=20),
            response_type=SlowResponse,
            content_type="application/json",
            timeout=5,
        )
    assert rsp.cancelled is False
    assert rsp.slept_ms >= 20


async def test_go_error_arrives_typed(go_interop: Path, shared_etcd: str, uniq: str) -> None:
    name = f"greeter-go-{uniq}"
    async with go_greeter(go_interop, shared_etcd, name), py_client(shared_etcd) as client:
        for content_type in CODECS:
            with pytest.raises(MicroError) as info:
                await client.call(
                    name, "Greeter.Fail", HelloRequest(name="Eve"), response_type=HelloResponse,
                    content_type=content_type, timeout=5,
                )  # fmt: skip
            err = info.value
            assert (err.id, err.code, err.detail, err.status) == (name, 400, "bad name Eve", "Bad Request")


async def test_go_routing_error_is_a_micro_error(go_interop: Path, shared_etcd: str, uniq: str) -> None:
    """Go answers routing failures with a plain string in Micro-Error; we surface it as a MicroError."""
    name = f"greeter-go-{uniq}"
    async with go_greeter(go_interop, shared_etcd, name), py_client(shared_etcd) as client:
        with pytest.raises(MicroError) as info:
            await client.call(
                name, "Greeter.Nope", HelloRequest(name="x"), response_type=HelloResponse, timeout=5
            )
    assert "can't find method Nope" in info.value.detail


async def test_timeout_to_go_is_408_and_go_handler_sees_cancel(
    go_interop: Path, shared_etcd: str, uniq: str
) -> None:
    name = f"greeter-go-{uniq}"
    async with go_greeter(go_interop, shared_etcd, name) as go, py_client(shared_etcd) as client:
        start = trio.current_time()
        # Two deadlines race: ours (a cancel scope -> 408) and Go's, from our Timeout header: its
        # Slow handler then returns early with cancelled=true, and that reply may win the race.
        try:
            rsp = await client.call(
                name, "Greeter.Slow", SlowRequest(sleep_ms=10_000), response_type=SlowResponse, timeout=0.3
            )
        except MicroError as err:
            assert err.code == 408
        else:
            assert rsp.cancelled
        assert trio.current_time() - start < 3
        slow = await go.expect("slow", timeout=5)
    assert slow["cancelled"] is True
    assert slow["has_deadline"] is True  # our Timeout header carries the request deadline
    assert slow["deadline_in_ms"] <= 300
    assert slow["slept_ms"] < 2000


# ---------------------------------------------------------------- streams, trimicro client -> Go server


async def stream_messages(
    client: trimicro.Client, name: str, count: int, content_type: str
) -> list[StreamResponse]:
    with trio.fail_after(10):
        async with client.stream(
            name, "Greeter.Stream", request=StreamRequest(count=count), request_type=StreamRequest,
            response_type=StreamResponse, content_type=content_type,
        ) as stream:  # fmt: skip
            return [m async for m in stream]


@pytest.mark.parametrize("content_type", CODECS)
async def test_server_stream_from_go(
    go_interop: Path, shared_etcd: str, uniq: str, content_type: str
) -> None:
    """Framing and EOS: every frame arrives, decodes, and the Go server's EOS ends the iteration."""
    name = f"greeter-go-{uniq}"
    async with go_greeter(go_interop, shared_etcd, name), py_client(shared_etcd) as client:
        got = await stream_messages(client, name, 5, content_type)
    assert len(got) == 5
    assert got[0] == StreamResponse(count=0, message="msg 0")
    assert got[-1] == StreamResponse(count=4, message="msg 4")


GO_STREAM_ALIASING = (
    "Go Micro v5.30.0 server bug: back-to-back stream.Send() calls reuse the codec's write buffer before "
    "the transport wrote it, so frames 1..n-1 carry the body of a later frame (a Go client sees the same, "
    "see test_go_client_sees_the_same_stream_corruption)"
)


@pytest.mark.xfail(reason=GO_STREAM_ALIASING, strict=False)
async def test_server_stream_from_go_exact_content(go_interop: Path, shared_etcd: str, uniq: str) -> None:
    name = f"greeter-go-{uniq}"
    async with go_greeter(go_interop, shared_etcd, name), py_client(shared_etcd) as client:
        got = await stream_messages(client, name, 5, "application/protobuf")
    assert got == [StreamResponse(count=i, message=f"msg {i}") for i in range(5)]


async def test_go_client_sees_the_same_stream_corruption(
    go_interop: Path, shared_etcd: str, uniq: str
) -> None:
    """Control for the xfail above: Go client -> Go server shows the identical frames, so the defect is
    the Go server's, not trimicro's. (If this starts failing, the Go side was fixed: drop the xfail.)"""
    name = f"greeter-go-{uniq}"
    async with go_greeter(go_interop, shared_etcd, name):
        go = await run_go(
            go_interop,
            ["client", *go_flags(shared_etcd), "--service", name, "--endpoint", "Greeter.Stream",
             "--request", '{"count":5}', "--content_type", "application/protobuf"],
        )  # fmt: skip
    got = [ev["message"]["message"] for ev in go.all("recv")]
    assert len(got) == 5 and got[0] == "msg 0" and got[-1] == "msg 4"
    assert got != [f"msg {i}" for i in range(5)], "Go Micro's stream aliasing is gone: remove the xfail"


async def test_server_stream_error_from_go(go_interop: Path, shared_etcd: str, uniq: str) -> None:
    name = f"greeter-go-{uniq}"
    async with go_greeter(go_interop, shared_etcd, name), py_client(shared_etcd) as client:
        with trio.fail_after(10):
            async with client.stream(
                name, "Greeter.Stream", request=StreamRequest(count=-1), request_type=StreamRequest,
                response_type=StreamResponse,
            ) as stream:  # fmt: skip
                assert await stream.receive() == StreamResponse(count=-1, message="before error")
                with pytest.raises(MicroError) as info:
                    await stream.receive()
    err = info.value
    assert (err.id, err.code, err.detail) == (name, 400, "negative count -1")


@pytest.mark.parametrize("content_type", CODECS)
async def test_client_stream_to_go(go_interop: Path, shared_etcd: str, uniq: str, content_type: str) -> None:
    """Unlike a Go v5 client we can half-close, so we also read the Go handler's Total."""
    name = f"greeter-go-{uniq}"
    async with go_greeter(go_interop, shared_etcd, name) as go, py_client(shared_etcd) as client:
        with trio.fail_after(10):
            async with client.stream(
                name, "Greeter.Sum", request_type=Num, response_type=Total, content_type=content_type
            ) as stream:
                for v in (1, 2, 3, 4):
                    await stream.send(Num(value=v))
                total = await stream.close_and_receive()
        summed = await go.expect("sum")
    assert (summed["sum"], summed["count"]) == (10, 4)
    assert total == Total(sum=10, count=4)


@pytest.mark.parametrize("content_type", CODECS)
async def test_bidi_stream_with_go(go_interop: Path, shared_etcd: str, uniq: str, content_type: str) -> None:
    """The Go handler sees our EOS as io.EOF and returns; a Go v5 server then sends *nothing* (no EOS
    frame, no close: its router only writes EOS when the handler ended before the client did). So a
    trimicro caller reads the replies it expects and leaves the block; it must not wait for EOS."""
    name = f"greeter-go-{uniq}"
    async with go_greeter(go_interop, shared_etcd, name) as go, py_client(shared_etcd) as client:
        with trio.fail_after(10):
            async with client.stream(
                name,
                "Greeter.Echo",
                request_type=EchoMessage,
                response_type=EchoMessage,
                content_type=content_type,
            ) as stream:
                for i in range(3):
                    await stream.send(EchoMessage(text=f"t{i}", seq=i))
                    assert await stream.receive() == EchoMessage(text=f"t{i}", seq=i)
                await stream.close_send()
                done = await go.expect("echo_done")
                assert done["count"] == 3
                with trio.move_on_after(0.3) as quiet:
                    await stream.receive()
                assert quiet.cancelled_caught, "a Go v5 server now ends streams after the client's EOS"


async def test_go_server_killed_mid_stream(go_interop: Path, shared_etcd: str, uniq: str) -> None:
    """The Go node dies with a stream open: our side gets a typed error at once, no hang."""
    name = f"greeter-go-{uniq}"
    async with go_greeter(go_interop, shared_etcd, name) as go, py_client(shared_etcd) as client:
        with trio.fail_after(10):
            async with client.stream(
                name, "Greeter.Echo", request_type=EchoMessage, response_type=EchoMessage
            ) as stream:
                await stream.send(EchoMessage(text="a", seq=1))
                assert await stream.receive() == EchoMessage(text="a", seq=1)
                go.signal(signal.SIGKILL)
                with pytest.raises((TransportError, MicroError)):
                    await stream.receive()
                with pytest.raises((TransportError, MicroError)):
                    await stream.send(EchoMessage(text="b", seq=2))
