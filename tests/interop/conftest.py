"""Fixtures for interop tests: the Go Micro peer binary and one etcd shared by the session.

pytest-trio fixtures are per test (each test is its own ``trio.run``), so the session-wide etcd is a
plain child process managed here synchronously; tests isolate themselves by unique service names.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop._go import build_interop, find_go
from trimicro.testing.etcd import EtcdNotFound, find_etcd, free_port

_ETCD_START = 15.0


@pytest.fixture(scope="session")
def go_interop() -> Path:
    """The Go Micro v5 interop binary, (re)built by build.sh; skips only when Go is absent."""
    go = find_go()
    if go is None:
        pytest.skip("Go toolchain not found (needed to build the Go Micro peers in tests/interop/go)")
    return build_interop(go)


def _healthy(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
    except OSError:
        return False
    return b'"health":"true"' in data


@pytest.fixture(scope="session")
def shared_etcd() -> Iterator[str]:
    """``127.0.0.1:PORT`` of an etcd shared by the interop tests (the registry both sides use)."""
    try:
        binary = find_etcd()
    except EtcdNotFound as exc:
        pytest.skip(str(exc))
    data_dir = Path(tempfile.mkdtemp(prefix="trimicro-interop-etcd-"))
    client, peer = free_port(), free_port()
    peer_url = f"http://127.0.0.1:{peer}"
    proc = subprocess.Popen(
        [
            binary,
            "--name", "interop",
            "--data-dir", str(data_dir / "data"),
            "--listen-client-urls", f"http://127.0.0.1:{client}",
            "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"interop={peer_url}",
            "--heartbeat-interval", "10",
            "--election-timeout", "100",
            "--log-level", "warn",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + _ETCD_START
        while not _healthy(client):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"etcd did not start on 127.0.0.1:{client} (exit {proc.poll()})")
            time.sleep(0.05)  # polling an external process's readiness
        yield f"127.0.0.1:{client}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def uniq() -> str:
    """A short unique suffix for service names and topics, so tests sharing etcd never collide."""
    return uuid.uuid4().hex[:8]
