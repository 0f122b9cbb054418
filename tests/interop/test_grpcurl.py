"""grpcurl (github.com/fullstorydev/grpcurl, built by tests/interop/grpcgo/build.sh) lists, describes
and calls a trimicro service through server reflection alone: no .proto file is handed to it."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from tests.interop import Greeter, serve_grpc
from tests.interop._grpcgo import Finished, GrpcGoBins, grpcgo, run_bounded

__all__ = ["grpcgo"]  # fixture
pytestmark = pytest.mark.loopback


async def grpcurl(bins: GrpcGoBins, address: str, *verb: str, flags: Sequence[str] = ()) -> Finished:
    """``grpcurl -plaintext [flags] ADDRESS [verb...]``, bounded."""
    return await run_bounded([str(bins.grpcurl), "-plaintext", "-max-time", "10", *flags, address, *verb], 30)


def messages(output: str) -> list[dict[str, object]]:
    """grpcurl's JSON responses (one pretty-printed object each)."""
    decoder, out, pos = json.JSONDecoder(), [], 0
    text = output.strip()
    while pos < len(text):
        obj, pos = decoder.raw_decode(text, pos)
        out.append(obj)
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


async def test_list_describe_and_call(grpcgo: GrpcGoBins) -> None:
    async with serve_grpc(grpc_service="greeter.Greeter") as (address, server, _):
        server.server.router.handle(Greeter(), name="Secret", internal=True)  # as Debug is

        listed = await grpcurl(grpcgo, address, "list")
        assert listed.returncode == 0, listed.output
        assert listed.output.split() == ["greeter.Greeter", "grpc.health.v1.Health"]

        described = await grpcurl(grpcgo, address, "describe", "greeter.Greeter")
        assert described.returncode == 0, described.output
        assert "rpc Hello ( .greeter.HelloRequest ) returns ( .greeter.HelloResponse );" in described.output
        assert "rpc Echo ( stream .greeter.EchoMessage ) returns ( stream .greeter.EchoMessage );" in (
            described.output
        )
        method = await grpcurl(grpcgo, address, "describe", "greeter.Greeter.Hello")
        assert method.returncode == 0 and "rpc Hello" in method.output, method.output
        message = await grpcurl(grpcgo, address, "describe", "greeter.HelloRequest")
        assert message.returncode == 0 and "string name = 1;" in message.output, message.output

        hello = await grpcurl(grpcgo, address, "greeter.Greeter/Hello", flags=["-d", '{"name": "Ann"}'])
        assert hello.returncode == 0, hello.output
        assert messages(hello.output) == [{"greeting": "Hello Ann"}]

        stream = await grpcurl(grpcgo, address, "greeter.Greeter/Stream", flags=["-d", '{"count": 3}'])
        assert stream.returncode == 0, stream.output
        assert [int(str(m.get("count", 0))) for m in messages(stream.output)] == [0, 1, 2]

        health = await grpcurl(grpcgo, address, "grpc.health.v1.Health/Check", flags=["-d", "{}"])
        assert health.returncode == 0, health.output
        assert messages(health.output) == [{"status": "SERVING"}]


async def test_errors_reach_grpcurl_as_plain_status(grpcgo: GrpcGoBins) -> None:
    async with serve_grpc(grpc_service="greeter.Greeter") as (address, _, _):
        failed = await grpcurl(grpcgo, address, "greeter.Greeter/Fail", flags=["-d", '{"name": "x"}'])
        assert failed.returncode != 0
        assert "Code: InvalidArgument" in failed.output
        assert "Message: bad name: x" in failed.output, failed.output
        unknown = await grpcurl(grpcgo, address, "describe", "greeter.Nope")
        assert unknown.returncode != 0
        assert "greeter.Nope" in unknown.output and "not found" in unknown.output, unknown.output


async def test_reflection_off_hides_the_schema(grpcgo: GrpcGoBins) -> None:
    async with serve_grpc(grpc_service="greeter.Greeter", reflection=False) as (address, _, _):
        listed = await grpcurl(grpcgo, address, "list")
        assert listed.returncode != 0
        assert "does not support the reflection API" in listed.output, listed.output
