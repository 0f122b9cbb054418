"""The nats transport against a real nats-server on 127.0.0.1: Go Micro's framing on the wire, one
socket per reply inbox, a trimicro Service serving (unary and streams) over it with the nats registry,
no-responders and departed-client detection, idle close, NATS down at start, and a restart mid-run."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

import trimicro
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
from trimicro import _plugins
from trimicro.broker._nats_client import NatsClient
from trimicro.config import Options
from trimicro.errors import MicroError, ProtocolError, TransportError
from trimicro.testing._process import free_port
from trimicro.testing.nats import NatsServerProcess
from trimicro.transport import Message
from trimicro.transport.nats import NatsServerSocket, NatsTransport, decode_frame, encode_frame

pytestmark = pytest.mark.loopback


class Greeter:
    def __init__(self) -> None:
        self.stream_cancelled = trio.Event()
        self.sent = 0

    async def Hello(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
        if req.name == "fail":
            raise trimicro.errors.bad_request("greeter", "bad name %s", req.name)
        return HelloResponse(greeting=f"Hello {req.name}")

    async def Slow(self, req: SlowRequest, ctx: trimicro.Context) -> SlowResponse:
        await trio.sleep(req.sleep_ms / 1000)
        return SlowResponse(slept_ms=req.sleep_ms)

    async def Stream(
        self,
        req: StreamRequest,
        stream: trimicro.Stream[StreamRequest, StreamResponse],
        ctx: trimicro.Context,
    ) -> None:
        try:
            for i in range(req.count if req.count >= 0 else 10**9):
                await stream.send(StreamResponse(count=i, message=f"msg {i}"))
                self.sent += 1
                if req.count < 0:
                    await trio.sleep(0.01)  # an endless feed
        except trio.Cancelled:
            self.stream_cancelled.set()
            raise

    async def Sum(self, stream: trimicro.Stream[Num, Total], ctx: trimicro.Context) -> Total:
        total = count = 0
        async for num in stream:
            total += num.value
            count += 1
        return Total(sum=total, count=count)

    async def Echo(self, stream: trimicro.Stream[EchoMessage, EchoMessage], ctx: trimicro.Context) -> None:
        async for msg in stream:
            await stream.send(msg)


def nats_opts(address: str) -> dict[str, object]:
    return {
        "registry": "nats",
        "registry_address": [address],
        "transport": "nats",
        "transport_address": [address],
        "broker": "memory",
    }


@asynccontextmanager
async def greeter_service(
    address: str, name: str = "greeter"
) -> AsyncIterator[tuple[trimicro.Service, Greeter]]:
    greeter = Greeter()
    svc = trimicro.Service(name, argv=[], handle_signals=False, **nats_opts(address))  # type: ignore[arg-type]
    svc.handle(greeter, name="Greeter")
    async with trimicro.open_service(service=svc) as running:
        yield running, greeter


@asynccontextmanager
async def echo_listener(transport: NatsTransport, address: str = ":0") -> AsyncIterator[str]:
    """A bare listener whose handler echoes each frame with header ``Seen`` = its count on the socket."""

    async def handler(sock: NatsServerSocket) -> None:
        n = 0
        while True:
            try:
                msg = await sock.receive()
            except trio.EndOfChannel:
                return
            n += 1
            await sock.send(Message({**msg.header, "Seen": str(n)}, msg.body))

    listener = await transport.listen(address)
    async with trio.open_nursery() as nursery:
        await nursery.start(listener.serve, handler)
        yield listener.address
        nursery.cancel_scope.cancel()


def test_frame_is_gos_transport_message_json() -> None:
    data = encode_frame(Message({"Micro-Id": "1"}, b"\x00\xff"))
    assert json.loads(data) == {"Header": {"Micro-Id": "1"}, "Body": base64.b64encode(b"\x00\xff").decode()}
    assert decode_frame(b'{"header":null,"body":null}') == Message({}, b"")
    with pytest.raises(ProtocolError) as info:
        decode_frame(b'{"Header":{"a":1}}')
    assert info.value.code == 400


async def test_listen_dial_frames_per_inbox(nats_server: NatsServerProcess) -> None:
    async with NatsTransport([nats_server.address]) as transport, echo_listener(transport) as subject:
        assert subject.startswith("_INBOX.")
        a = await transport.dial(subject)
        b = await transport.dial(subject)
        for i in range(3):
            await a.send(Message({"N": str(i)}, b"a%d" % i))
        await b.send(Message({}, b"b"))
        with trio.fail_after(5):
            got_a = [await a.receive() for _ in range(3)]
            got_b = await b.receive()
        assert [(m.header["N"], m.header["Seen"], m.body) for m in got_a] == [
            ("0", "1", b"a0"), ("1", "2", b"a1"), ("2", "3", b"a2"),
        ]  # fmt: skip
        assert (got_b.header["Seen"], got_b.body) == ("1", b"b")  # its own socket
        await a.aclose()
        await b.aclose()


async def test_go_shaped_peer_on_the_wire(nats_server: NatsServerProcess) -> None:
    """What Go's transport does: PUB to the server subject with the client inbox as reply, JSON in and
    out; an explicit (non-``:0``) address is used as the subject."""
    async with (
        NatsTransport([nats_server.address]) as transport,
        echo_listener(transport, "go.micro.test") as subject,
    ):
        assert subject == "go.micro.test"
        async with NatsClient([nats_server.address]) as raw:
            inbox = await raw.subscribe("_INBOX.gopeer")
            await raw.publish(subject, b'{"Header":{"Micro-Id":"7"},"Body":"aGk="}', reply="_INBOX.gopeer")
            with trio.fail_after(5):
                reply = await inbox.next()
            assert json.loads(reply.payload) == {"Header": {"Micro-Id": "7", "Seen": "1"}, "Body": "aGk="}


async def test_a_trailing_eos_opens_no_socket(nats_server: NatsServerProcess) -> None:
    """Go's client sends its EOS after our stream has ended (and its socket is gone): that frame must
    not open a new socket, which would route it as a fresh stream and wait for a request forever."""
    transport = NatsTransport([nats_server.address])
    async with transport:
        listener = await transport.listen(":0")
        seen: list[Message] = []

        async def handler(sock: NatsServerSocket) -> None:
            seen.append(await sock.receive())

        async with trio.open_nursery() as nursery:
            await nursery.start(listener.serve, handler)
            async with NatsClient([nats_server.address]) as raw:
                eos = b'{"Header":{"Micro-Stream":"1","Micro-Error":"EOS"},"Body":null}'
                await raw.publish(listener.address, eos, reply="_INBOX.late")
                await raw.publish(listener.address, b'{"Header":{"N":"1"},"Body":""}', reply="_INBOX.next")
                with trio.fail_after(5):
                    while not seen:
                        await trio.sleep(0.01)  # polling the handler's list
            assert listener.accepted == 1 and seen[0].header == {"N": "1"}
            nursery.cancel_scope.cancel()


async def test_a_frame_left_unread_is_answered_503(nats_server: NatsServerProcess) -> None:
    """A handler that returns without reading (a draining server does) must not leave the caller
    waiting for its deadline: the frame is answered with a retryable 503."""
    async with NatsTransport([nats_server.address]) as transport:
        listener = await transport.listen(":0")

        async def handler(sock: NatsServerSocket) -> None:
            await trio.lowlevel.checkpoint()  # like a draining server: nothing read, nothing sent

        async with trio.open_nursery() as nursery:
            await nursery.start(listener.serve, handler)
            sock = await transport.dial(listener.address)
            await sock.send(Message({"Micro-Id": "9", "Micro-Endpoint": "Greeter.Hello"}, b"x"))
            with trio.fail_after(5):
                reply = await sock.receive()
            assert reply.header["Micro-Id"] == "9"
            err = trimicro.errors.parse(reply.header["Micro-Error"])
            assert (err.code, err.id) == (503, "go.micro.server")
            nursery.cancel_scope.cancel()


async def test_no_responders_is_a_transport_error_at_once(nats_server: NatsServerProcess) -> None:
    async with NatsTransport([nats_server.address]) as transport:
        sock = await transport.dial("_INBOX.nobody")
        await sock.send(Message({}, b"x"))
        with trio.fail_after(5), pytest.raises(TransportError, match="no responders"):
            await sock.receive()
        await sock.aclose()


async def test_idle_server_socket_closes(nats_server: NatsServerProcess) -> None:
    transport = NatsTransport([nats_server.address], idle_timeout=0.2)
    async with transport:
        listener = await transport.listen(":0")

        async def handler(sock: NatsServerSocket) -> None:
            while True:
                try:
                    msg = await sock.receive()
                except trio.EndOfChannel:
                    return
                await sock.send(msg)

        async with trio.open_nursery() as nursery:
            await nursery.start(listener.serve, handler)
            sock = await transport.dial(listener.address)
            await sock.send(Message({}, b"1"))
            with trio.fail_after(5):
                await sock.receive()
                assert listener.open_connections == 1
                while listener.open_connections:
                    await trio.sleep(0.05)  # polling: the idle close has no event of its own
            # the same inbox again is simply a new server socket
            await sock.send(Message({}, b"2"))
            with trio.fail_after(5):
                assert (await sock.receive()).body == b"2"
            assert listener.accepted == 2
            nursery.cancel_scope.cancel()


async def test_service_unary_and_errors(nats_server: NatsServerProcess) -> None:
    async with greeter_service(nats_server.address) as (svc, _):
        assert svc.address.startswith("_INBOX.")
        [record] = await svc.registry.get_service("greeter")
        assert record.nodes[0].address == svc.address
        metadata = record.nodes[0].metadata
        assert (metadata["transport"], metadata["registry"]) == ("nats", "nats")
        async with trimicro.open_client(**nats_opts(nats_server.address)) as client:  # type: ignore[arg-type]
            for content_type in ("application/protobuf", "application/json"):
                rsp = await client.call(
                    "greeter", "Greeter.Hello", HelloRequest(name="Bob"), response_type=HelloResponse,
                    content_type=content_type, timeout=5,
                )  # fmt: skip
                assert rsp == HelloResponse(greeting="Hello Bob")
            with pytest.raises(MicroError) as info:
                await client.call(
                    "greeter", "Greeter.Hello", HelloRequest(name="fail"), response_type=HelloResponse
                )
            assert (info.value.code, info.value.detail) == (400, "bad name fail")
            with pytest.raises(MicroError) as info:
                await client.call("greeter", "Greeter.Nope", HelloRequest(), response_type=HelloResponse)
            assert info.value.code in (400, 404)
            # sequential calls reuse one pooled socket (one server socket)
            for _ in range(5):
                await client.call(
                    "greeter", "Greeter.Hello", HelloRequest(name="x"), response_type=HelloResponse
                )


async def test_slow_unary_call_outlives_the_idle_timeout(nats_server: NatsServerProcess) -> None:
    transport = NatsTransport([nats_server.address], idle_timeout=0.1)
    greeter = Greeter()
    svc = trimicro.Service("greeter", argv=[], handle_signals=False, **nats_opts(nats_server.address))  # type: ignore[arg-type]
    svc._plugins["transport"] = transport  # the service's own transport, with a short idle timeout
    svc.handle(greeter, name="Greeter")
    async with (
        trimicro.open_service(service=svc),
        trimicro.open_client(**nats_opts(nats_server.address)) as client,
    ):  # type: ignore[arg-type]
        rsp = await client.call(
            "greeter", "Greeter.Slow", SlowRequest(sleep_ms=400), response_type=SlowResponse, timeout=10
        )
        assert rsp.slept_ms == 400


async def test_service_streams(nats_server: NatsServerProcess) -> None:
    async with (
        greeter_service(nats_server.address),
        trimicro.open_client(**nats_opts(nats_server.address)) as client,
    ):  # type: ignore[arg-type]
        async with client.stream(
            "greeter", "Greeter.Stream", request=StreamRequest(count=5), request_type=StreamRequest,
            response_type=StreamResponse,
        ) as stream:  # fmt: skip
            got = [m.count async for m in stream]
        assert got == [0, 1, 2, 3, 4]
        async with client.stream("greeter", "Greeter.Sum", request_type=Num, response_type=Total) as stream:
            for v in (1, 2, 3, 4):
                await stream.send(Num(value=v))
            assert await stream.close_and_receive() == Total(sum=10, count=4)
        async with client.stream(
            "greeter", "Greeter.Echo", request_type=EchoMessage, response_type=EchoMessage
        ) as stream:
            for text in ("a", "b", "c"):
                await stream.send(EchoMessage(text=text))
                assert (await stream.receive()).text == text
            await stream.close_send()


async def test_departed_stream_client_cancels_the_server_handler(nats_server: NatsServerProcess) -> None:
    """Nothing on the wire says a client left; the no-responders status for the server's next frame does."""
    async with greeter_service(nats_server.address) as (_, greeter):
        async with trimicro.open_client(**nats_opts(nats_server.address)) as client:  # type: ignore[arg-type]
            async with client.stream(
                "greeter", "Greeter.Stream", request=StreamRequest(count=-1), request_type=StreamRequest,
                response_type=StreamResponse,
            ) as stream:  # fmt: skip
                assert (await stream.receive()).count == 0
        with trio.fail_after(5):
            await greeter.stream_cancelled.wait()


async def test_nats_down_at_start_is_a_clear_error() -> None:
    port = free_port()  # nothing listens here
    transport = NatsTransport([f"127.0.0.1:{port}"], connect_attempts=2)
    with (
        trio.fail_after(10),
        pytest.raises(TransportError, match=r"cannot connect to NATS .* after 2 attempts"),
    ):
        async with transport:
            pass
    listener = await transport.listen(":0")
    with trio.fail_after(10), pytest.raises(TransportError, match="cannot connect to NATS"):
        await listener.serve(lambda sock: trio.lowlevel.checkpoint())
    # a whole service: the registry is the first to find out
    with trio.fail_after(20), pytest.raises(trimicro.errors.RegistryError, match="cannot connect to NATS"):
        async with greeter_service(f"127.0.0.1:{port}"):
            pass


async def test_dial_outside_async_with_is_a_transport_error() -> None:
    with pytest.raises(TransportError, match="outside"):
        await NatsTransport(["127.0.0.1:1"]).dial("x")
    with pytest.raises(TransportError, match="cannot listen"):
        await NatsTransport().listen("bad subject")


async def test_service_survives_a_nats_server_restart(nats_server: NatsServerProcess) -> None:
    async with (
        greeter_service(nats_server.address),
        trimicro.open_client(**nats_opts(nats_server.address)) as client,
    ):  # type: ignore[arg-type]
        rsp = await client.call(
            "greeter", "Greeter.Hello", HelloRequest(name="a"), response_type=HelloResponse
        )
        assert rsp.greeting == "Hello a"
        await nats_server.stop()
        await nats_server.start()
        with trio.fail_after(20):
            while True:
                try:
                    rsp = await client.call(
                        "greeter",
                        "Greeter.Hello",
                        HelloRequest(name="b"),
                        response_type=HelloResponse,
                        timeout=1,
                    )
                    break
                except MicroError:
                    await trio.sleep(0.1)  # until every connection has reconnected and resubscribed
        assert rsp.greeting == "Hello b"


def test_plugin_from_options() -> None:
    transport = _plugins.create("transport", "nats", Options(transport_address=["127.0.0.1:4333"]))
    assert isinstance(transport, NatsTransport) and transport.name == "nats"
    assert list(transport.servers) == ["127.0.0.1:4333"]
