"""The memory transport: in-process byte streams under the http transport's framing, no sockets."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import trimicro
from tests.conftest import Greeter
from tests.protos.greeter_pb2 import (
    EchoMessage,
    Event,
    HelloRequest,
    HelloResponse,
    Num,
    SlowRequest,
    SlowResponse,
    StreamRequest,
    StreamResponse,
    Total,
)
from tests.test_streaming import Streamer
from trimicro import _plugins
from trimicro.config import load_options
from trimicro.errors import TransportError
from trimicro.transport import Message
from trimicro.transport.memory import MemoryNetwork, MemoryTransport, memory_stream_pair


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to make, bind or connect a socket fails the test."""

    def refuse(*args: object, **kw: object) -> None:
        raise AssertionError("a socket was used")

    monkeypatch.setattr(trio.socket, "socket", refuse)
    monkeypatch.setattr(socket.socket, "bind", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    with socket.socket() as probe, pytest.raises(AssertionError):  # the guard itself works
        probe.connect(("127.0.0.1", 9))


@pytest.fixture
def transport() -> MemoryTransport:
    return MemoryTransport(network=MemoryNetwork())


# -- the byte streams ------------------------------------------------------------------------------


async def test_stream_pair_carries_bytes_and_eof() -> None:
    a, b = memory_stream_pair(buffer_size=8)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.send_all, b"hello, memory world")
        got = b""
        while len(got) < 19:
            got += await b.receive_some(5)
    assert got == b"hello, memory world"
    await a.send_eof()
    assert await b.receive_some() == b""
    await b.send_all(b"back")  # half-closed: the other direction still works
    assert await a.receive_some() == b"back"
    with pytest.raises(trio.ClosedResourceError):
        await a.send_all(b"after eof")
    await b.aclose()
    assert await a.receive_some() == b""  # the peer closed: EOF
    with pytest.raises(trio.ClosedResourceError):
        await b.receive_some()
    c, d = memory_stream_pair()
    await d.aclose()
    with pytest.raises(trio.BrokenResourceError):  # writing to a closed peer, as TCP's reset
        await c.send_all(b"x")


async def test_a_writer_waits_for_its_reader_with_bounded_memory() -> None:
    a, b = memory_stream_pair(buffer_size=1024)
    sent = trio.Event()

    async def send() -> None:
        await a.send_all(b"x" * 100_000)
        sent.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        await trio.testing.wait_all_tasks_blocked()
        assert not sent.is_set()
        assert a._out.buffered == 1024  # the rest waits in the writer, not in a buffer
        total = 0
        while total < 100_000:
            total += len(await b.receive_some(4096))
            assert a._out.buffered <= 1024
    assert sent.is_set()


async def test_closing_an_end_wakes_its_own_blocked_tasks() -> None:
    a, _b = memory_stream_pair(buffer_size=1)
    async with trio.open_nursery() as nursery:

        async def receive() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await a.receive_some()

        async def send() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await a.send_all(b"too much")

        nursery.start_soon(receive)
        nursery.start_soon(send)
        await trio.testing.wait_all_tasks_blocked()
        await a.aclose()


async def test_stream_passes_trios_generic_stream_checks() -> None:
    from trio.testing import check_half_closeable_stream

    async def maker() -> tuple[trio.abc.HalfCloseableStream, trio.abc.HalfCloseableStream]:
        return memory_stream_pair(buffer_size=16)

    await check_half_closeable_stream(maker, None)


@settings(max_examples=60, deadline=None)
@given(
    buffer_size=st.integers(1, 64),
    writes=st.lists(st.binary(max_size=200), max_size=20),
    reads=st.lists(st.integers(1, 100), min_size=1, max_size=10),
)
def test_any_writes_and_reads_keep_order_and_the_bound(
    buffer_size: int, writes: list[bytes], reads: list[int]
) -> None:
    """Whatever the chunking on both sides, the bytes arrive in order and never exceed the buffer."""

    async def run() -> bytes:
        a, b = memory_stream_pair(buffer_size=buffer_size)
        got = bytearray()

        async def writer() -> None:
            for chunk in writes:
                await a.send_all(chunk)
            await a.send_eof()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            i = 0
            while True:
                assert a._out.buffered <= buffer_size
                chunk = await b.receive_some(reads[i % len(reads)])
                i += 1
                if not chunk:
                    break
                assert len(chunk) <= reads[(i - 1) % len(reads)]
                got += chunk
        return bytes(got)

    assert trio.run(run) == b"".join(writes)


# -- addresses, dialling, listeners --------------------------------------------------------------


async def test_port_zero_picks_free_ports_and_an_address_is_taken_once(transport: MemoryTransport) -> None:
    first = await transport.listen("memory:0")
    second = await transport.listen(":0")
    assert (first.address, second.address) == ("memory:1", "memory:2")
    named = await transport.listen("127.0.0.1:0")
    assert named.address == "127.0.0.1:1"  # an in-memory name, not a real port
    with pytest.raises(TransportError, match="already in use"):
        await transport.listen("memory:2")
    with pytest.raises(TransportError, match="want host:port"):
        await transport.listen("memory")
    await first.aclose()
    assert (await transport.listen("memory:0")).address == "memory:1"  # freed


async def test_dial_to_nothing_is_refused_at_once(transport: MemoryTransport) -> None:
    with trio.fail_after(1):
        with pytest.raises(TransportError, match="refused"):
            await transport.dial("memory:4242")
    listener = await transport.listen("memory:0")
    await listener.aclose()
    with pytest.raises(TransportError, match="refused"):
        await transport.dial(listener.address)


async def test_frames_round_trip_through_the_http_framing(transport: MemoryTransport) -> None:
    listener = await transport.listen("memory:0")

    async def echo(sock: trimicro.transport.Socket) -> None:
        while True:
            try:
                msg = await sock.receive()
            except trio.EndOfChannel:
                return
            await sock.send(Message({"Micro-Id": msg.header["Micro-Id"]}, msg.body[::-1]))

    async with trio.open_nursery() as nursery:
        await nursery.start(listener.serve, echo)
        sock = await transport.dial(listener.address)
        assert sock.remote_address == listener.address
        assert sock.local_address.startswith("memory-client:")
        big = bytes(range(256)) * 1024  # larger than the buffers: backpressure both ways
        for i in range(3):
            await sock.send(Message({"Micro-Id": str(i)}, big))
            reply = await sock.receive()
            assert reply.header["Micro-Id"] == str(i) and reply.body == big[::-1]
        await sock.aclose()
        await listener.aclose()


async def test_closing_the_listener_ends_connections_not_yet_accepted(transport: MemoryTransport) -> None:
    listener = await transport.listen("memory:0")  # nobody serves it: dials wait in the backlog
    sock = await transport.dial(listener.address)
    await listener.aclose()
    with pytest.raises(TransportError):
        await sock.send(Message({}, b"x"))
        await sock.receive()
    with pytest.raises(TransportError, match="refused"):
        await transport.dial(listener.address)


async def test_a_full_backlog_makes_dial_wait_until_its_timeout(autojump_clock: trio.abc.Clock) -> None:
    transport = MemoryTransport(network=MemoryNetwork(), backlog=1)
    listener = await transport.listen("memory:0")
    await transport.dial(listener.address)
    with pytest.raises(TransportError, match="timed out"):
        await transport.dial(listener.address, timeout=1)
    await listener.aclose()


def test_a_listener_left_by_an_earlier_trio_run_is_not_dialled() -> None:
    network = MemoryNetwork()
    transport = MemoryTransport(network=network)

    async def leave_a_listener() -> str:
        return (await transport.listen("memory:7")).address  # never closed

    address = trio.run(leave_a_listener)

    async def dial_it() -> None:
        with pytest.raises(TransportError, match="refused"):
            await transport.dial(address)
        assert (await transport.listen(address)).address == address

    trio.run(dial_it)


async def test_selectable_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "memory" in _plugins.plugin_names("transport")
    monkeypatch.setenv("MICRO_TRANSPORT", "memory")
    opts = load_options({}, argv=[])
    assert opts.transport == "memory"
    assert isinstance(_plugins.create("transport", opts.transport, opts), MemoryTransport)
    opts = load_options({}, argv=["--transport", "grpc", "--transport", "memory"])
    assert opts.transport == "memory"
    service = trimicro.Service("x", transport="memory", argv=[], handle_signals=False)
    assert service.options.transport == "memory"


# -- services and clients on memory -------------------------------------------------------------


@pytest.fixture
async def memory_services(no_sockets: None) -> AsyncIterator[tuple[trimicro.Service, Greeter, Streamer]]:
    """A greeter and a streamer service on registry, transport and broker memory; no sockets."""
    registry = trimicro.registry.MemoryRegistry()
    greeter, streamer = Greeter(), Streamer()
    kw = dict(registry=registry, transport="memory", broker="memory", argv=[], handle_signals=False)
    async with trimicro.open_service("greeter", handlers=[greeter], **kw) as g:
        async with trimicro.open_service("streamer", handlers=[streamer], **kw):
            yield g, greeter, streamer


async def test_unary_call_and_errors(memory_services: tuple[trimicro.Service, Greeter, Streamer]) -> None:
    svc, _, _ = memory_services
    assert svc.address.startswith("127.0.0.1:")  # the default server address, resolved in memory
    rsp = await svc.client.call(
        "greeter", "Greeter.Hello", HelloRequest(name="mem"), response_type=HelloResponse
    )
    assert rsp.greeting == "Hello mem"
    with pytest.raises(trimicro.MicroError) as info:
        await svc.client.call("greeter", "Greeter.Fail", HelloRequest(name="x"), response_type=HelloResponse)
    assert (info.value.code, info.value.detail) == (400, "bad name x")
    with pytest.raises(trimicro.MicroError) as info:
        await svc.client.call("greeter", "Greeter.Crash", HelloRequest(), response_type=HelloResponse)
    assert info.value.code == 500
    with pytest.raises(trimicro.MicroError) as info:
        await svc.client.call("greeter", "Greeter.Nope", HelloRequest(), response_type=HelloResponse)
    assert info.value.code == 404
    # the server keeps serving after those
    rsp = await svc.client.call(
        "greeter", "Greeter.Hello", HelloRequest(name="again"), response_type=HelloResponse
    )
    assert rsp.greeting == "Hello again"


async def test_every_stream_kind(memory_services: tuple[trimicro.Service, Greeter, Streamer]) -> None:
    client = memory_services[0].client
    async with client.stream(
        "streamer", "Streamer.Stream", request=StreamRequest(count=20), response_type=StreamResponse
    ) as stream:
        assert [m.count async for m in stream] == list(range(20))
    async with client.stream("streamer", "Streamer.Sum", response_type=Total) as stream:
        for i in range(10):
            await stream.send(Num(value=i))
        await stream.close_send()
        total = await stream.receive()
    assert (total.sum, total.count) == (45, 10)
    async with client.stream("streamer", "Streamer.Echo", response_type=EchoMessage) as stream:
        for i in range(5):
            await stream.send(EchoMessage(text=f"hi{i}", seq=i))
            assert (await stream.receive()).text == f"HI{i}"
        await stream.send(EchoMessage(text="fail", seq=9))
        with pytest.raises(trimicro.MicroError) as info:
            await stream.receive()
    assert info.value.code == 409


async def test_deadline(
    memory_services: tuple[trimicro.Service, Greeter, Streamer], autojump_clock: trio.abc.Clock
) -> None:
    svc, greeter, _ = memory_services
    with pytest.raises(trimicro.MicroError) as info:
        await svc.client.call(
            "greeter", "Greeter.Slow", SlowRequest(sleep_ms=60_000), response_type=SlowResponse, timeout=2
        )
    assert info.value.code == 408
    with trio.fail_after(5):
        while not greeter.cancelled:  # the deadline reached the handler: it was cancelled
            await trio.sleep(0.1)


async def test_a_server_going_away_mid_call(no_sockets: None) -> None:
    registry = trimicro.registry.MemoryRegistry()
    greeter = Greeter()
    kw = dict(registry=registry, transport="memory", broker="memory", argv=[], handle_signals=False)
    failed: list[trimicro.MicroError] = []
    async with trimicro.open_client(registry=registry, transport="memory") as client:

        async def call() -> None:
            with pytest.raises(trimicro.MicroError) as info:
                await client.call(
                    "greeter", "Greeter.Gate", HelloRequest(name="x"), response_type=HelloResponse, retries=0
                )
            failed.append(info.value)

        async with trio.open_nursery() as outer:
            with trio.CancelScope() as server_scope:
                async with trio.open_nursery() as nursery:
                    service = trimicro.Service("greeter", handlers=[greeter], **kw)
                    await nursery.start(service.run)
                    outer.start_soon(call)
                    await greeter.started.wait()
                    server_scope.cancel()  # the server dies: its connections close mid-call
            with trio.fail_after(5):
                while not failed:
                    await trio.sleep(0.01)
        assert failed[0].code in (500, 503)
        with pytest.raises(trimicro.MicroError):  # and its address now refuses
            await client.call("greeter", "Greeter.Hello", HelloRequest(), address=service.address, retries=0)


async def test_service_client_and_broker_end_to_end_without_sockets(no_sockets: None) -> None:
    """registry=memory transport=memory broker=memory: one trio run, a service and a client, no sockets."""
    greeter = Greeter()
    got: list[Event] = []
    arrived = trio.Event()

    async def on_event(msg: Event, ctx: trimicro.Context) -> None:
        got.append(msg)
        arrived.set()

    kw = dict(registry="memory", transport="memory", broker="memory", argv=[], handle_signals=False)
    service = trimicro.Service("e2e-greeter", handlers=[greeter], **kw)
    service.subscribe("e2e-events", on_event)
    async with trimicro.open_service(service=service):
        async with trimicro.open_client(registry="memory", transport="memory", broker="memory") as client:
            rsp = await client.call(
                "e2e-greeter", "Greeter.Hello", HelloRequest(name="e2e"), response_type=HelloResponse
            )
            assert rsp.greeting == "Hello e2e"
            await service.client.publish("e2e-events", Event(id="1", seq=1))
            with trio.fail_after(5):
                await arrived.wait()
    assert [e.id for e in got] == ["1"]


def test_the_documented_example_runs() -> None:
    """docs/configuration.md's memory transport example, run as written (in a fresh process)."""
    repo = Path(__file__).resolve().parents[2]
    text = (repo / "docs" / "configuration.md").read_text()
    section = text[text.index("## In-process: the memory transport") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    res = subprocess.run(
        [sys.executable, "-c", code.group(1)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["listening on memory:1", "{'greeting': 'Hello memory'}"]


async def test_http2_is_sniffed_on_a_memory_listener_as_on_tcp(no_sockets: None) -> None:
    """A gRPC call (client: the sans-IO ``h2`` library) reaches the service's gRPC server in memory."""
    import h2.config
    import h2.connection
    import h2.events

    registry = trimicro.registry.MemoryRegistry()
    svc = trimicro.Service("greeter", registry=registry, transport="memory", argv=[], handle_signals=False)
    svc.handle(Greeter(), name="Greeter", grpc_service="greeter.Greeter")
    async with trimicro.open_service(service=svc):
        stream = await MemoryTransport().network.connect(svc.address)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        body = HelloRequest(name="h2").SerializeToString()
        conn.send_headers(
            1,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", "/greeter.Greeter/Hello"),
                (":authority", svc.address),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        conn.send_data(1, b"\x00" + len(body).to_bytes(4, "big") + body, end_stream=True)
        await stream.send_all(conn.data_to_send())
        data, trailers, ended = b"", {}, False
        with trio.fail_after(5):
            while not ended:
                chunk = await stream.receive_some()
                assert chunk, "the server closed the connection"
                for event in conn.receive_data(chunk):
                    if isinstance(event, h2.events.DataReceived):
                        data += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, 1)
                    elif isinstance(event, h2.events.TrailersReceived):
                        trailers = {_str(k): _str(v) for k, v in event.headers}
                    elif isinstance(event, h2.events.StreamEnded):
                        ended = True
                await stream.send_all(conn.data_to_send())
        await stream.aclose()
    assert trailers.get("grpc-status") == "0", trailers
    assert HelloResponse.FromString(data[5:]).greeting == "Hello h2"


def _str(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
