"""Run the Go Micro v5 interop binary (tests/interop/go) as trio child processes and read its JSON lines.

The binary prints one JSON object per event on stdout (docs/go-micro-facts.md §1); Go Micro's own logs go
to stderr, whose tail is kept for failure messages. Every process is owned by the nursery of
:func:`open_go` and is always reaped: SIGTERM (Go deregisters and prints ``stopped``), SIGKILL after a
bound.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

import trimicro
from tests.protos.greeter_pb2 import (
    EchoMessage,
    HelloRequest,
    HelloResponse,
    Num,
    SlowRequest,
    SlowResponse,
    StreamRequest,
    StreamResponse,
    Total,
)

GO_DIR = Path(__file__).resolve().parent / "go"
BUILD_TIMEOUT = 300.0  # a cold build downloads ~275 MB of modules (~70 s here)
_STOP_GRACE = 5.0
_STDERR_KEEP = 16 * 1024

Event = dict[str, Any]


def find_go() -> str | None:
    """The ``go`` binary, or None (the only reason interop tests skip)."""
    for candidate in (os.environ.get("GO"), shutil.which("go"), "/usr/local/go/bin/go"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def build_interop(go: str, timeout: float = BUILD_TIMEOUT) -> Path:
    """Build (or refresh; ~1 s when warm) the interop binary with build.sh; return its path."""
    env = dict(os.environ, GO=go)
    result = subprocess.run(
        ["bash", str(GO_DIR / "build.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"tests/interop/go/build.sh failed ({result.returncode}):\n{result.stderr[-4000:]}"
        )
    path = Path(result.stdout.strip().splitlines()[-1])
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"build.sh printed {path!r}, which is not an executable")
    return path


def go_env() -> dict[str, str]:
    """The environment for Go peers: ours minus MICRO_* (they configure Go Micro too)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MICRO_")}


@attrs.define(eq=False)
class GoProcess:
    """One running interop process: its events so far, a cursor for :meth:`expect`, and its stderr tail."""

    proc: trio.Process
    args: Sequence[str]
    events: list[Event] = attrs.field(factory=list)
    stderr: bytearray = attrs.field(factory=bytearray)
    cursor: int = 0
    _changed: trio.Event = attrs.field(factory=trio.Event)
    _stdout_done: bool = False

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def describe(self) -> str:
        tail = self.stderr.decode("utf-8", "replace")[-3000:]
        return f"go {' '.join(self.args)}\nevents: {self.events}\nstderr tail:\n{tail}"

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        buf = b""
        try:
            async with self.proc.stdout:
                async for chunk in self.proc.stdout:
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        if line.strip():
                            self.events.append(json.loads(line))
                    self._notify()
        finally:
            self._stdout_done = True
            self._notify()

    async def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        async with self.proc.stderr:
            async for chunk in self.proc.stderr:
                self.stderr += chunk
                del self.stderr[:-_STDERR_KEEP]

    async def expect(
        self, event: str, *, timeout: float = 20.0, where: Callable[[Event], bool] | None = None
    ) -> Event:
        """The next event named ``event`` after the cursor (matching ``where``); moves the cursor past it."""
        with trio.move_on_after(timeout):
            while True:
                for i in range(self.cursor, len(self.events)):
                    ev = self.events[i]
                    if ev.get("event") == event and (where is None or where(ev)):
                        self.cursor = i + 1
                        return ev
                if self._stdout_done:
                    break
                await self._changed.wait()
        raise AssertionError(f"no {event!r} event within {timeout}s\n{self.describe()}")

    def __aiter__(self) -> GoProcess:
        return self

    async def __anext__(self) -> Event:
        """The next event after the cursor, as it arrives; stops when the process's stdout closes."""
        while self.cursor >= len(self.events):
            if self._stdout_done:
                raise StopAsyncIteration
            await self._changed.wait()
        self.cursor += 1
        return self.events[self.cursor - 1]

    def all(self, event: str) -> list[Event]:
        return [ev for ev in self.events if ev.get("event") == event]

    async def wait(self, timeout: float = 20.0) -> int:
        """Wait for exit and for all of stdout; returns the exit code."""
        with trio.move_on_after(timeout):
            code = await self.proc.wait()
            while not self._stdout_done:
                await self._changed.wait()
            return code
        raise AssertionError(f"process did not exit within {timeout}s\n{self.describe()}")

    def signal(self, signum: int) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signum)

    async def stop(self) -> None:
        """SIGTERM (Go Micro deregisters), SIGKILL after a bound; always reaped."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(_STOP_GRACE):
                await self.proc.wait()
            if self.proc.returncode is None:
                self.proc.kill()
        await self.proc.wait()


@asynccontextmanager
async def open_go(
    binary: Path, args: Sequence[str], *, env: dict[str, str] | None = None
) -> AsyncIterator[GoProcess]:
    """Start ``binary *args`` (``env`` added to :func:`go_env`); yield it; stop and reap it on exit
    (whatever happened)."""
    proc = await trio.lowlevel.open_process(
        [str(binary), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**go_env(), **(env or {})},
    )
    go = GoProcess(proc, list(args))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(go._pump_stdout)
            nursery.start_soon(go._pump_stderr)
            try:
                yield go
            finally:
                with trio.CancelScope(shield=True):
                    await go.stop()
                    with trio.move_on_after(2):  # let the pumps see EOF
                        while not go._stdout_done:
                            await go._changed.wait()
                nursery.cancel_scope.cancel()
    finally:
        if proc.returncode is None:  # only if something above was interrupted before reaping
            proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()


async def run_go(binary: Path, args: Sequence[str], *, timeout: float = 20.0) -> GoProcess:
    """Run a short-lived mode (client, publisher) to completion; returns it (exit code, events)."""
    async with open_go(binary, args) as go:
        await go.wait(timeout)
    return go


# ---------------------------------------------------------------- the Python side's greeter


class PyGreeter:
    """The Go peer's Greeter service (same proto), in Python, recording what it saw for assertions."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.hello_metadata: list[dict[str, str]] = []
        self.slow_started = trio.Event()
        self.slow_cancelled = trio.Event()
        self.slow_finished = trio.Event()
        self.sums: list[tuple[int, int]] = []
        self.sum_done = trio.Event()
        self.echo_done = trio.Event()
        self.echo_count = 0
        self.echo_cancelled = trio.Event()
        self.echo_first = trio.Event()
        #: when set before a bidi call, Echo blocks after its first echo (a stalled peer, for kill tests)
        self.echo_stall = False

    async def Hello(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
        self.hello_metadata.append(dict(ctx.metadata))
        return HelloResponse(greeting=f"Hello {req.name}")

    async def Fail(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
        raise trimicro.errors.bad_request(self.name, "bad name %s", req.name)

    async def Slow(self, req: SlowRequest, ctx: trimicro.Context) -> SlowResponse:
        self.slow_started.set()
        try:
            await trio.sleep(req.sleep_ms / 1000)
        except trio.Cancelled:
            self.slow_cancelled.set()
            raise
        self.slow_finished.set()
        return SlowResponse(slept_ms=req.sleep_ms)

    async def Stream(
        self,
        req: StreamRequest,
        stream: trimicro.Stream[StreamRequest, StreamResponse],
        ctx: trimicro.Context,
    ) -> None:
        if req.count < 0:
            await stream.send(StreamResponse(count=-1, message="before error"))
            raise trimicro.errors.bad_request(self.name, "negative count %d", req.count)
        for i in range(req.count):
            await stream.send(StreamResponse(count=i, message=f"msg {i}"))

    async def Sum(self, stream: trimicro.Stream[Num, Total], ctx: trimicro.Context) -> Total:
        total = count = 0
        async for num in stream:
            total += num.value
            count += 1
        self.sums.append((total, count))
        self.sum_done.set()
        return Total(sum=total, count=count)

    async def Echo(self, stream: trimicro.Stream[EchoMessage, EchoMessage], ctx: trimicro.Context) -> None:
        try:
            async for msg in stream:
                self.echo_count += 1
                await stream.send(msg)
                self.echo_first.set()
                if self.echo_stall:
                    await trio.sleep_forever()
        except trio.Cancelled:
            self.echo_cancelled.set()
            raise
        self.echo_done.set()


def go_flags(etcd: str) -> list[str]:
    """Go Micro flags for a peer on the shared etcd, bound to loopback only (see go-micro-facts §1)."""
    return ["--registry", "etcd", "--registry_address", etcd, "--broker_address", "127.0.0.1:0"]


def py_service(name: str, etcd: str, greeter: PyGreeter | None = None, **kw: Any) -> trimicro.Service:
    """A trimicro service on the shared etcd, loopback only, no flags/env/signals from the test runner;
    ``greeter`` is served as handler ``Greeter`` (the Go peer's endpoint names)."""
    kw.setdefault("address", "127.0.0.1:0")
    kw.setdefault("broker", "http")
    svc = trimicro.Service(
        name, registry="etcd", registry_address=[etcd], argv=[], handle_signals=False, **kw
    )
    if greeter is not None:
        svc.handle(greeter, name="Greeter")
    return svc


async def wait_idle(service: trimicro.Service, timeout: float = 5.0) -> None:
    """Wait until the service has no call in flight (a stream's close-out runs after its handler)."""
    with trio.fail_after(timeout):
        while service.server.stats.in_flight:
            await trio.sleep(0.01)  # no event to wait on: in_flight is a plain counter
