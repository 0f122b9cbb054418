"""trimicro's GrpcTransport under concurrency against a stock grpcio server: 200 held-open bidi
streams and 500 concurrent unary calls over one connection (see tests/transport/test_h2_load.py for
the same against trimicro's server, and the bug they pin down).

grpcio's sync server runs each call on a pool thread (grpcio forces the threads), so the pool is
sized for every held stream at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import grpc
import pytest
import trio

from tests.interop.test_grpcio_server import StockGreeter
from tests.protos import greeter_pb2_grpc as pbg
from tests.transport.test_h2_load import grpc_client, hold_bidi_streams, many_unary

pytestmark = pytest.mark.loopback


@asynccontextmanager
async def stock_server(workers: int) -> AsyncIterator[str]:
    server = grpc.server(ThreadPoolExecutor(max_workers=workers))
    pbg.add_GreeterServicer_to_server(StockGreeter(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        with trio.fail_after(10):
            await trio.to_thread.run_sync(lambda: server.stop(grace=None).wait(5))


async def test_200_held_bidi_streams_against_grpcio() -> None:
    async with stock_server(workers=220) as address, grpc_client() as (client, transport):
        with trio.fail_after(30):
            await hold_bidi_streams(client, address, 200)
        assert transport.open_connections == 0


async def test_500_concurrent_unary_against_grpcio() -> None:
    async with stock_server(workers=16) as address, grpc_client() as (client, transport):
        with trio.fail_after(30):
            await many_unary(client, address, 500, greeting="Hi")
        await client.aclose()
        assert transport.open_connections == 0
