"""The stock peers of tests/interop/grpcgo: grpc-go's interop client and server, h2spec, grpcurl.

build.sh builds them from the module proxy (pinned by go.mod/go.sum, nothing vendored) into a
gitignored bin directory; the fixture here builds once per session and skips, with the reason, only
when Go is absent. Every process runs bounded and is always reaped.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs
import pytest
import trio

from tests.interop._go import find_go, go_env
from trimicro.testing.etcd import free_port

GRPCGO_DIR = Path(__file__).resolve().parent / "grpcgo"
BUILD_TIMEOUT = 300.0
_SERVER_START = 15.0


@attrs.frozen
class GrpcGoBins:
    client: Path
    server: Path
    h2spec: Path
    grpcurl: Path


def build_grpcgo(go: str, timeout: float = BUILD_TIMEOUT) -> GrpcGoBins:
    """Run build.sh (about 2 s when the module cache is warm); return the binaries."""
    result = subprocess.run(
        ["bash", str(GRPCGO_DIR / "build.sh")],
        env=dict(os.environ, GO=go),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"tests/interop/grpcgo/build.sh failed ({result.returncode}):\n{result.stderr[-4000:]}"
        )
    out = Path(result.stdout.strip().splitlines()[-1])
    bins = GrpcGoBins(out / "client", out / "server", out / "h2spec", out / "grpcurl")
    for path in (bins.client, bins.server, bins.h2spec, bins.grpcurl):
        if not os.access(path, os.X_OK):
            raise RuntimeError(f"build.sh did not produce {path}")
    return bins


@pytest.fixture(scope="session")
def grpcgo() -> GrpcGoBins:
    go = find_go()
    if go is None:
        pytest.skip("Go toolchain not found (needed to build grpc-go's interop peers and h2spec)")
    return build_grpcgo(go)


@attrs.frozen
class Finished:
    returncode: int
    output: str


async def run_bounded(args: Sequence[str], timeout: float) -> Finished:
    """Run a peer to completion (stdout and stderr together), killed after ``timeout`` seconds."""
    with trio.move_on_after(timeout) as scope:
        done = await trio.run_process(
            list(args),
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            stderr=subprocess.STDOUT,
            check=False,
            env=go_env(),
        )
        return Finished(done.returncode, done.stdout.decode("utf-8", "replace"))
    assert scope.cancelled_caught
    return Finished(-9, f"killed after {timeout} s")


async def run_interop_client(bins: GrpcGoBins, address: str, case: str, timeout: float = 30.0) -> Finished:
    """grpc-go's interop client running one test case against ``address`` (plain h2c)."""
    host, _, port = address.rpartition(":")
    return await run_bounded(
        [str(bins.client), f"-server_host={host}", f"-server_port={port}", f"-test_case={case}"], timeout
    )


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def grpcgo_server(grpcgo: GrpcGoBins) -> Iterator[str]:
    """``127.0.0.1:PORT`` of grpc-go's interop server (plain h2c), shared by the session's tests."""
    port = free_port()
    # grpc-go's interop server listens on ":PORT"; host firewalls aside, we only ever dial loopback.
    proc = subprocess.Popen(
        [str(grpcgo.server), f"-port={port}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=go_env(),
    )
    try:
        deadline = time.monotonic() + _SERVER_START
        while not _accepting(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"grpc-go interop server did not start on port {port} (exit {proc.poll()})"
                )
            time.sleep(0.05)  # polling an external process's readiness
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
