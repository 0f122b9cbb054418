"""What each observability wrapper costs a call, without the network: µs per client+server pair.

    python -m bench.wrappers [--calls 20000] [--repeat 5] [--parts off,tracing,metrics,otel_metrics]

A client wrapper chain calls, through a stand-in for the wire that hands the call's metadata to
the server as its header, a handler wrapper chain around a handler that returns at once: exactly
what ``BENCH_OBSERVE`` adds to a benchmark call, minus sockets and codecs. The best of
``--repeat`` runs is reported, because on a shared machine the minimum is the steady figure; the
full benchmark (``python -m bench.run --impls trimicro-mucp,trimicro-mucp+tracing ...``) says what
that is worth against a real call. ``off`` is the same chain with no wrapper: the floor the others
are measured from. Python function calls per pair (counted under cProfile, exact on any machine)
are the steady measure of work removed when the clock is noisy.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from typing import Any

import trio

from bench import impl_trimicro
from trimicro.client import CallRequest
from trimicro.server import Request

PARTS = ("off", "tracing", "metrics", "otel_metrics")


def _chain(wrappers: list[Any], inner: Any) -> Any:
    for wrap in reversed(wrappers):  # the first wrapper is the outermost, as Router and Client apply them
        inner = wrap(inner)
    return inner


async def _measure(part: str, calls: int, prof: cProfile.Profile | None = None) -> float:
    handler_wrappers, call_wrappers = impl_trimicro.observe_wrappers(set() if part == "off" else {part})

    async def handle(req: Request, ctx: Any) -> str:
        return "ok"

    server = _chain(handler_wrappers, handle)

    async def wire(req: CallRequest) -> Any:
        header = dict(req.metadata)
        return await server(Request(req.service, req.endpoint, req.content_type, header, req.body), None)

    client = _chain(call_wrappers, wire)
    for _ in range(200):  # warm caches (attribute sets, the SDK's aggregations)
        await client(CallRequest("greeter", "Greeter.Hello", b"", address="127.0.0.1:8080"))
    if prof is not None:
        prof.enable()
    start = time.perf_counter()
    for _ in range(calls):
        await client(CallRequest("greeter", "Greeter.Hello", b"", address="127.0.0.1:8080"))
    elapsed = time.perf_counter() - start
    if prof is not None:
        prof.disable()
    return elapsed / calls * 1e6


def _count(part: str, calls: int) -> float:
    """Python function calls per pair, the timed loop's only (set-up and warm-up not counted; the
    loop's own calls are the same for every part)."""
    prof = cProfile.Profile()
    trio.run(_measure, part, calls, prof)
    return pstats.Stats(prof).total_calls / calls  # type: ignore[attr-defined,no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--parts", default=",".join(PARTS))
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    best = {p: min(trio.run(_measure, p, args.calls) for _ in range(args.repeat)) for p in parts}
    counted = {p: _count(p, min(args.calls, 5000)) for p in parts}
    floor, floor_calls = best.get("off", 0.0), counted.get("off", 0.0)
    print("| wrapper | µs per call pair | over no wrapper | Python calls per pair | over no wrapper |")
    print("|---|---|---|---|---|")
    for part, us in best.items():
        n = counted[part]
        print(f"| {part} | {us:.1f} | {us - floor:+.1f} | {n:.0f} | {n - floor_calls:+.0f} |")


if __name__ == "__main__":
    main()
