"""Process entry points the runner starts (one server process, one client process per measurement).

python -m bench._proc serve IMPL            prints "PORT <n>", serves until killed
python -m bench._proc client IMPL ADDRESS SCENARIO PARAMS_JSON
                                            prints "RESULT {...}" (memory scenarios then "READY")

The Go Micro columns exec bench/go/bin/gobench after pinning (the CPU affinity survives exec, and Go
sizes GOMAXPROCS from it): "go-micro" is Go client -> Go server, "go-client-mucp" is the Go client
driving trimicro's mucp server.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
from collections.abc import Callable
from typing import Any

from bench import _drive

GOBENCH = pathlib.Path(__file__).resolve().parent / "go" / "bin" / "gobench"
GO_IMPLS = ("go-micro", "go-client-mucp")


def _announce(port: int) -> None:
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()


def serve(impl: str) -> None:
    if impl == "go-micro":
        os.execv(GOBENCH, [str(GOBENCH), "server"])
    if impl in ("trimicro-mucp", "trimicro-grpc", "go-client-mucp"):
        import trio

        from bench import impl_trimicro

        trio.run(impl_trimicro.serve, _announce)
    elif impl == "grpcio":
        from bench import impl_grpcio

        impl_grpcio.serve_sync(_announce)
    elif impl == "grpc-aio":
        import asyncio

        from bench import impl_grpcio

        asyncio.run(impl_grpcio.serve_aio(_announce))
    elif impl == "purerpc":
        import anyio

        from bench import impl_purerpc

        anyio.run(impl_purerpc.serve, _announce, backend="trio")
    elif impl.startswith("floor-"):
        import trio

        module = _floor(impl)
        trio.run(module.serve, _announce)
    else:
        raise SystemExit(f"unknown implementation {impl}")


def _floor(impl: str) -> Any:
    name = impl.removeprefix("floor-")
    if name == "tcp":
        from bench import impl_floor_tcp as module
    elif name == "h11":
        from bench import impl_floor_h11 as module
    elif name == "h2":
        from bench import impl_floor_h2 as module
    else:
        raise SystemExit(f"unknown floor {impl}")
    return module


def _trio_client(open_client: Callable[[], Any], scenario: str, params: dict[str, Any]) -> dict[str, Any]:
    import trio

    async def main() -> dict[str, Any]:
        async with open_client() as client:
            return await _drive.run_trio(client, scenario, params)

    return trio.run(main)


def go_client(address: str, scenario: str, params: dict[str, Any]) -> None:
    """Become the Go client (it prints the RESULT line itself)."""
    if scenario not in ("unary", "bidi"):
        raise SystemExit(f"the Go client has no {scenario} scenario")
    args = [str(GOBENCH), "client", "--address", address, "--mode", scenario]
    args += ["--seconds", str(params.get("seconds", 2))]
    if scenario == "unary":
        args += ["--concurrency", str(params.get("concurrency", 1)), "--size", str(params.get("size", 0))]
        args += ["--max", str(params.get("max_calls", 1_000_000))]
    else:
        args += ["--max", str(params.get("max_round_trips", 1_000_000))]
    sys.stdout.flush()
    os.execv(GOBENCH, args)


def client(impl: str, address: str, scenario: str, params: dict[str, Any]) -> dict[str, Any]:
    if impl in ("trimicro-mucp", "trimicro-grpc"):
        from bench import impl_trimicro

        kind = "grpc" if impl == "trimicro-grpc" else "http"
        return _trio_client(lambda: impl_trimicro.open_client(address, kind), scenario, params)
    if impl == "grpcio":
        from bench import impl_grpcio

        return _drive.run_threads(impl_grpcio.SyncClient(address), scenario, params)
    if impl == "grpc-aio":
        import asyncio

        from bench import impl_grpcio

        async def main() -> dict[str, Any]:
            return await _drive.run_asyncio(impl_grpcio.AioClient(address), scenario, params)

        return asyncio.run(main())
    if impl == "purerpc":
        import anyio

        from bench import impl_purerpc

        async def run_purerpc() -> dict[str, Any]:
            async with impl_purerpc.open_client(address) as c:
                return await _drive.run_trio(c, scenario, params)

        return anyio.run(run_purerpc, backend="trio")  # type: ignore[no-any-return]
    if impl.startswith("floor-"):
        module = _floor(impl)
        coalesce = bool(params.pop("coalesce", False))
        return _trio_client(lambda: module.open_client(address, coalesce=coalesce), scenario, params)
    raise SystemExit(f"unknown implementation {impl}")


def main(argv: list[str]) -> None:
    cmd, impl, *rest = argv
    impl, _, observe = impl.partition("+")  # trimicro-mucp+tracing: BENCH_OBSERVE=tracing
    if observe:
        os.environ["BENCH_OBSERVE"] = observe
    if cmd == "serve":
        _drive.pin(int(rest[0]) if rest else 0)
        serve(impl)
    elif cmd == "client":
        address, scenario, params_json = rest
        params = json.loads(params_json)
        _drive.pin(int(params.pop("cpu", 1)))
        if impl in GO_IMPLS:
            go_client(address, scenario, params)
        _drive.emit(client(impl, address, scenario, params))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
