"""A stream whose deadline passes while it is being opened times out (408), instead of crashing on
a negative timeout or reporting the interrupted connect as a 500 (both seen in gRPC's
timeout_on_sleeping_server interop case, 1 ms deadline)."""

from __future__ import annotations

import pytest

from tests.interop import serve_grpc
from tests.protos import greeter_pb2 as pb
from trimicro.client import Client
from trimicro.errors import MicroError
from trimicro.transport.grpc import GrpcTransport

pytestmark = pytest.mark.loopback


async def test_deadline_passed_while_opening_is_a_timeout() -> None:
    async with serve_grpc() as (address, _server, _greeter):
        client = Client(None, GrpcTransport())
        try:
            # A pooled call keeps the HTTP/2 connection open, so opening the stream does not dial.
            await client.call(
                "greeter",
                "Greeter.Hello",
                pb.HelloRequest(name="x"),
                response_type=pb.HelloResponse,
                address=address,
            )
            with pytest.raises(MicroError) as info:
                async with client.stream(
                    "greeter", "Greeter.Echo", response_type=pb.EchoMessage, address=address, timeout=1e-9
                ) as stream:
                    await stream.send(pb.EchoMessage(text="late"))
                    async for _ in stream:
                        pass
            assert info.value.code == 408
        finally:
            await client.aclose()


async def test_deadline_passed_while_connecting_is_a_timeout() -> None:
    async with serve_grpc() as (address, _server, _greeter):
        client = Client(None, GrpcTransport())
        try:
            with pytest.raises(MicroError) as info:
                async with client.stream(
                    "greeter", "Greeter.Echo", response_type=pb.EchoMessage, address=address, timeout=1e-9
                ):
                    pass
            assert info.value.code == 408, info.value
        finally:
            await client.aclose()
