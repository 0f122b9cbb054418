"""Run an external server binary (etcd, nats-server) as a trio child process for loopback tests.

The etcd and nats-server helpers differ only in their command lines and in how they tell that the
server is up; starting the process in a nursery task, keeping the tail of its stderr, and stopping it
(SIGTERM, then SIGKILL after a bound) live here once.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

import attrs
import trio

__all__ = ["ChildProcess", "free_port", "serve_until_signalled", "terminate"]

STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
LOG_KEEP = 64 * 1024


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (callers retry on a lost race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def serve_until_signalled(server: AbstractAsyncContextManager[object], name: str, address: str) -> None:
    """Run ``server`` (an ``open_*()`` context) until SIGINT/SIGTERM, for ``python3 -m ... --serve``.

    The signal cancels the wait so the context's own exit stops the child and removes its files: a
    plain SIGTERM would kill Python and orphan the Java process.
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with server:
            print(f"{name} serving on {address}; stop with Ctrl-C or SIGTERM", flush=True)
            async for _ in signals:
                break
    print(f"{name} stopped", file=sys.stderr, flush=True)


async def terminate(proc: trio.Process, grace: float = STOP_GRACE) -> None:
    """SIGTERM ``proc``, SIGKILL it if it has not exited after ``grace`` seconds, and reap it."""
    if proc.returncode is None:
        proc.terminate()
        with trio.move_on_after(grace):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@attrs.define(eq=False)
class ChildProcess:
    """One run at a time of a server binary, in a task of a nursery the caller owns.

    ``spawn()`` returns once the process is started; ``stop()`` cancels its task, which terminates the
    process and waits for it. ``on_output`` sees the whole kept log after each stderr chunk (to spot a
    readiness line); ``on_exit`` runs once the run is over (to wake anyone waiting for readiness).
    """

    _scope: trio.CancelScope | None = attrs.field(default=None, init=False)
    _done: trio.Event | None = attrs.field(default=None, init=False)
    _log: bytearray = attrs.field(factory=bytearray, init=False)

    @property
    def running(self) -> bool:
        return self._done is not None and not self._done.is_set()

    @property
    def log(self) -> str:
        """The tail of the process's stderr (for failure messages)."""
        return self._log.decode("utf-8", "replace")

    async def spawn(
        self,
        nursery: trio.Nursery,
        command: Sequence[str],
        *,
        on_output: Callable[[bytearray], None] | None = None,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        """Start ``command`` in a new task of ``nursery`` (with a fresh log)."""
        self._log.clear()
        await nursery.start(self._run, list(command), on_output, on_exit)

    async def stop(self) -> None:
        """Stop the process (SIGTERM, SIGKILL after a bound) and wait until it has exited."""
        if self._scope is not None:
            self._scope.cancel()
        if self._done is not None:
            await self._done.wait()

    async def _run(
        self,
        command: list[str],
        on_output: Callable[[bytearray], None] | None,
        on_exit: Callable[[], None] | None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        done = self._done = trio.Event()
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                proc = await trio.lowlevel.open_process(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._drain, proc, on_output)
                        task_status.started()
                        await proc.wait()
                finally:
                    with trio.CancelScope(shield=True):
                        await terminate(proc)
        finally:
            self._scope = None
            done.set()
            if on_exit is not None:
                on_exit()

    async def _drain(self, proc: trio.Process, on_output: Callable[[bytearray], None] | None) -> None:
        assert proc.stderr is not None
        async with proc.stderr:
            async for chunk in proc.stderr:
                self._log += chunk
                if on_output is not None:
                    on_output(self._log)
                del self._log[:-LOG_KEEP]
