"""gRPC message size limits both ways (RESOURCE_EXHAUSTED), their options' validation, and malformed
``grpc-timeout`` headers (INTERNAL, as grpc-go answers them)."""

from __future__ import annotations

import pytest

from tests.interop import serve_grpc
from tests.protos import greeter_pb2 as pb
from tests.transport.test_h2_faults import RawClient, frame
from trimicro.client import Client
from trimicro.config import Options
from trimicro.errors import MicroError
from trimicro.transport.grpc import GrpcTransport, from_options

pytestmark = pytest.mark.loopback


async def test_server_send_limit_is_resource_exhausted() -> None:
    async with serve_grpc(max_send_message_size=8) as (address, _server, _):
        client = await RawClient.connect(address)
        sid = await client.call(
            "/greeter.Greeter/Hello", frame(pb.HelloRequest(name="a long name").SerializeToString())
        )
        status, message = await client.status(sid)
        assert status == 8 and "exceeds the send limit of 8" in message
        await client.sock.aclose()


async def test_server_recv_limit_is_resource_exhausted() -> None:
    async with serve_grpc(max_message_size=8) as (address, _server, _):
        client = await RawClient.connect(address)
        sid = await client.call(
            "/greeter.Greeter/Hello", frame(pb.HelloRequest(name="a long name").SerializeToString())
        )
        assert (await client.status(sid))[0] == 8
        await client.sock.aclose()


async def test_client_send_limit_fails_before_sending() -> None:
    async with serve_grpc() as (address, _server, _):
        client = Client(None, GrpcTransport(max_send_message_size=8))
        try:
            with pytest.raises(MicroError) as info:
                await client.call(
                    "greeter", "Greeter.Hello", pb.HelloRequest(name="a long name"),
                    response_type=pb.HelloResponse, address=address,
                )  # fmt: skip
            assert info.value.code == 429 and "send limit" in info.value.detail
            reply = await client.call(
                "greeter",
                "Greeter.Hello",
                pb.HelloRequest(name="a"),
                response_type=pb.HelloResponse,
                address=address,
            )
            assert reply.greeting == "Hello a"
        finally:
            await client.aclose()


async def test_client_recv_limit() -> None:
    async with serve_grpc() as (address, _server, _):
        client = Client(None, GrpcTransport(max_message_size=8))
        try:
            with pytest.raises(MicroError):
                await client.call(
                    "greeter", "Greeter.Hello", pb.HelloRequest(name="a long name"),
                    response_type=pb.HelloResponse, address=address,
                )  # fmt: skip
        finally:
            await client.aclose()


@pytest.mark.parametrize(
    "value", ["", "S", "1", "1x", "123456789S", "-1S", "1.5S", "nanS", "\u0661S", "9" * 400]
)
async def test_malformed_grpc_timeout_is_internal_and_the_connection_keeps_serving(value: str) -> None:
    body = frame(pb.HelloRequest(name="a").SerializeToString())
    async with serve_grpc() as (address, _server, _):
        client = await RawClient.connect(address)
        sid = await client.call("/greeter.Greeter/Hello", body, extra=[("grpc-timeout", value)])
        status, message = await client.status(sid)
        assert status == 13 and "malformed grpc-timeout" in message  # INTERNAL, no deadline-less run
        sid = await client.call("/greeter.Greeter/Hello", body, extra=[("grpc-timeout", "99999999H")])
        assert (await client.status(sid))[0] == 0
        await client.sock.aclose()


def test_options_are_validated_in_one_line() -> None:
    with pytest.raises(ValueError, match="server_max_send_msg_size must be >= 1"):
        Options(server_max_send_msg_size=0)
    with pytest.raises(ValueError, match="client_max_recv_msg_size must be >= 1"):
        Options(client_max_recv_msg_size=-1)
    transport = from_options(Options(client_max_send_msg_size=100, client_max_recv_msg_size=200))
    assert (transport.max_send_message_size, transport.max_message_size) == (100, 200)


def test_h2_policy_is_validated_in_one_line() -> None:
    from trimicro.transport import H2Policy

    with pytest.raises(ValueError, match="keepalive_time must be a positive number of seconds"):
        H2Policy(keepalive_time=0)
