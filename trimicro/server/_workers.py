"""Multi-core serving: N worker processes on one port (``server_workers`` / ``MICRO_SERVER_WORKERS``).

One trio loop uses one core. With ``server_workers=N`` the process that runs ``service.run`` becomes a
supervisor: it reserves the port, starts N copies of the same program (``sys.orig_argv``) as worker
processes, each its own trio loop serving on that port with ``SO_REUSEPORT`` (the kernel spreads new
connections across them), and each registered as its own node, so clients see N nodes and the
capacity. Why processes and not threads: the GIL; and why re-executing the program instead of
``fork``: a forked trio loop is not safe, and a fresh interpreter imports the user's handlers the
normal way.

The supervisor is a nursery with one task per worker:

- ``task_status.started`` fires once every worker is listening and registered (each reports on a
  pipe whose descriptor it inherits);
- a worker that exits while the service is not stopping is restarted, after a back-off that grows
  from 0.5 s to 30 s while it keeps crashing (reset once it has run 60 s), with one log line per crash;
- SIGINT/SIGTERM or ``service.stop()``: every worker gets SIGTERM and does the usual graceful stop
  (deregister, drain within ``server_grace_period``); one still running ``grace + 5`` s later is
  killed. The supervisor then returns.

The port stays reserved by a bound, non-listening ``SO_REUSEPORT`` socket for the supervisor's life,
so a restarted worker gets the same port even when the configured one was ``:0``.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import trio

if TYPE_CHECKING:
    from ..service import Service

__all__ = ["ADDRESS_ENV", "READY_FD_ENV", "WORKER_ENV", "notify_ready", "supervise", "worker_address"]

log = logging.getLogger("trimicro.workers")

#: Set in a worker's environment (its index): the worker serves instead of supervising.
WORKER_ENV: Final = "TRIMICRO_WORKER"
#: The inherited pipe descriptor a worker writes one line to once it is ready.
READY_FD_ENV: Final = "TRIMICRO_WORKER_READY_FD"
#: ``host:port`` the supervisor reserved; wins over flags and env in the worker.
ADDRESS_ENV: Final = "TRIMICRO_WORKER_ADDRESS"

_BACKOFF_MIN: Final = 0.5
_BACKOFF_MAX: Final = 30.0
_HEALTHY_AFTER: Final = 60.0


def worker_address() -> str | None:
    """In a worker: the address to serve on (the supervisor's reserved port); else None."""
    return os.environ.get(ADDRESS_ENV) if WORKER_ENV in os.environ else None


def notify_ready() -> None:
    """In a worker: tell the supervisor this worker is listening and registered (once)."""
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd is None:
        return
    try:
        os.write(int(fd), b"ready\n")
        os.close(int(fd))
    except OSError:  # the supervisor is gone: nothing to tell
        pass


def _reserve(address: str) -> tuple[socket.socket, str]:
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, int(port or 0)))
    except OSError:
        sock.close()
        raise
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    return sock, f"{shown}:{bound_port}"


def _command() -> list[str]:
    argv = list(getattr(sys, "orig_argv", []) or [sys.executable, *sys.argv])
    argv[0] = sys.executable
    return argv


async def _wait_line(fd: int) -> None:
    """Wait for the worker's one ready line on our end of its pipe (EOF means it died first)."""
    stream = trio.lowlevel.FdStream(fd)
    async with stream:
        while True:
            data = await stream.receive_some(64)
            if not data or b"\n" in data:
                if not data:
                    raise EOFError
                return


async def _run_worker(
    index: int,
    address: str,
    grace: float,
    stopping: trio.Event,
    command: Sequence[str],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    backoff = _BACKOFF_MIN
    reported = False  # task_status.started() once this worker first became ready
    failed_starts = 0
    while not stopping.is_set():
        read_fd, write_fd = os.pipe()
        env = dict(os.environ, **{WORKER_ENV: str(index), ADDRESS_ENV: address, READY_FD_ENV: str(write_fd)})
        try:
            proc = await trio.lowlevel.open_process(list(command), env=env, pass_fds=(write_fd,))
        finally:
            os.close(write_fd)
        started_at = trio.current_time()
        async with trio.open_nursery() as nursery:

            became_ready = False

            async def ready(read_fd: int) -> None:
                nonlocal reported, became_ready
                try:
                    await _wait_line(read_fd)
                except EOFError:
                    return  # exited before it was ready: the wait below sees it
                became_ready = True
                if not reported:
                    reported = True
                    task_status.started()

            nursery.start_soon(ready, read_fd)

            async def stop_on_request(proc: trio.Process) -> None:
                await stopping.wait()
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                with trio.move_on_after(grace + 5):
                    await proc.wait()
                if proc.returncode is None:
                    log.warning("worker %d did not stop within %.0f s: killed", index, grace + 5)
                    proc.kill()

            nursery.start_soon(stop_on_request, proc)
            try:
                await proc.wait()
            finally:
                with trio.CancelScope(shield=True):
                    if proc.returncode is None:  # the supervisor itself was cancelled
                        proc.kill()
                        await proc.wait()
            nursery.cancel_scope.cancel()
        if stopping.is_set():
            return
        ran = trio.current_time() - started_at
        if ran > _HEALTHY_AFTER:
            backoff = _BACKOFF_MIN
        if not became_ready:
            # A worker that cannot even start (a bad option, an import error) would loop forever.
            failed_starts += 1
            if failed_starts >= 5:
                raise RuntimeError(f"worker {index} failed to start 5 times (last exit status {proc.returncode})")
        else:
            failed_starts = 0
        log.warning("worker %d exited with status %s: restarting in %.1f s", index, proc.returncode, backoff)
        with trio.move_on_after(backoff):
            await stopping.wait()
        backoff = min(backoff * 2, _BACKOFF_MAX)


async def supervise(service: Service, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
    """Run ``service`` as ``options.server_workers`` worker processes on one port (module doc)."""
    opts = service.options
    count = opts.server_workers
    reservation, address = _reserve(opts.server_address)
    service.address = address
    stopping = trio.Event()
    command = _command()
    grace = opts.server_grace_period if math.isfinite(opts.server_grace_period) else 30.0
    with reservation:
        async with trio.open_nursery() as nursery:
            for i in range(count):
                await nursery.start(_run_worker, i, address, grace, stopping, command)
            log.info("service %s: %d workers serving on %s", service.name, count, address)
            if service.handle_signals:
                try:
                    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                        task_status.started(service)
                        async with trio.open_nursery() as waiter:

                            async def on_signal() -> None:
                                async for signum in signals:
                                    log.info("received %s: stopping workers", signal.Signals(signum).name)
                                    waiter.cancel_scope.cancel()
                                    return

                            waiter.start_soon(on_signal)
                            await service._stop.wait()
                            waiter.cancel_scope.cancel()
                except RuntimeError:  # not the main thread
                    task_status.started(service)
                    await service._stop.wait()
            else:
                task_status.started(service)
                await service._stop.wait()
            stopping.set()
