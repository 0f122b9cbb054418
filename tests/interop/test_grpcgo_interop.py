"""gRPC's official interop suite, both directions, with grpc-go's stock peers (tests/interop/grpcgo).

* grpc-go's interop client runs each standard case against grpc.testing.TestService served by
  trimicro on its one port (h2c; tests/interop/_grpc_testing.py).
* trimicro's client (``transport=grpc``) runs the same cases (tests/interop/_grpc_interop_client.py)
  against grpc-go's interop server.

The compression cases (client_compressed_unary, server_compressed_unary, and the streaming ones) are
not run: neither grpc-go's interop client nor its interop server implements them. trimicro's gzip and
deflate are tested against grpcio instead (tests/interop/test_grpc_compression.py, docs/grpc.md).
"""

from __future__ import annotations

import pytest

from tests.interop._grpc_interop_client import CASES
from tests.interop._grpc_testing import serve_test_service
from tests.interop._grpcgo import GrpcGoBins, grpcgo, grpcgo_server, run_interop_client
from trimicro.client import Client
from trimicro.transport.grpc import GrpcTransport

__all__ = ["grpcgo", "grpcgo_server"]  # fixtures

pytestmark = pytest.mark.loopback

STANDARD_CASES = [
    "empty_unary",
    "large_unary",
    "client_streaming",
    "server_streaming",
    "ping_pong",
    "empty_stream",
    "timeout_on_sleeping_server",
    "cancel_after_begin",
    "cancel_after_first_response",
    "status_code_and_message",
    "special_status_message",
    "unimplemented_method",
    "unimplemented_service",
    "custom_metadata",
]

#: case -> why it fails today (each is removed by the commit that fixes it)
GO_CLIENT_XFAIL: dict[str, str] = {
}
PY_CLIENT_XFAIL: dict[str, str] = {
}


def _param(case: str, xfails: dict[str, str]) -> object:
    reason = xfails.get(case)
    return pytest.param(case, marks=pytest.mark.xfail(reason=reason, strict=True)) if reason else case


@pytest.mark.parametrize("case", [_param(c, GO_CLIENT_XFAIL) for c in STANDARD_CASES])
async def test_grpcgo_client_against_trimicro(grpcgo: GrpcGoBins, case: str) -> None:
    async with serve_test_service() as address:
        done = await run_interop_client(grpcgo, address, case)
    assert done.returncode == 0, f"grpc-go interop client, case {case}:\n{done.output[-3000:]}"


@pytest.mark.parametrize("case", [_param(c, PY_CLIENT_XFAIL) for c in STANDARD_CASES])
async def test_trimicro_client_against_grpcgo(grpcgo_server: str, case: str) -> None:
    client = Client(None, GrpcTransport())
    try:
        await CASES[case](client, grpcgo_server)
    finally:
        await client.aclose()


def test_every_standard_case_has_a_trimicro_implementation() -> None:
    assert sorted(CASES) == sorted(STANDARD_CASES)


#: gRPC's compression cases, and why none runs here
COMPRESSION_CASES = (
    "client_compressed_unary",
    "server_compressed_unary",
    "client_compressed_streaming",
    "server_compressed_streaming",
)


@pytest.mark.parametrize("case", COMPRESSION_CASES)
def test_compression_cases_are_not_in_grpc_go(case: str) -> None:
    pytest.skip(
        f"{case}: grpc-go's interop client and server do not implement it; trimicro's compression "
        "is tested against grpcio in tests/interop/test_grpc_compression.py"
    )
