"""trimicro's GrpcTransport under concurrency against a stock grpcio server: 200 held-open bidi
streams and 500 concurrent unary calls over one connection (see tests/transport/test_h2_load.py for
the same against trimicro's server, and the bug they pin down).

grpcio's sync server runs each call on a pool thread (grpcio forces the threads), so the pool is
sized for every held stream at once.
"""

from __future__ import annotations

import pytest
import trio

from tests.interop.test_grpcio_server import stock_server
from tests.transport.test_h2_load import grpc_client, hold_bidi_streams, many_unary

pytestmark = pytest.mark.loopback


async def test_200_held_bidi_streams_against_grpcio() -> None:
    async with stock_server(workers=220) as (address, _), grpc_client() as (client, transport):
        with trio.fail_after(30):
            await hold_bidi_streams(client, address, 200)
        assert transport.open_connections == 0


async def test_500_concurrent_unary_against_grpcio() -> None:
    async with stock_server() as (address, _), grpc_client() as (client, transport):
        with trio.fail_after(30):
            await many_unary(client, address, 500, greeting="Hi")
        await client.aclose()
        assert transport.open_connections == 0
