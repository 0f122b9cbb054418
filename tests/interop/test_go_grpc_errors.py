"""Go Micro v5's own gRPC client (go-micro.dev/v5/client/grpc) reads a trimicro server's errors whole:
id, code, detail and status come back from grpc-status-details-bin (its errors.Error detail), while
grpc-message carries only the detail for stock gRPC clients."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.interop import serve_grpc
from tests.interop._go import run_go

pytestmark = pytest.mark.loopback

GO_LOCAL = ["--registry", "memory", "--broker", "memory"]


async def test_go_micro_grpc_client_recovers_the_whole_error(go_interop: Path) -> None:
    async with serve_grpc() as (address, _server, _greeter):
        go = await run_go(
            go_interop,
            ["client", *GO_LOCAL, "--grpc", "--address", address, "--service", "greeter",
             "--endpoint", "Greeter.Fail", "--request", json.dumps({"name": "x"}),
             "--content_type", "application/protobuf"],
        )  # fmt: skip
    assert go.returncode == 3, go.describe()
    (result,) = [ev for ev in go.events if "ok" in ev]
    assert result["error"] == {"id": "greeter", "code": 400, "detail": "bad name: x", "status": "Bad Request"}
    assert json.loads(result["error_text"])["detail"] == "bad name: x"


async def test_go_micro_grpc_client_calls_trimicro(go_interop: Path) -> None:
    async with serve_grpc() as (address, _server, _greeter):
        go = await run_go(
            go_interop,
            ["client", *GO_LOCAL, "--grpc", "--address", address, "--service", "greeter",
             "--endpoint", "Greeter.Hello", "--request", json.dumps({"name": "go"}),
             "--content_type", "application/protobuf"],
        )  # fmt: skip
    assert go.returncode == 0, go.describe()
    (result,) = [ev for ev in go.events if "ok" in ev]
    assert result["response"] == {"greeting": "Hello go"}
