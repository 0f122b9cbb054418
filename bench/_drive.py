"""Scenario drivers: the same measuring loops for trio, asyncio and thread-based clients.

An implementation's client object offers (async, or sync for grpcio's blocking API):

- ``unary(name) -> None``: one Hello call (the response is checked by the implementation);
- ``server_stream(count, progress)``: one Stream call; ``progress[0] += 1`` per message received;
- ``bidi()``: a context manager yielding ``ping(seq)``: send one EchoMessage, wait for it back;
- ``hold_idle(n, ready)`` / ``hold_streams(n, ready)``: open ``n`` connections (each made one call) or
  ``n`` bidi streams (each echoed one message), then ``await ready()``, which never returns.

Every loop is bounded by time *and* count, so a slow implementation cannot stall the suite.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import trio

KIB = 1024


def payload(size: int) -> str:
    """The HelloRequest name for a scenario: "world" for small calls, ``size`` bytes otherwise."""
    return "world" if size <= 0 else "x" * size


def rss_mib(pid: int | str = "self") -> float:
    """Resident set size of a process in MiB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def emit(result: dict[str, Any]) -> None:
    """The client's one result line, read by the runner."""
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def _unary_result(lat: list[float], elapsed: float, size: int) -> dict[str, Any]:
    calls = len(lat)
    rate = calls / elapsed if elapsed > 0 else 0.0
    return {
        "calls": calls,
        "elapsed": elapsed,
        "calls_per_s": rate,
        "p50_us": statistics.median(lat) * 1e6 if lat else float("nan"),
        "p99_us": sorted(lat)[int(len(lat) * 0.99)] * 1e6 if lat else float("nan"),
        "mib_per_s": rate * size / (1024 * 1024) if size > 0 else 0.0,
    }


def _stream_result(n: int, elapsed: float) -> dict[str, Any]:
    return {"msgs": n, "elapsed": elapsed, "msgs_per_s": n / elapsed if elapsed > 0 else 0.0}


def _bidi_result(lat: list[float], elapsed: float) -> dict[str, Any]:
    return {
        "round_trips": len(lat),
        "elapsed": elapsed,
        "rt_per_s": len(lat) / elapsed if elapsed > 0 else 0.0,
        "p50_us": statistics.median(lat) * 1e6 if lat else float("nan"),
    }


def _memory_result(n: int) -> dict[str, Any]:
    return {"n": n, "client_rss_mib": rss_mib()}


# -- trio --------------------------------------------------------------------------------------------


async def trio_ready(n: int) -> None:
    emit(_memory_result(n))
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    await trio.sleep_forever()  # the runner samples the server's RSS, then kills us


async def run_trio(client: Any, scenario: str, p: dict[str, Any]) -> dict[str, Any]:
    if scenario == "unary":
        name = payload(p["size"])
        lat: list[float] = []
        limit = p["max_calls"]
        await client.unary(name)  # warm up: connect, caches
        clock = time.perf_counter
        start = clock()
        end = start + p["seconds"]

        # No cancel scope around the calls: a deadline would travel in every request (and expire
        # mid-call); each worker finishes its call in flight and stops.
        async def worker() -> None:
            while len(lat) < limit:
                t0 = clock()
                if t0 > end:
                    return
                await client.unary(name)
                lat.append(clock() - t0)

        async with trio.open_nursery() as nursery:
            for _ in range(p["concurrency"]):
                nursery.start_soon(worker)
        return _unary_result(lat, clock() - start, p["size"])
    if scenario == "stream":
        progress = [0]
        start = time.perf_counter()
        with trio.move_on_after(p["seconds"]):
            await client.server_stream(p["count"], progress)
        return _stream_result(progress[0], time.perf_counter() - start)
    if scenario == "bidi":
        async with client.bidi() as ping:
            return await _ping_pong(ping, p)
    if scenario == "idle_conns":
        await client.hold_idle(p["n"], lambda: trio_ready(p["n"]))
    elif scenario == "open_streams":
        await client.hold_streams(p["n"], lambda: trio_ready(p["n"]))
    raise ValueError(f"unknown scenario {scenario}")


async def _ping_pong(ping: Any, p: dict[str, Any]) -> dict[str, Any]:
    """Bidi round trips until time or count runs out; works under trio and asyncio alike."""
    await ping(-1)
    lat: list[float] = []
    clock = time.perf_counter
    start = clock()
    end = start + p["seconds"]
    for seq in range(p["max_round_trips"]):
        t0 = clock()
        if t0 > end:
            break
        await ping(seq)
        lat.append(clock() - t0)
    return _bidi_result(lat, clock() - start)


# -- asyncio -----------------------------------------------------------------------------------------


async def asyncio_ready(n: int) -> None:
    emit(_memory_result(n))
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


async def run_asyncio(client: Any, scenario: str, p: dict[str, Any]) -> dict[str, Any]:
    if scenario == "unary":
        name = payload(p["size"])
        lat: list[float] = []
        limit = p["max_calls"]
        await client.unary(name)
        clock = time.perf_counter
        start = clock()

        async def worker() -> None:
            while len(lat) < limit:
                t0 = clock()
                await client.unary(name)
                lat.append(clock() - t0)

        tasks = [asyncio.ensure_future(worker()) for _ in range(p["concurrency"])]
        _done, pending = await asyncio.wait(tasks, timeout=p["seconds"])
        elapsed = clock() - start
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return _unary_result(lat, elapsed, p["size"])
    if scenario == "stream":
        progress = [0]
        start = time.perf_counter()
        try:
            await asyncio.wait_for(client.server_stream(p["count"], progress), p["seconds"])
        except TimeoutError:
            pass
        return _stream_result(progress[0], time.perf_counter() - start)
    if scenario == "bidi":
        async with client.bidi() as ping:
            return await _ping_pong(ping, p)
    if scenario == "idle_conns":
        await client.hold_idle(p["n"], lambda: asyncio_ready(p["n"]))
    elif scenario == "open_streams":
        await client.hold_streams(p["n"], lambda: asyncio_ready(p["n"]))
    raise ValueError(f"unknown scenario {scenario}")


# -- threads (blocking clients) ----------------------------------------------------------------------


def thread_ready(n: int) -> None:
    emit(_memory_result(n))
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    threading.Event().wait()


def run_threads(client: Any, scenario: str, p: dict[str, Any]) -> dict[str, Any]:
    if scenario == "unary":
        name = payload(p["size"])
        lat: list[float] = []
        limit = p["max_calls"]
        client.unary(name)
        clock = time.perf_counter
        start = clock()
        end = start + p["seconds"]

        def worker() -> None:
            while len(lat) < limit:
                t0 = clock()
                if t0 > end:
                    return
                client.unary(name)
                lat.append(clock() - t0)

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(p["concurrency"])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return _unary_result(lat, clock() - start, p["size"])
    if scenario == "stream":
        progress = [0]
        start = time.perf_counter()
        client.server_stream(p["count"], progress, timeout=p["seconds"])
        return _stream_result(progress[0], time.perf_counter() - start)
    if scenario == "bidi":
        lat = []
        with client.bidi() as ping:
            ping(-1)
            clock = time.perf_counter
            start = clock()
            end = start + p["seconds"]
            for seq in range(p["max_round_trips"]):
                t0 = clock()
                if t0 > end:
                    break
                ping(seq)
                lat.append(clock() - t0)
            elapsed = clock() - start
        return _bidi_result(lat, elapsed)
    if scenario == "idle_conns":
        client.hold_idle(p["n"], lambda: thread_ready(p["n"]))
    elif scenario == "open_streams":
        client.hold_streams(p["n"], lambda: thread_ready(p["n"]))
    raise ValueError(f"unknown scenario {scenario}")


def pin(cpu: int) -> None:
    """Pin this process to ``cpu`` when the machine has it (no-op elsewhere)."""
    try:
        if cpu in os.sched_getaffinity(0) or len(os.sched_getaffinity(0)) > cpu:
            os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        pass


Ready = Callable[[], Any]
