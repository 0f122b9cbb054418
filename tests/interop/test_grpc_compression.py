"""gRPC message compression both ways (gzip, deflate), with grpcio as the independent peer.

grpc-go's interop client and server implement none of gRPC's compression cases (docs/grpc.md), so
the stock peer here is grpcio, whose client compresses requests on request and whose server
compresses responses when configured to. What trimicro itself puts on the wire (the ``grpc-encoding``
header, the per-message compressed flag) is read with a raw HTTP/2 client (h2 as the oracle).
grpcio's threads: as in test_grpcio_client.py, every grpcio session runs in ``trio.to_thread`` with
a deadline on each call.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from typing import Any

import grpc
import h2.events
import pytest
import trio

import trimicro
from tests.conftest import Greeter as BaseGreeter
from tests.interop import serve_grpc
from tests.interop.test_grpcio_client import in_thread
from tests.interop.test_grpcio_server import stock_server
from tests.protos import greeter_pb2 as pb
from tests.protos import greeter_pb2_grpc as pbg
from tests.transport.test_h2_faults import RawClient, frame
from trimicro.client import Client
from trimicro.codec import COMPRESS_MIN, frame_message
from trimicro.config import Options
from trimicro.context import ResponseMetadata
from trimicro.transport.grpc import GrpcTransport, from_options

pytestmark = pytest.mark.loopback

NAME = "compressible " * 200  # 2.6 KB of text: gzip makes it a few dozen bytes


class Greeter(BaseGreeter):
    """The test greeter (same name: same gRPC paths), whose ``Meta`` asks for gzip responses itself."""

    async def Meta(self, req: pb.HelloRequest, ctx: trimicro.Context) -> pb.HelloResponse:
        ctx.set_compression("gzip")
        return pb.HelloResponse(greeting=f"Hello {req.name}")


def grpcio_session(address: str, compression: grpc.Compression | None) -> Callable[[], list[str]]:
    def run() -> list[str]:
        with grpc.insecure_channel(address, compression=compression) as channel:
            stub = pbg.GreeterStub(channel)
            out = [stub.Hello(pb.HelloRequest(name=NAME), timeout=10).greeting]
            out += [r.message for r in stub.Stream(pb.StreamRequest(count=3), timeout=10)]
            total = stub.Sum(iter([pb.Num(value=i) for i in range(5)]), timeout=10)
            out.append(str(total.sum))
            echoed = stub.Echo(iter([pb.EchoMessage(text=NAME)] * 2), timeout=10)
            out += [m.text for m in echoed]
            return out

    return run


@pytest.mark.parametrize("compression", [grpc.Compression.Gzip, grpc.Compression.Deflate])
@pytest.mark.parametrize("server_compression", ["", "gzip"])
async def test_grpcio_client_compressed_all_four_kinds(
    compression: grpc.Compression, server_compression: str
) -> None:
    async with serve_grpc(compression=server_compression) as (address, _server, _):
        out = await in_thread(grpcio_session(address, compression))
    assert out[0] == f"Hello {NAME}"
    assert out[4] == "10" and out[5:] == [NAME, NAME]


async def test_grpcio_client_reads_compressed_responses_it_did_not_ask_for_in_kind() -> None:
    # grpcio lists gzip/deflate in grpc-accept-encoding: server_compression applies to it.
    async with serve_grpc(compression="gzip") as (address, _server, _):
        out = await in_thread(grpcio_session(address, None))
    assert out[0] == f"Hello {NAME}" and out[5:] == [NAME, NAME]


async def response_of(
    address: str, extra: list[tuple[str, str]], body: bytes, path: str = "/greeter.Greeter/Hello"
) -> tuple[dict[bytes, bytes], bytes, dict[bytes, bytes]]:
    """(response headers, the DATA bytes, trailers) of one raw call."""
    client = await RawClient.connect(address)
    try:
        with trio.fail_after(10):
            return await _response_of(client, path, extra, body)
    finally:
        await client.sock.aclose()


async def _response_of(
    client: RawClient, path: str, extra: list[tuple[str, str]], body: bytes
) -> tuple[dict[bytes, bytes], bytes, dict[bytes, bytes]]:
    sid = await client.call(path, body, extra=extra)
    headers = dict((await client.until(sid, h2.events.ResponseReceived)).headers)
    assert b"grpc-status" not in headers, headers  # not a trailers-only error
    data = b""
    while len(data) < 5 or len(data) < 5 + struct.unpack(">I", data[1:5])[0]:
        data += (await client.until(sid, h2.events.DataReceived)).data
    return headers, data, await client.trailers(sid)


def payload_of(data: bytes) -> bytes:
    flag, size = struct.unpack(">BI", data[:5])
    body = data[5 : 5 + size]
    return gzip.decompress(body) if flag else body


async def test_server_answers_a_gzip_request_in_gzip() -> None:
    body = frame_message(pb.HelloRequest(name=NAME).SerializeToString(), "gzip")
    assert body[0] == 1
    async with serve_grpc() as (address, _server, _):
        headers, data, trailers = await response_of(
            address, [("grpc-encoding", "gzip"), ("grpc-accept-encoding", "gzip")], body
        )
    assert headers[b"grpc-encoding"] == b"gzip" and data[0] == 1 and trailers[b"grpc-status"] == b"0"
    assert pb.HelloResponse.FromString(payload_of(data)).greeting == f"Hello {NAME}"
    assert len(data) < len(NAME) // 10


@pytest.mark.parametrize(("accept", "compressed"), [("gzip,deflate", True), ("identity", False), ("", False)])
async def test_server_compression_only_for_clients_that_accept_it(accept: str, compressed: bool) -> None:
    extra = [("grpc-accept-encoding", accept)] if accept else []
    body = frame(pb.HelloRequest(name=NAME).SerializeToString())
    async with serve_grpc(compression="gzip") as (address, _server, _):
        headers, data, _ = await response_of(address, extra, body)
    assert (headers.get(b"grpc-encoding") == b"gzip") is compressed and (data[0] == 1) is compressed
    assert pb.HelloResponse.FromString(payload_of(data)).greeting == f"Hello {NAME}"


async def test_small_messages_go_out_plain_on_a_compressed_stream() -> None:
    body = frame(pb.HelloRequest(name="a").SerializeToString())
    async with serve_grpc(compression="gzip") as (address, _server, _):
        headers, data, _ = await response_of(address, [("grpc-accept-encoding", "gzip")], body)
    assert headers[b"grpc-encoding"] == b"gzip" and data[0] == 0  # the flag is per message
    assert len(data) - 5 < COMPRESS_MIN


@pytest.mark.parametrize(("accept", "compressed"), [("gzip", True), ("deflate", False)])
async def test_a_handler_chooses_compression(accept: str, compressed: bool) -> None:
    body = frame(pb.HelloRequest(name=NAME).SerializeToString())
    async with serve_grpc(Greeter()) as (address, _server, _):
        headers, data, _ = await response_of(
            address, [("grpc-accept-encoding", accept)], body, "/greeter.Greeter/Meta"
        )
    assert (data[0] == 1) is compressed and (b"grpc-encoding" in headers) is compressed
    assert pb.HelloResponse.FromString(payload_of(data)).greeting == f"Hello {NAME}"


def test_set_compression_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unsupported compression 'br'"):
        trimicro.Context("s", "e", {}).set_compression("br")


async def test_unsupported_request_encoding_is_unimplemented_naming_what_works() -> None:
    async with serve_grpc() as (address, _server, _):
        client = await RawClient.connect(address)
        sid = await client.call(
            "/greeter.Greeter/Hello", frame(b"x", flag=1), extra=[("grpc-encoding", "br")]
        )
        rsp = dict((await client.until(sid, h2.events.ResponseReceived)).headers)
        await client.sock.aclose()
    assert rsp[b"grpc-status"] == b"12" and b"unsupported grpc-encoding 'br'" in rsp[b"grpc-message"]
    assert rsp[b"grpc-accept-encoding"] == b"identity,gzip,deflate"


async def trimicro_calls(client: Client, address: str) -> tuple[str, str, list[str], ResponseMetadata]:
    md = ResponseMetadata()
    reply = await client.call(
        "greeter", "Greeter.Hello", pb.HelloRequest(name=NAME),
        response_type=pb.HelloResponse, address=address, metadata_out=md,
    )  # fmt: skip
    echoed = []
    async with client.stream(
        "greeter", "Greeter.Echo", response_type=pb.EchoMessage, address=address
    ) as stream:
        for _ in range(2):
            await stream.send(pb.EchoMessage(text=NAME))
            echoed.append((await stream.receive()).text)
        await stream.close_send()
    return reply.greeting, md.compression, echoed, md


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
async def test_trimicro_client_compresses_for_grpcio_server(compression: str) -> None:
    async with stock_server() as (address, _servicer):
        client = Client(None, GrpcTransport(compression=compression))
        try:
            greeting, _, echoed, _ = await trimicro_calls(client, address)
        finally:
            await client.aclose()
    assert greeting == f"Hi {NAME}" and echoed == [NAME, NAME]


async def test_trimicro_client_reads_a_grpcio_server_compressed_reply() -> None:
    import concurrent.futures

    servicer: Any = None
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=4), compression=grpc.Compression.Gzip
    )
    from tests.interop.test_grpcio_server import StockGreeter

    servicer = StockGreeter()
    pbg.add_GreeterServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    client = Client(None, GrpcTransport())
    try:
        greeting, encoding, echoed, _ = await trimicro_calls(client, f"127.0.0.1:{port}")
    finally:
        await client.aclose()
        with trio.fail_after(10):
            await trio.to_thread.run_sync(lambda: server.stop(grace=None).wait(5))
    assert greeting == f"Hi {NAME}" and echoed == [NAME, NAME] and encoding == "gzip"


@pytest.mark.parametrize("compression", ["gzip", "deflate", "identity", ""])
async def test_trimicro_both_ends(compression: str) -> None:
    async with serve_grpc() as (address, _server, _):
        client = Client(None, from_options(Options(client_compression=compression)))
        try:
            greeting, encoding, echoed, _ = await trimicro_calls(client, address)
        finally:
            await client.aclose()
    assert greeting == f"Hello {NAME}" and echoed == [NAME, NAME]
    assert encoding == ("" if compression in ("", "identity") else compression)  # answered in kind


def test_options_are_validated_naming_the_option() -> None:
    with pytest.raises(ValueError, match="option server_compression must be gzip, deflate or identity"):
        Options(server_compression="br")
    with pytest.raises(ValueError, match="option client_compression"):
        Options(client_compression="zstd")
    assert trimicro.config.load_options(env={"MICRO_CLIENT_COMPRESSION": "gzip"}).client_compression == "gzip"
