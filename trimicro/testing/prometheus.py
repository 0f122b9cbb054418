"""A real Prometheus server for loopback tests: ``async with open_prometheus(targets) as prom:``.

Starts ``prometheus`` (Debian's package installs /usr/bin/prometheus) on a free 127.0.0.1 port with a
generated config that scrapes ``targets`` (``host:port`` strings, loopback only) every
``scrape_interval`` seconds, storage in a temporary directory, and yields once ``/-/ready`` answers.
``await prom.query('micro_request_total')`` runs an instant query over the HTTP API. On exit the
process is terminated (SIGTERM, SIGKILL after a bound) and the directory removed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from ._process import ChildProcess, free_port

__all__ = ["PrometheusNotFound", "PrometheusServer", "find_prometheus", "open_prometheus"]

_START_TIMEOUT = 30.0


class PrometheusNotFound(RuntimeError):
    """No ``prometheus`` binary (``apt-get install prometheus``): tests skip with this message."""


def find_prometheus() -> str | None:
    for candidate in (os.environ.get("PROMETHEUS"), shutil.which("prometheus"), "/usr/bin/prometheus"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


async def _get(address: str, target: str) -> tuple[int, bytes]:
    host, _, port = address.rpartition(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(f"GET {target} HTTP/1.0\r\nHost: {address}\r\n\r\n".encode())
        data = bytearray()
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@attrs.define(eq=False)
class PrometheusServer:
    address: str
    proc: ChildProcess

    @property
    def log(self) -> str:
        return self.proc.log

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """The ``result`` of an instant query (``[{"metric": {...}, "value": [ts, "v"]}, ...]``)."""
        status, body = await _get(self.address, "/api/v1/query?query=" + urllib.parse.quote(expr))
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise RuntimeError(f"prometheus query {expr!r} failed ({status}): {body[:500]!r}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    async def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets (health, lastError) from ``/api/v1/targets``."""
        _, body = await _get(self.address, "/api/v1/targets")
        found: list[dict[str, Any]] = json.loads(body)["data"]["activeTargets"]
        return found


def _write_config(path: str, interval: str, targets: Sequence[str]) -> None:
    # a few hundred bytes, before the process starts: not worth a thread
    with open(path, "w") as f:
        f.write(
            f"global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n"
            "scrape_configs:\n  - job_name: trimicro\n    static_configs:\n"
            f"      - targets: {json.dumps(list(targets))}\n"
        )


@asynccontextmanager
async def open_prometheus(
    targets: Sequence[str], *, scrape_interval: float = 0.5
) -> AsyncIterator[PrometheusServer]:
    binary = find_prometheus()
    if binary is None:
        raise PrometheusNotFound("prometheus is not installed (apt-get install prometheus)")
    for target in targets:
        if not target.startswith(("127.", "localhost:", "[::1]:")):
            raise ValueError(f"refusing to scrape a non-loopback target {target!r}")
    with tempfile.TemporaryDirectory(prefix="trimicro-prom-") as tmp:
        interval = f"{int(scrape_interval * 1000)}ms"
        config = os.path.join(tmp, "prometheus.yml")
        _write_config(config, interval, targets)
        address = f"127.0.0.1:{free_port()}"
        proc = ChildProcess()
        async with trio.open_nursery() as nursery:
            await proc.spawn(
                nursery,
                [
                    binary,
                    f"--config.file={config}",
                    f"--web.listen-address={address}",
                    f"--storage.tsdb.path={os.path.join(tmp, 'data')}",
                    "--log.level=warn",
                ],
            )
            try:
                with trio.move_on_after(_START_TIMEOUT) as waited:
                    while proc.running:
                        try:
                            if (await _get(address, "/-/ready"))[0] == 200:
                                break
                        except OSError:
                            pass
                        await trio.sleep(0.1)
                if waited.cancelled_caught or not proc.running:
                    raise RuntimeError(f"prometheus did not become ready on {address}:\n{proc.log[-4000:]}")
                yield PrometheusServer(address, proc)
            finally:
                await proc.stop()
