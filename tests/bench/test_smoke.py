"""The benchmark harness stays runnable: tiny in-process scenarios and the report, never timings."""

from __future__ import annotations

import gc
from typing import Any

import trio

from bench import _drive, impl_floor_tcp, impl_trimicro, instructions, run


async def _serve(nursery: trio.Nursery, module: Any) -> str:
    port = trio.Event()
    got: list[int] = []

    def announce(p: int) -> None:
        got.append(p)
        port.set()

    nursery.start_soon(module.serve, announce)
    await port.wait()
    return f"127.0.0.1:{got[0]}"


TINY = {
    "unary": {"size": 0, "concurrency": 4, "max_calls": 20, "seconds": 10},
    "stream": {"count": 50, "seconds": 10},
    "bidi": {"max_round_trips": 10, "seconds": 10},
}


async def test_trimicro_mucp_scenarios_run_in_process() -> None:
    async with trio.open_nursery() as nursery:
        address = await _serve(nursery, impl_trimicro)
        async with impl_trimicro.open_client(address, "http") as client:
            unary = await _drive.run_trio(client, "unary", dict(TINY["unary"]))
            stream = await _drive.run_trio(client, "stream", dict(TINY["stream"]))
            bidi = await _drive.run_trio(client, "bidi", dict(TINY["bidi"]))
        nursery.cancel_scope.cancel()
    assert unary["calls"] >= 20
    assert stream["msgs"] == 50
    assert bidi["round_trips"] == 10


async def test_the_instruction_counts_child_runs_bare_and_leaves_the_collector_on() -> None:
    """What ``bench.instructions`` runs under valgrind: a fixed number of operations."""
    assert await instructions._child("unary_c1", "http", 5) == 5
    assert await instructions._child("bidi", "http", 3) == 3
    assert gc.isenabled()


async def test_raw_tcp_floor_runs_in_process() -> None:
    async with trio.open_nursery() as nursery:
        address = await _serve(nursery, impl_floor_tcp)
        async with impl_floor_tcp.open_client(address, coalesce=True) as client:
            unary = await _drive.run_trio(client, "unary", {**TINY["unary"], "size": 65536})
            stream = await _drive.run_trio(client, "stream", dict(TINY["stream"]))
        nursery.cancel_scope.cancel()
    assert unary["calls"] >= 20 and unary["mib_per_s"] > 0
    assert stream["msgs"] == 50


def test_report_marks_targets_and_missing_columns() -> None:
    def res(**kw: float) -> list[dict[str, float]]:
        return [kw]

    data = {
        "machine": {"cpu": "x", "cpus": 2, "python": "3.11", "platform": "linux", "versions": {"trio": "0"}},
        "smoke": False,
        "rounds": 1,
        "seconds": 1.0,
        "elapsed_s": 1.0,
        "impls": [{"name": "trimicro-mucp", "label": "trimicro"}, {"name": "grpcio", "label": "grpcio"},
                  {"name": "purerpc", "label": "purerpc"}],
        "scenarios": ["unary_c1", "unary_c64"],
        "results": {
            "trimicro-mucp": {"unary_c1": res(calls_per_s=2000, p50_us=400), "unary_c64": res(calls_per_s=4000)},
            "grpcio": {"unary_c1": res(calls_per_s=1000, p50_us=700), "unary_c64": res(calls_per_s=2000)},
            "purerpc": {},
        },
        "errors": {"trimicro-mucp": {}, "grpcio": {}, "purerpc": {}},
        "skipped": {"purerpc": "not installed"},
    }  # fmt: skip
    text = run.report(data)
    assert "| unary small, concurrency 64, calls/s | 4,000 | 2,000 | n/a |" in text
    assert "trimicro mucp >= 1.5x grpcio sync: 2.00x: met" in text
    assert "p50 <= grpcio sync p50: 400 µs vs 700 µs: met" in text
    assert "purerpc: n/a: not installed" in text
