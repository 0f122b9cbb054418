"""The client side of a cluster scenario, run inside a simulated host (``python -m tests.cluster._driver``).

Configured by ``MICRO_*`` env like any trimicro process; driven by one command per line on stdin, each
answered by one JSON line on stdout:

- ``wait-etcd HOST:PORT``: until etcd answers ``/health`` (bounded) -> ``{"event": "etcd-ready"}``
- ``run NAME CALLS``: a load phase (8 callers, 1 s timeout) -> the phase, the selector's and client's stats
- ``runfor NAME SECONDS``: a load phase lasting SECONDS -> as ``run``
- ``until-reinstated``: small phases until a node came back from ejection (bounded) -> ``{"event": ...}``
- ``quit``
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import trio

from tests.cluster._load import Phase
from trimicro import open_client
from trimicro.client import Client


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def etcd_healthy(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        stream = await trio.open_tcp_stream(host, int(port))
    except OSError:
        return False
    async with stream:
        try:
            await stream.send_all(f"GET /health HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            data = b""
            while chunk := await stream.receive_some(4096):
                data += chunk
        except (OSError, trio.BrokenResourceError):
            return False
    return b'"health":"true"' in data


async def lines() -> Any:
    stdin = trio.lowlevel.FdStream(os.dup(0))
    buf = b""
    async with stdin:
        while True:
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                yield line.decode().strip()
            chunk = await stdin.receive_some(4096)
            if not chunk:
                return
            buf += chunk


def stats(client: Client) -> dict[str, Any]:
    selector: Any = client.selector
    return {"selector": selector.stats(), "client": client.stats()}


async def main() -> None:
    commands = lines()
    async for line in commands:  # before the client: wait for the registry
        cmd, *args = line.split()
        if cmd == "wait-etcd":
            with trio.fail_after(20):
                while not await etcd_healthy(args[0]):
                    await trio.sleep(0.05)  # polling another process: nothing to wait on instead
            emit(event="etcd-ready")
            break
        if cmd == "quit":
            return
    async with open_client() as client:
        async for line in commands:
            cmd, *args = line.split()
            if cmd == "run":
                phase = await Phase(args[0], int(args[1])).run(client)
                emit(event="phase", **phase.to_dict(), **stats(client))
            elif cmd == "runfor":
                phase = await Phase(args[0], 0, duration=float(args[1])).run(client)
                emit(event="phase", **phase.to_dict(), **stats(client))
            elif cmd == "until-reinstated":
                selector: Any = client.selector
                with trio.fail_after(30):
                    while selector.stats()["reinstated"] < 1:
                        await Phase("waiting for the probe", 100, callers=2).run(client)
                emit(event="reinstated", **stats(client))
            elif cmd == "quit":
                break


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    trio.run(main)
