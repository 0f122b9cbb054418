"""Go Micro's own nats broker (the interop binary, go-micro.dev/v5) and NatsBroker on one nats-server."""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
import trio

from tests.interop._go import GoProcess, open_go
from trimicro._nats.client import NoResponders, RequestTimeout
from trimicro.broker import BrokerMessage, Event
from trimicro.broker.nats import NatsBroker
from trimicro.testing.nats import NatsServerProcess

pytestmark = pytest.mark.loopback

INTEROP = Path(__file__).resolve().parents[1] / "interop" / "go" / "bin" / "interop"


def go_flags(nats: NatsServerProcess) -> list[str]:
    # memory registry: no mDNS traffic at all; everything else on 127.0.0.1
    return ["--registry", "memory", "--broker", "nats", "--broker_address", nats.address]


def go_process(args: list[str]) -> AbstractAsyncContextManager[GoProcess]:
    """Run the interop binary; iterate the result for its JSON stdout lines; stopped on exit."""
    if not INTEROP.exists():
        pytest.skip("Go interop binary not built (tests/interop/go/build.sh)")
    return open_go(INTEROP, args)


async def test_go_micro_publisher_to_trimicro_subscriber(nats_server: NatsServerProcess) -> None:
    got: list[Event] = []
    done = trio.Event()

    async def handler(event: Event) -> None:
        got.append(event)
        if len(got) == 3:
            done.set()

    async with NatsBroker([nats_server.address]) as broker:
        await broker.subscribe("interop.events", handler)
        args = ["publisher", *go_flags(nats_server), "--topic", "interop.events", "--count", "3"]
        async with go_process([*args, "--linger", "0s", "--message", "from go"]) as lines:
            with trio.fail_after(15):
                await done.wait()
                async for line in lines:
                    if line["event"] == "done":
                        assert line["failed"] == 0
                        break
    assert broker.stats.undecodable == 0
    for seq, event in enumerate(got):
        header = event.message.header
        assert header["Content-Type"] == "application/json"
        assert header["Micro-Topic"] == "interop.events"
        body = json.loads(event.message.body)
        assert body["message"] == "from go" and int(body.get("seq", 0)) == seq


async def test_trimicro_publisher_to_go_micro_subscriber(nats_server: NatsServerProcess) -> None:
    args = ["server", *go_flags(nats_server), "--server_address", "127.0.0.1:0", "--topic", "interop.in"]
    async with NatsBroker([nats_server.address]) as broker, go_process(args) as lines:
        with trio.fail_after(15):
            async for line in lines:
                if line["event"] == "started":
                    break
            # "started" can precede the server seeing Go's SUB: probe until someone listens.
            while True:
                try:
                    await broker.client.request("interop.in", b"", timeout=0.2)
                except NoResponders:
                    await trio.sleep(0.05)  # polling an external process's readiness
                except RequestTimeout:
                    break  # a subscriber got it (and ignored the undecodable probe)
            for seq in range(3):
                body = json.dumps({"id": str(seq), "seq": seq, "message": "from trimicro"}).encode()
                header = {
                    "Content-Type": "application/json",
                    "Micro-Topic": "interop.in",
                    "Micro-Id": f"m{seq}",
                }
                await broker.publish("interop.in", BrokerMessage(header, body))
            seen = []
            async for line in lines:
                if line["event"] == "message":
                    seen.append(line)
                    if len(seen) == 3:
                        break
    for seq, line in enumerate(seen):
        assert line["topic"] == "interop.in" and line["content_type"] == "application/json"
        assert line["header"]["Micro-Id"] == f"m{seq}"
        assert json.loads(line["body"])["message"] == "from trimicro"
