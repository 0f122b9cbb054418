"""Profile trimicro's hot paths in one process (client and server together): where does a call go?

    python -m bench.profile [unary_c1|unary_c64|unary_64k_c8|stream|bidi] [--seconds 3] [--top 30]

Both ends share one trio loop and one cProfile, so the listing is the whole cost of a call. Besides
CPU time per operation it counts, per operation, trio task steps (``steps_per_op``: every wakeup
of a task, the scheduler's unit of cost) and, when profiling, Python function calls
(``pycalls_per_op``): both are exact counts, unlike timings on a shared machine, so a change that
removes work shows up even when the clock is noisy.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from typing import Any

import trio

from bench import _drive, impl_trimicro

PARAMS = {
    "unary_c1": ("unary", {"size": 0, "concurrency": 1, "max_calls": 10**9}),
    "unary_c64": ("unary", {"size": 0, "concurrency": 64, "max_calls": 10**9}),
    "unary_64k_c8": ("unary", {"size": 65536, "concurrency": 8, "max_calls": 10**9}),
    "stream": ("stream", {"count": 10**9}),
    "bidi": ("bidi", {"max_round_trips": 10**9}),
}


async def _main(scenario: str, seconds: float, transport: str, prof: Any) -> dict[str, float]:
    driver, params = PARAMS[scenario]
    async with trio.open_nursery() as nursery:
        ports: list[int] = []
        ready = trio.Event()
        nursery.start_soon(impl_trimicro.serve, lambda p: (ports.append(p), ready.set()))
        await ready.wait()
        async with impl_trimicro.open_client(f"127.0.0.1:{ports[0]}", transport) as client:
            await _drive.run_trio(client, driver, {**params, "seconds": 0.3})  # warm up
            steps = _Steps()
            trio.lowlevel.add_instrument(steps)
            cpu = time.process_time()
            prof.enable()
            result = await _drive.run_trio(client, driver, {**params, "seconds": seconds})
            prof.disable()
            cpu = time.process_time() - cpu
            trio.lowlevel.remove_instrument(steps)
            n = result.get("calls") or result.get("msgs") or result.get("round_trips") or 1
            # CPU time per operation (client + server): steadier than wall clock on a shared machine.
            result["cpu_us_per_op"] = cpu / n * 1e6
            result["steps_per_op"] = steps.count / n
            if isinstance(prof, cProfile.Profile):
                result["pycalls_per_op"] = pstats.Stats(prof).total_calls / n  # type: ignore[attr-defined]
        nursery.cancel_scope.cancel()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", nargs="?", default="unary_c64", choices=sorted(PARAMS))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--transport", default="http", choices=["http", "grpc"])
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--no-profile", action="store_true", help="only the CPU time per operation")
    args = parser.parse_args()
    prof: Any = _NoProfile() if args.no_profile else cProfile.Profile()
    result = trio.run(_main, args.scenario, args.seconds, args.transport, prof)
    print({k: round(v, 1) for k, v in result.items()})
    if not args.no_profile:
        pstats.Stats(prof).sort_stats(args.sort).print_stats(args.top)


class _Steps(trio.abc.Instrument):
    """Counts task steps (each time the scheduler runs a task until its next checkpoint)."""

    def __init__(self) -> None:
        self.count = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.count += 1


class _NoProfile:
    def enable(self) -> None:
        pass

    def disable(self) -> None:
        pass


if __name__ == "__main__":
    main()
