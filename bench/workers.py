"""Multi-core serving: trimicro's mucp unary c=64 against 1 and 2 ``server_workers``.

    python -m bench.workers [--seconds 2] [--rounds 2] [--workers 1,2]

The server is a real :class:`~trimicro.Service` (memory registry: nothing leaves the process) with
``server_workers=N``: N processes on one ``SO_REUSEPORT`` port. Nothing is pinned: the workers and the
load generator share the machine's cores, which is the point (and the catch) on a 2-core box. Two
load generators, each c=64 over 64 connections (the kernel spreads them across the workers): trimicro's
own Python client and the Go Micro client (bench/go, much cheaper per call, so more CPU is left to
the server). Rounds alternate 1 worker, 2 workers, ...
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from bench import _proc
from bench.run import ROOT, _build_go, _env, _Lines, _spawn, _stop, log

PARAMS = {"size": 0, "concurrency": 64, "max_calls": 1_000_000}


def serve(workers: int) -> None:
    import trio

    from bench.impl_trimicro import SERVICE, Greeter
    from trimicro import Service

    service = Service(
        SERVICE, registry="memory", address="127.0.0.1:0", handlers=[Greeter()], server_workers=workers
    )

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            if "TRIMICRO_WORKER" not in os.environ:  # the supervisor (or the single process) announces
                _proc._announce(int(str(service.address).rpartition(":")[2]))

    trio.run(main)


def client(address: str, seconds: float) -> None:
    import trio

    from bench import _drive, impl_trimicro

    async def main() -> dict[str, Any]:
        async with impl_trimicro.open_client(address, "http") as c:
            return await _drive.run_trio(c, "unary", {**PARAMS, "seconds": seconds})

    _drive.emit(trio.run(main))


def _result(cmd: list[str], seconds: float) -> dict[str, Any]:
    proc = _spawn(cmd)
    try:
        lines = _Lines(proc)
        deadline = time.monotonic() + seconds + 60
        while (line := lines.readline(deadline)) is not None:
            if line.startswith("RESULT "):
                return dict(json.loads(line[7:]))
        raise RuntimeError(f"no result from {cmd[:4]}")
    finally:
        _stop(proc)


def measure(workers: int, seconds: float, go: bool) -> dict[str, float]:
    cmd = [sys.executable, "-m", "bench.workers", "serve", str(workers)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE)
    try:
        line = _Lines(proc).readline(time.monotonic() + 60)
        if not line or not line.startswith("PORT "):
            raise RuntimeError(f"server did not start: {line!r}")
        address = f"127.0.0.1:{int(line.split()[1])}"
        out = {}
        py = _result([sys.executable, "-m", "bench.workers", "client", address, str(seconds)], seconds)
        out["python_client"] = py["calls_per_s"]
        if go:
            args = ["client", "--address", address, "--concurrency", "64", "--seconds", str(seconds)]
            out["go_client"] = _result([str(_proc.GOBENCH), *args], seconds)["calls_per_s"]
        return out
    finally:
        proc.terminate()  # SIGTERM: the supervisor stops its workers
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        serve(int(argv[1]))
        return 0
    if argv[:1] == ["client"]:
        client(argv[1], float(argv[2]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args(argv)
    why_not_go = _build_go()
    if why_not_go:
        log(f"no Go client: {why_not_go}")
    counts = [int(n) for n in args.workers.split(",")]
    results: dict[int, dict[str, list[float]]] = {n: {} for n in counts}
    for rnd in range(args.rounds):
        for n in counts:
            got = measure(n, args.seconds, why_not_go is None)
            for k, v in got.items():
                results[n].setdefault(k, []).append(v)
            log(f"round {rnd + 1} workers={n} " + " ".join(f"{k} {v:,.0f} calls/s" for k, v in got.items()))
    for n in counts:
        print(
            f"workers={n}: "
            + ", ".join(f"{k} {statistics.median(v):,.0f} calls/s" for k, v in results[n].items())
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
