"""Instructions per operation under callgrind: the steady measure of a hot path on a noisy machine.

    python -m bench.instructions [--scenarios unary_c1,bidi] [--transports http,grpc]
                                 [--observe off,tracing] [--ops 1000]

Wall clock and even CPU time on a shared VM move by tens of percent between runs minutes apart;
the number of instructions a call path executes does not. For each combination this runs the
in-process client + server of ``bench.profile`` (one trio loop) twice under valgrind's callgrind,
once for a warm-up and a few operations and once for ``--ops`` more, and reports the difference
divided by ``--ops``: instructions per operation (client and server together), with start-up,
imports and the warm-up cancelled out. The garbage collector is off while measuring (collected and
disabled after the warm-up), so the figure is the code's own work; how often collections run is a
separate question (``gc.callbacks``), because it depends on what else lives in the process.

With the children's fixed hash seed, two runs of one commit agreed within 0.1%. Needs valgrind (``apt-get install -y valgrind``);
it takes about a minute per combination, so it is a command, not part of the CI smoke. The
``--child`` mode is what runs under valgrind (also runnable bare, which the tests do).
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys

import trio

from bench import _drive, impl_trimicro
from bench.profile import PARAMS

#: operations before the counted ones: connections, caches and lazy imports are in both runs
WARM = 200
#: the short run's counted operations (the long one adds ``--ops``)
BASE = 100
_COLLECTED = re.compile(r"^==\d+== Collected : (\d+)$", re.MULTILINE)
_OPS = re.compile(r"^OPS (\d+)$", re.MULTILINE)


def _limit_key(driver: str) -> str:
    return "max_round_trips" if driver == "bidi" else "max_calls"


async def _child(scenario: str, transport: str, ops: int) -> int:
    """Warm up, stop the collector, run ``ops`` operations; the number done."""
    driver, params = PARAMS[scenario]
    key = _limit_key(driver)
    async with trio.open_nursery() as nursery:
        ports: list[int] = []
        ready = trio.Event()
        nursery.start_soon(impl_trimicro.serve, lambda p: (ports.append(p), ready.set()))
        await ready.wait()
        async with impl_trimicro.open_client(f"127.0.0.1:{ports[0]}", transport) as client:
            await _drive.run_trio(client, driver, {**params, "seconds": 1e9, key: WARM})
            gc.collect()
            gc.disable()
            try:
                result = await _drive.run_trio(client, driver, {**params, "seconds": 1e9, key: ops})
            finally:
                gc.enable()
        nursery.cancel_scope.cancel()
    return int(result.get("calls") or result.get("round_trips") or result.get("msgs") or 0)


def _callgrind(scenario: str, transport: str, observe: str, ops: int) -> tuple[int, int]:
    """(operations, instructions) of one child run under callgrind."""
    # A fixed hash seed: string hashes decide dict probe sequences, which would otherwise move the
    # count by about 1% from one process to the next.
    env = {**os.environ, "BENCH_OBSERVE": "" if observe == "off" else observe, "PYTHONHASHSEED": "0"}
    cmd = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, "-m", "bench.instructions", "--child", scenario, transport, str(ops),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
    collected, counted = _COLLECTED.search(done.stderr), _OPS.search(done.stdout)
    if done.returncode != 0 or collected is None or counted is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"callgrind run failed ({scenario} {transport} {observe}): {' | '.join(tail)}")
    return int(counted.group(1)), int(collected.group(1))


def measure(scenario: str, transport: str, observe: str, ops: int) -> float:
    """Instructions per operation: the long run minus the short one, over the operations between."""
    n1, i1 = _callgrind(scenario, transport, observe, BASE)
    n2, i2 = _callgrind(scenario, transport, observe, BASE + ops)
    if n2 <= n1:
        raise SystemExit(f"{scenario}: the long run did no more operations ({n1} vs {n2})")
    return (i2 - i1) / (n2 - n1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", default="unary_c1", help=f"comma-separated, of {','.join(PARAMS)}")
    parser.add_argument("--transports", default="http", help="comma-separated: http (mucp), grpc")
    parser.add_argument("--observe", default="off", help="comma-separated BENCH_OBSERVE values: off, tracing ...")
    parser.add_argument("--ops", type=int, default=1000, help="operations counted (beyond the short run)")
    parser.add_argument("--child", nargs=3, metavar=("SCENARIO", "TRANSPORT", "OPS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        scenario, transport, ops = args.child
        print(f"OPS {trio.run(_child, scenario, transport, int(ops))}", flush=True)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install -y valgrind")
    rows: list[tuple[str, str, str, float]] = []
    for scenario in args.scenarios.split(","):
        if scenario not in PARAMS:
            raise SystemExit(f"unknown scenario {scenario!r}: one of {', '.join(PARAMS)}")
        for transport in args.transports.split(","):
            for observe in args.observe.split(","):
                per_op = measure(scenario, transport, observe, args.ops)
                rows.append((scenario, transport, observe, per_op))
                print(f"{scenario} {transport} {observe}: {per_op:,.0f} instructions per operation", flush=True)
    print()
    print("| scenario | transport | observe | instructions per operation | over off |")
    print("|---|---|---|---|---|")
    base: dict[tuple[str, str], float] = {(s, t): v for s, t, o, v in rows if o == "off"}
    for scenario, transport, observe, per_op in rows:
        off = base.get((scenario, transport))
        over = f"{per_op / off - 1:+.1%}" if off and observe != "off" else ""
        print(f"| {scenario} | {transport} | {observe} | {per_op:,.0f} | {over} |")


if __name__ == "__main__":
    main()
