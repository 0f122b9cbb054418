"""The client side of a cluster scenario, run inside a simulated host (``python -m tests.cluster._driver``).

Configured by ``MICRO_*`` env like any trimicro process; driven by one command per line on stdin, each
answered by one JSON line on stdout:

- ``wait-etcd HOST:PORT``: until etcd answers ``/health`` (bounded) -> ``{"event": "etcd-ready"}``
- ``open``: open the client now (a registry with nothing to wait for, e.g. mdns) -> ``{"event": "open"}``
- ``nodes COUNT SECONDS``: until the registry lists COUNT greeter nodes (or SECONDS passed) -> their
  ids and the time it took (``{"event": "nodes"}``; the test asserts on the ids)
- ``each``: one ``Greeter.Hello`` to every listed greeter node by address -> each node's answer or error
- ``run NAME CALLS``: a load phase (8 callers, 1 s timeout) -> the phase, the selector's and client's stats
- ``runfor NAME SECONDS``: a load phase lasting SECONDS -> as ``run``
- ``publish ADDRESS COUNT RATE``: that soak node publishes COUNT messages at RATE/s -> its counts
- ``stats ADDRESS``: the soak node's own counts (live tasks, pub/sub received) -> ``{"event": "stats"}``
- ``streams ADDRESS COUNT TIMEOUT``: COUNT bidi ``Greeter.Echo`` streams to one node, each echoing
  until it fails or its TIMEOUT deadline passes -> ``{"event": "streams-open"}`` once all echoed once,
  then ``{"event": "streams-done", "streams": [...]}`` with each one's echoes, error and timings
- ``until-reinstated``: small phases until a node came back from ejection (bounded) -> ``{"event": ...}``
- ``quit``
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import trio

from tests.cluster._load import SERVICE, Phase
from tests.protos.greeter_pb2 import EchoMessage, HelloRequest, HelloResponse
from trimicro import open_client
from trimicro.client import Client
from trimicro.errors import MicroError


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


async def streams(client: Client, address: str, count: int, timeout: float) -> list[dict[str, Any]]:
    """Echo over ``count`` streams until each fails; say when all are open (one echo each)."""
    results: list[dict[str, Any]] = []
    opened = 0
    all_open = trio.Event()

    async def one() -> None:
        nonlocal opened
        began = trio.current_time()
        echoes, last_ok, error = 0, began, ""
        try:
            async with client.stream(
                "greeter", "Greeter.Echo", response_type=EchoMessage, timeout=timeout, address=address
            ) as s:
                while True:
                    await s.send(EchoMessage(text="x", seq=echoes))
                    await s.receive()
                    echoes += 1
                    last_ok = trio.current_time()
                    if echoes == 1:
                        opened += 1
                        if opened == count:
                            all_open.set()
                    await trio.sleep(0.01)
        except (MicroError, trio.EndOfChannel) as exc:
            error = str(exc) or type(exc).__name__
        ended = trio.current_time()
        results.append(
            {"echoes": echoes, "error": error, "open_for": ended - began, "after_last_ok": ended - last_ok}
        )

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
        with trio.move_on_after(timeout):
            await all_open.wait()
        emit(event="streams-open", opened=opened)
    return results


def _registry(client: Client) -> Any:
    selector: Any = client.selector
    return selector.registry


async def listed(client: Client) -> list[Any]:
    """The greeter nodes the registry itself lists now (the selector's cache aside)."""
    services = await _registry(client).get_service(SERVICE)
    return [node for service in services for node in service.nodes]


async def wait_nodes(client: Client, count: int, seconds: float) -> dict[str, Any]:
    began = trio.current_time()
    with trio.move_on_after(seconds):
        while len(await listed(client)) != count:
            await trio.sleep(0.05)  # polling another process's announcements: nothing to wait on
    nodes = await listed(client)
    return {"ids": sorted(n.id for n in nodes), "seconds": trio.current_time() - began}


async def call_each(client: Client) -> dict[str, str]:
    answers: dict[str, str] = {}
    for node in await listed(client):
        try:
            rsp = await client.call(
                SERVICE, "Greeter.Hello", HelloRequest(name="each"), response_type=HelloResponse,
                address=node.address, timeout=5,
            )  # fmt: skip
            answers[node.id] = rsp.greeting
        except MicroError as exc:
            answers[node.id] = f"error: {exc}"
    return answers


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
        if cmd == "open":
            emit(event="open")
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
            elif cmd in ("stats", "publish"):
                name = "stats" if cmd == "stats" else f"publish:{args[1]}:{args[2]}"
                rsp = await client.call(
                    "greeter", "Greeter.Hello", HelloRequest(name=name), response_type=HelloResponse,
                    address=args[0], timeout=60,
                )  # fmt: skip
                emit(event=cmd, **json.loads(rsp.greeting))
            elif cmd == "streams":
                emit(
                    event="streams-done", streams=await streams(client, args[0], int(args[1]), float(args[2]))
                )
            elif cmd == "nodes":
                emit(event="nodes", **await wait_nodes(client, int(args[0]), float(args[1])))
            elif cmd == "each":
                emit(event="each", answers=await call_each(client))
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
