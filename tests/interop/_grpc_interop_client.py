"""gRPC's standard interop client cases, driven by trimicro's client over ``transport=grpc``.

Each case follows grpc/doc/interop-test-descriptions.md ("Client") against any server of
grpc.testing.TestService (grpc-go's interop server in the tests). A case raises AssertionError (or
the call's error) on failure. Where the spec checks a gRPC status code, we check what trimicro's
client reports: a :class:`MicroError` whose HTTP-style code is :func:`errors.from_grpc_status` of
it (so UNKNOWN and INTERNAL both read 500) and whose detail is the status message.

Cancellation cases check what a trimicro caller can observe: leaving the stream's block by
cancellation ends the call promptly (RST_STREAM CANCEL), and the shared connection keeps working.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import trio

import trimicro.errors as errors
from tests.protos.grpc_testing_pb2 import (
    EchoStatus,
    Empty,
    Payload,
    ResponseParameters,
    SimpleRequest,
    SimpleResponse,
    StreamingInputCallRequest,
    StreamingInputCallResponse,
    StreamingOutputCallRequest,
    StreamingOutputCallResponse,
)
from trimicro.client import Client
from trimicro.context import ResponseMetadata

__all__ = ["CASES", "Case"]

SERVICE: Final = "grpc.testing"
TIMEOUT: Final = 10.0
ECHO_INITIAL: Final = ("x-grpc-test-echo-initial", "test_initial_metadata_value")
ECHO_TRAILING: Final = ("x-grpc-test-echo-trailing-bin", "q6ur")  # base64 of b"\xab\xab\xab"
SPECIAL_MESSAGE: Final = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"

Case = Callable[[Client, str], Awaitable[None]]


def _payload(size: int) -> Payload:
    return Payload(body=bytes(size))


def _expect_status(err: errors.MicroError, status: int, message: str | None = None) -> None:
    assert err.code == errors.from_grpc_status(status), f"want gRPC status {status}, got {err!r}"
    if message is not None:
        assert err.detail == message, f"want message {message!r}, got {err.detail!r}"


async def empty_unary(client: Client, address: str) -> None:
    rsp = await client.call(SERVICE, "TestService.EmptyCall", Empty(), response_type=Empty, address=address)
    assert rsp == Empty()


async def large_unary(client: Client, address: str) -> None:
    req = SimpleRequest(response_size=314159, payload=_payload(271828))
    rsp = await client.call(
        SERVICE, "TestService.UnaryCall", req, response_type=SimpleResponse, address=address, timeout=TIMEOUT
    )
    assert len(rsp.payload.body) == 314159 and not rsp.payload.body.strip(b"\0")


async def client_streaming(client: Client, address: str) -> None:
    async with client.stream(
        SERVICE, "TestService.StreamingInputCall", response_type=StreamingInputCallResponse,
        address=address, timeout=TIMEOUT,
    ) as stream:  # fmt: skip
        for size in (27182, 8, 1828, 45904):
            await stream.send(StreamingInputCallRequest(payload=_payload(size)))
        rsp = await stream.close_and_receive()
    assert rsp.aggregated_payload_size == 74922


_SIZES: Final = (31415, 9, 2653, 58979)
_REQUEST_SIZES: Final = (27182, 8, 1828, 45904)


async def server_streaming(client: Client, address: str) -> None:
    req = StreamingOutputCallRequest(response_parameters=[ResponseParameters(size=s) for s in _SIZES])
    async with client.stream(
        SERVICE, "TestService.StreamingOutputCall", request=req,
        response_type=StreamingOutputCallResponse, address=address, timeout=TIMEOUT,
    ) as stream:  # fmt: skip
        got = [len(rsp.payload.body) async for rsp in stream]
    assert got == list(_SIZES)


async def ping_pong(client: Client, address: str) -> None:
    async with client.stream(
        SERVICE, "TestService.FullDuplexCall", response_type=StreamingOutputCallResponse,
        address=address, timeout=TIMEOUT,
    ) as stream:  # fmt: skip
        for size, req_size in zip(_SIZES, _REQUEST_SIZES, strict=True):
            await stream.send(
                StreamingOutputCallRequest(
                    response_parameters=[ResponseParameters(size=size)], payload=_payload(req_size)
                )
            )
            rsp = await stream.receive()
            assert len(rsp.payload.body) == size
        await stream.close_send()
        assert [m async for m in stream] == []


async def empty_stream(client: Client, address: str) -> None:
    async with client.stream(
        SERVICE, "TestService.FullDuplexCall", response_type=StreamingOutputCallResponse,
        address=address, timeout=TIMEOUT,
    ) as stream:  # fmt: skip
        await stream.close_send()
        assert [m async for m in stream] == []


async def timeout_on_sleeping_server(client: Client, address: str) -> None:
    try:
        async with client.stream(
            SERVICE, "TestService.FullDuplexCall", response_type=StreamingOutputCallResponse,
            address=address, timeout=0.001,
        ) as stream:  # fmt: skip
            await stream.send(StreamingOutputCallRequest(payload=_payload(27182)))
            async for _ in stream:
                pass
    except errors.MicroError as err:
        _expect_status(err, 4)  # DEADLINE_EXCEEDED
    else:
        raise AssertionError("the call did not time out")


async def _still_serving(client: Client, address: str) -> None:
    await empty_unary(client, address)


async def cancel_after_begin(client: Client, address: str) -> None:
    with trio.fail_after(5):
        with trio.CancelScope() as scope:
            async with client.stream(
                SERVICE, "TestService.StreamingInputCall", response_type=StreamingInputCallResponse,
                address=address, timeout=TIMEOUT,
            ):  # fmt: skip
                scope.cancel()
                await trio.sleep_forever()
    assert scope.cancelled_caught
    await _still_serving(client, address)


async def cancel_after_first_response(client: Client, address: str) -> None:
    with trio.fail_after(5):
        with trio.CancelScope() as scope:
            async with client.stream(
                SERVICE, "TestService.FullDuplexCall", response_type=StreamingOutputCallResponse,
                address=address, timeout=TIMEOUT,
            ) as stream:  # fmt: skip
                await stream.send(
                    StreamingOutputCallRequest(
                        response_parameters=[ResponseParameters(size=31415)], payload=_payload(27182)
                    )
                )
                rsp = await stream.receive()
                assert len(rsp.payload.body) == 31415
                scope.cancel()
                await trio.sleep_forever()
    assert scope.cancelled_caught
    await _still_serving(client, address)


async def _status_case(client: Client, address: str, message: str) -> None:
    status = EchoStatus(code=2, message=message)
    try:
        await client.call(
            SERVICE, "TestService.UnaryCall", SimpleRequest(response_status=status),
            response_type=SimpleResponse, address=address, timeout=TIMEOUT,
        )  # fmt: skip
    except errors.MicroError as err:
        _expect_status(err, 2, message)
    else:
        raise AssertionError("UnaryCall did not fail")
    try:
        async with client.stream(
            SERVICE, "TestService.FullDuplexCall", response_type=StreamingOutputCallResponse,
            address=address, timeout=TIMEOUT,
        ) as stream:  # fmt: skip
            await stream.send(StreamingOutputCallRequest(response_status=status))
            await stream.close_send()
            async for _ in stream:
                pass
    except errors.MicroError as err:
        _expect_status(err, 2, message)
    else:
        raise AssertionError("FullDuplexCall did not fail")


async def status_code_and_message(client: Client, address: str) -> None:
    await _status_case(client, address, "test status message")


async def special_status_message(client: Client, address: str) -> None:
    await _status_case(client, address, SPECIAL_MESSAGE)


async def _unimplemented(client: Client, address: str, endpoint: str) -> None:
    try:
        await client.call(SERVICE, endpoint, Empty(), response_type=Empty, address=address, timeout=TIMEOUT)
    except errors.MicroError as err:
        _expect_status(err, 12)  # UNIMPLEMENTED
    else:
        raise AssertionError(f"{endpoint} did not fail")


async def unimplemented_method(client: Client, address: str) -> None:
    await _unimplemented(client, address, "TestService.UnimplementedCall")


async def unimplemented_service(client: Client, address: str) -> None:
    await _unimplemented(client, address, "UnimplementedService.UnimplementedCall")


def _check_echo(out: ResponseMetadata) -> None:
    assert out.header.get("X-Grpc-Test-Echo-Initial") == ECHO_INITIAL[1], out
    assert out.trailer.get("X-Grpc-Test-Echo-Trailing-Bin") == ECHO_TRAILING[1], out


async def custom_metadata(client: Client, address: str) -> None:
    md = dict([ECHO_INITIAL, ECHO_TRAILING])
    out = ResponseMetadata()
    req = SimpleRequest(response_size=314159, payload=_payload(271828))
    await client.call(
        SERVICE, "TestService.UnaryCall", req, response_type=SimpleResponse, address=address,
        timeout=TIMEOUT, metadata=md, metadata_out=out,
    )  # fmt: skip
    _check_echo(out)
    out = ResponseMetadata()
    async with client.stream(
        SERVICE, "TestService.FullDuplexCall", response_type=StreamingOutputCallResponse,
        address=address, timeout=TIMEOUT, metadata=md, metadata_out=out,
    ) as stream:  # fmt: skip
        await stream.send(
            StreamingOutputCallRequest(
                response_parameters=[ResponseParameters(size=314159)], payload=_payload(271828)
            )
        )
        rsp = await stream.receive()
        assert len(rsp.payload.body) == 314159
        await stream.close_send()
        assert [m async for m in stream] == []
    _check_echo(out)


CASES: Final[dict[str, Case]] = {
    case.__name__: case
    for case in (
        empty_unary,
        large_unary,
        client_streaming,
        server_streaming,
        ping_pong,
        empty_stream,
        timeout_on_sleeping_server,
        cancel_after_begin,
        cancel_after_first_response,
        status_code_and_message,
        special_status_message,
        unimplemented_method,
        unimplemented_service,
        custom_metadata,
    )
}
