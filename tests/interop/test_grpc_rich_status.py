"""Rich error details (google.rpc.Status.details) both ways, with googleapis' real types.

A trimicro handler raises ``MicroError(..., details=[BadRequest(...)])``: grpcio sees a
``grpc-status-details-bin`` whose google.rpc.Status holds Go Micro's error first and the BadRequest
after it; a grpcio server that aborts with a rich status reaches a trimicro caller as a MicroError
whose ``unpack`` returns the detail; trimicro to trimicro keeps them over gRPC and mucp.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import trio
from google.rpc import error_details_pb2, status_pb2

import trimicro
from tests.interop import serve_grpc
from tests.interop.test_grpcio_server import stock_server
from tests.protos import greeter_pb2 as pb
from tests.protos import greeter_pb2_grpc as pbg
from trimicro.client import Client
from trimicro.errors import MicroError, decode_details, encode_details
from trimicro.stream import Stream
from trimicro.transport.grpc import GrpcTransport

pytestmark = pytest.mark.loopback


def bad_request() -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field="name", description="empty")]
    )


def rich_error() -> MicroError:
    return MicroError(
        "greeter",
        400,
        "invalid name",
        details=[bad_request(), error_details_pb2.ErrorInfo(reason="EMPTY_NAME", domain="greeter")],
    )


class RichGreeter:
    async def Hello(self, req: pb.HelloRequest, ctx: trimicro.Context) -> pb.HelloResponse:
        raise rich_error()

    async def Stream(
        self, req: pb.StreamRequest, stream: Stream[pb.StreamRequest, pb.StreamResponse], ctx: trimicro.Context
    ) -> None:
        await stream.send(pb.StreamResponse(count=0))
        raise rich_error()


# -- the value type --
def test_details_are_packed_pairs_and_unpack_by_type() -> None:
    err = rich_error()
    assert [url for url, _ in err.details] == [
        "type.googleapis.com/google.rpc.BadRequest",
        "type.googleapis.com/google.rpc.ErrorInfo",
    ]
    assert err.unpack(error_details_pb2.BadRequest) == bad_request()
    assert err.unpack(error_details_pb2.RetryInfo) is None
    assert err == MicroError("greeter", 400, "invalid name")  # Go Micro's four fields only
    assert "details" not in err.to_json()
    again = pickle.loads(pickle.dumps(err))
    assert again.details == err.details
    with pytest.raises(TypeError, match="protobuf message or"):
        MicroError("x", 400, "y", details=["not a message"])


def test_details_header_round_trip_and_garbage() -> None:
    err = rich_error()
    assert decode_details(encode_details(err.details)) == err.details
    for junk in ("", "!!!", "AAAA", "CgA"):
        assert decode_details(junk) == ()


# -- trimicro server, grpcio client --
async def test_grpcio_client_sees_the_details_after_go_micros_error() -> None:
    async with serve_grpc(RichGreeter(), grpc_service="greeter.Greeter") as (address, _, _):

        def call() -> Any:
            with grpc.insecure_channel(address) as channel:
                try:
                    pbg.GreeterStub(channel).Hello(pb.HelloRequest(name=""), timeout=5)
                except grpc.RpcError as exc:
                    return exc.code(), exc.details(), dict(exc.trailing_metadata())
            raise AssertionError("no error")

        with trio.fail_after(30):
            code, message, trailers = await trio.to_thread.run_sync(call)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message == "invalid name"
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert status.message == "invalid name"
    urls = [d.type_url for d in status.details]
    assert urls == [
        "type.googleapis.com/errors.Error",  # Go Micro v5's own, first, as its client expects
        "type.googleapis.com/google.rpc.BadRequest",
        "type.googleapis.com/google.rpc.ErrorInfo",
    ]
    got = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(got) and got == bad_request()


# -- grpcio server, trimicro client --
class RichStock(pbg.GreeterServicer):
    def Hello(self, request: pb.HelloRequest, context: grpc.ServicerContext) -> pb.HelloResponse:
        status = status_pb2.Status(code=grpc.StatusCode.FAILED_PRECONDITION.value[0], message="not yet")
        status.details.add().Pack(error_details_pb2.PreconditionFailure(
            violations=[error_details_pb2.PreconditionFailure.Violation(type="TOS", subject="ann")]
        ))  # fmt: skip
        context.set_trailing_metadata([("grpc-status-details-bin", status.SerializeToString())])
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not yet")
        raise AssertionError("unreachable")

    def Stream(self, request: pb.StreamRequest, context: grpc.ServicerContext) -> Iterator[pb.StreamResponse]:
        yield pb.StreamResponse(count=0)
        self.Hello(pb.HelloRequest(), context)


async def test_trimicro_client_unpacks_a_stock_servers_rich_status() -> None:
    async with stock_server(RichStock()) as (address, _):
        client = Client(None, GrpcTransport())
        try:
            with trio.fail_after(10), pytest.raises(MicroError) as info:
                await client.call(
                    "greeter", "Greeter.Hello", pb.HelloRequest(name="ann"),
                    response_type=pb.HelloResponse, address=address,
                )  # fmt: skip
            assert info.value.code == 412
            assert info.value.detail == "not yet"
            failure = info.value.unpack(error_details_pb2.PreconditionFailure)
            assert failure is not None and failure.violations[0].subject == "ann"

            with trio.fail_after(10), pytest.raises(MicroError) as info:
                async with client.stream(
                    "greeter", "Greeter.Stream", request=pb.StreamRequest(count=1),
                    response_type=pb.StreamResponse, address=address,
                ) as s:  # fmt: skip
                    await s.close_send()
                    async for _ in s:
                        pass
            assert info.value.unpack(error_details_pb2.PreconditionFailure) is not None
        finally:
            await client.aclose()


# -- trimicro to trimicro, gRPC and mucp --
@pytest.mark.parametrize("transport", ["grpc", "http"])
async def test_trimicro_to_trimicro_keeps_details(transport: str, registry: Any, nursery: Any) -> None:
    svc = trimicro.Service("greeter", registry=registry, argv=[], handle_signals=False)
    svc.handle(RichGreeter(), name="Greeter", grpc_service="greeter.Greeter")
    await nursery.start(svc.run)
    async with trimicro.open_client(registry=registry, transport=transport) as client:
        with trio.fail_after(10), pytest.raises(MicroError) as info:
            await client.call("greeter", "Greeter.Hello", pb.HelloRequest(), response_type=pb.HelloResponse)
        assert info.value == MicroError("greeter", 400, "invalid name")
        assert info.value.details == rich_error().details

        with trio.fail_after(10), pytest.raises(MicroError) as info:
            async with client.stream(
                "greeter", "Greeter.Stream", request=pb.StreamRequest(count=1), response_type=pb.StreamResponse
            ) as s:
                await s.close_send()
                async for _ in s:
                    pass
        assert info.value.unpack(error_details_pb2.ErrorInfo) == error_details_pb2.ErrorInfo(
            reason="EMPTY_NAME", domain="greeter"
        )
