"""Discovery across languages on one etcd: each side finds and describes the other; departed Go nodes
(deregistered on SIGTERM, or dead with their lease expiring) leave trimicro's selector."""

from __future__ import annotations

import base64
import json
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import trimicro
from tests.interop._go import GoProcess, PyGreeter, go_flags, open_go, py_service, run_go
from tests.protos.greeter_pb2 import HelloRequest, HelloResponse

pytestmark = pytest.mark.loopback


@asynccontextmanager
async def go_greeter(binary: Path, etcd: str, name: str, *extra: str) -> AsyncIterator[GoProcess]:
    async with open_go(
        binary, ["server", *go_flags(etcd), "--server_address", "127.0.0.1:0", "--name", name, *extra]
    ) as go:
        await go.expect("started")
        yield go


async def etcd_prefix(endpoint: str, prefix: str) -> dict[str, Any]:
    """Raw ``key -> JSON value`` under ``prefix``, read through etcd's own JSON gateway (not our client)."""
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    body = json.dumps(
        {
            "key": base64.b64encode(prefix.encode()).decode(),
            "range_end": base64.b64encode(end.encode()).decode(),
        }
    ).encode()
    host, _, port = endpoint.rpartition(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(
            b"POST /v3/kv/range HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (endpoint.encode(), len(body), body)
        )
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    reply = json.loads(data.partition(b"\r\n\r\n")[2])
    return {
        base64.b64decode(kv["key"]).decode(): json.loads(base64.b64decode(kv["value"]))
        for kv in reply.get("kvs", [])
    }


async def test_trimicro_describes_go_service(go_interop: Path, shared_etcd: str, uniq: str) -> None:
    name = f"greeter-go-{uniq}"
    async with go_greeter(go_interop, shared_etcd, name) as go:
        started = go.events[0]
        async with trimicro.open_service(service=py_service(f"observer-{uniq}", shared_etcd)) as svc:
            listed = {s.name for s in await svc.registry.list_services()}
            assert name in listed
            [record] = await svc.registry.get_service(name)
    assert record.version == "latest"
    [node] = record.nodes
    assert node.id == f"{name}-{started['id']}"  # Go prints the uuid part of the node id
    assert node.address == started["address"]
    assert node.metadata == {
        "broker": "http", "protocol": "mucp", "registry": "etcd", "server": "mucp", "transport": "http",
    }  # fmt: skip
    endpoints = {e.name: e for e in record.endpoints}
    assert set(endpoints) == {f"Greeter.{m}" for m in ("Echo", "Fail", "Hello", "Slow", "Stream", "Sum")}
    hello = endpoints["Greeter.Hello"]
    assert hello.request is not None and hello.response is not None
    assert (hello.request.name, [(v.name, v.type) for v in hello.request.values]) == (
        "HelloRequest",
        [("name", "string")],
    )
    assert [(v.name, v.type) for v in hello.response.values] == [("greeting", "string")]
    slow = endpoints["Greeter.Slow"]
    assert slow.request is not None and [(v.name, v.type) for v in slow.request.values] == [
        ("sleep_ms", "int64")
    ]
    for streaming in ("Greeter.Echo", "Greeter.Stream", "Greeter.Sum"):
        request = endpoints[streaming].request
        assert endpoints[streaming].metadata == {"stream": "true"}
        assert request is not None and request.name == "Context"


async def test_go_finds_trimicro_service_and_records_match(
    go_interop: Path, shared_etcd: str, uniq: str
) -> None:
    """Go resolves our node through its etcd registry and selector, and our etcd value has the exact
    shape of the one Go writes (same keys at every level; Go unmarshals it into registry.Service)."""
    py_name, go_name = f"greeter-py-{uniq}", f"greeter-go-{uniq}"
    async with (
        go_greeter(go_interop, shared_etcd, go_name),
        trimicro.open_service(service=py_service(py_name, shared_etcd, PyGreeter(py_name))),
    ):
        go = await run_go(
            go_interop,
            ["client", *go_flags(shared_etcd), "--service", py_name, "--request", '{"name":"reg"}'],
        )
        assert go.returncode == 0, go.describe()
        assert go.events[0]["response"] == {"greeting": "Hello reg"}
        ours = await etcd_prefix(shared_etcd, f"/micro/registry/{py_name}/")
        theirs = await etcd_prefix(shared_etcd, f"/micro/registry/{go_name}/")
    [(our_key, our_value)] = ours.items()
    [(their_key, their_value)] = theirs.items()
    assert our_key == f"/micro/registry/{py_name}/{our_value['nodes'][0]['id']}"
    assert their_key == f"/micro/registry/{go_name}/{their_value['nodes'][0]['id']}"
    assert set(our_value) == set(their_value) == {"name", "version", "metadata", "endpoints", "nodes"}
    assert set(our_value["nodes"][0]) == set(their_value["nodes"][0]) == {"id", "address", "metadata"}
    assert set(our_value["nodes"][0]["metadata"]) >= set(their_value["nodes"][0]["metadata"])
    our_eps = {e["name"]: e for e in our_value["endpoints"]}
    their_eps = {e["name"]: e for e in their_value["endpoints"]}
    assert set(our_eps) >= {"Greeter.Hello", "Greeter.Fail", "Greeter.Slow"}
    for ep in ("Greeter.Hello", "Greeter.Slow"):
        assert set(our_eps[ep]) == set(their_eps[ep])
        assert our_eps[ep]["request"]["name"] == their_eps[ep]["request"]["name"]
        assert [(v["name"], v["type"]) for v in our_eps[ep]["request"]["values"]] == [
            (v["name"], v["type"]) for v in their_eps[ep]["request"]["values"]
        ]


async def node_ids(svc: trimicro.Service, name: str) -> set[str]:
    """The node ids trimicro's selector would pick from right now."""
    await svc.client.selector.select(name)  # type: ignore[union-attr]
    cached = svc.client.selector.cached(name) or []  # type: ignore[union-attr]
    return {n.id for s in cached for n in s.nodes}


async def wait_dropped(svc: trimicro.Service, name: str, node_id: str, timeout: float) -> None:
    with trio.fail_after(timeout):
        while node_id in await node_ids(svc, name):
            await trio.sleep(0.02)  # the selector applies etcd's watch events on its own task


async def calls_land_on(svc: trimicro.Service, name: str, n: int) -> None:
    for i in range(n):
        rsp = await svc.client.call(
            name, "Greeter.Hello", HelloRequest(name=f"n{i}"), response_type=HelloResponse
        )
        assert rsp.greeting == f"Hello n{i}"


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_departed_go_node_leaves_trimicro_selector(
    go_interop: Path, shared_etcd: str, uniq: str, how: str
) -> None:
    """SIGTERM: Go deregisters (key deleted). SIGKILL: nothing is deleted, the node's 2 s lease expires."""
    name = f"greeter-go-{uniq}"
    short_ttl = ["--register_ttl", "2", "--register_interval", "1"]
    async with (
        trimicro.open_service(service=py_service(f"caller-{uniq}", shared_etcd)) as svc,
        go_greeter(go_interop, shared_etcd, name, *short_ttl) as a,
        go_greeter(go_interop, shared_etcd, name) as b,
    ):
        a_id, b_id = (f"{name}-{go.events[0]['id']}" for go in (a, b))
        with trio.fail_after(10):
            while (await node_ids(svc, name)) != {a_id, b_id}:
                await trio.sleep(0.02)  # the second node's registration reaches the watch
        await calls_land_on(svc, name, 6)
        if how == "sigterm":
            a.signal(signal.SIGTERM)
            await a.expect("stopped", timeout=10)
            await wait_dropped(svc, name, a_id, timeout=5)
        else:
            a.signal(signal.SIGKILL)
            await a.wait(timeout=5)
            await wait_dropped(svc, name, a_id, timeout=10)  # lease TTL 2 s + etcd expiry sweep
        assert await node_ids(svc, name) == {b_id}
        b.cursor = len(b.events)
        await calls_land_on(svc, name, 4)
        assert len(b.all("hello")) >= 4
