"""Over gRPC, a server-streaming call half-closes after its one request, so a server that reads the
request side to its end before answering (grpc-go's cardinality check) is not left waiting until the
deadline."""

from __future__ import annotations

import pytest
import trio

from tests.interop import serve_grpc
from tests.protos import greeter_pb2 as pb
from trimicro.client import Client
from trimicro.context import Context
from trimicro.stream import Stream
from trimicro.transport.grpc import GrpcTransport

pytestmark = pytest.mark.loopback


class StrictStreamer:
    """Reads the request side to its end before answering, as grpc-go >= 1.7x does."""

    async def Stream(
        self, req: pb.StreamRequest, stream: Stream[pb.StreamRequest, pb.StreamResponse], ctx: Context
    ) -> None:
        with pytest.raises(trio.EndOfChannel):
            await stream.receive()
        for i in range(req.count):
            await stream.send(pb.StreamResponse(count=i))


async def test_server_stream_half_closes_after_its_request() -> None:
    async with serve_grpc(StrictStreamer()) as (address, _server, _handler):
        client = Client(None, GrpcTransport())
        try:
            with trio.fail_after(5):
                async with client.stream(
                    "greeter", "StrictStreamer.Stream", request=pb.StreamRequest(count=3),
                    response_type=pb.StreamResponse, address=address, timeout=4,
                ) as s:  # fmt: skip
                    assert [m.count async for m in s] == [0, 1, 2]
        finally:
            await client.aclose()
