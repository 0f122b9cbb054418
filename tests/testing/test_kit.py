"""trimicro.testing: serve in-process, the test broker, dependency replacement, the pytest plugin.

Run with the plugin loaded from this checkout: ``pytest -p trimicro.testing.plugin tests/testing``
(once trimicro is installed the ``pytest11`` entry point loads it by itself; see test_entry_point).
"""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

import trimicro
import trimicro.testing
from tests.conftest import Greeter
from tests.protos.greeter_pb2 import HelloRequest, HelloResponse, SlowRequest, SlowResponse
from trimicro.errors import BrokerError
from trimicro.testing import TestBroker, World, autospec, serve, worker_factory

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kw: object) -> None:
        raise AssertionError("a socket was used")

    monkeypatch.setattr(trio.socket, "socket", refuse)
    monkeypatch.setattr(socket.socket, "bind", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


# -- serve ---------------------------------------------------------------------------------------


async def test_serve_calls_a_handler_without_sockets(no_sockets: None) -> None:
    greeter = Greeter()
    async with serve(greeter, name="greeter") as client:
        rsp = await client.call("Greeter.Hello", HelloRequest(name="kit"), response_type=HelloResponse)
        assert rsp.greeting == "Hello kit"
        assert await client.call("Greeter.Hello", {"name": "json"}) == {"greeting": "Hello json"}
        with pytest.raises(trimicro.MicroError) as info:
            await client.call("Greeter.Fail", HelloRequest(name="x"), response_type=HelloResponse)
        assert (info.value.code, info.value.detail) == (400, "bad name x")
        assert client.name == "greeter"
        [record] = await client.registry.get_service("greeter")
        assert record.nodes[0].address == client.address
    assert greeter.calls == 2


async def test_two_serves_are_isolated() -> None:
    async with serve(Greeter("a"), name="greeter") as a, serve(Greeter("b"), name="greeter") as b:
        assert (await a.call("Greeter.Hello", {"name": "x"}))["greeting"] == "Hello x from a"
        assert (await b.call("Greeter.Hello", {"name": "x"}))["greeting"] == "Hello x from b"


@pytest.mark.loopback
@pytest.mark.parametrize("transport", ["http", "grpc"])
async def test_serve_on_real_sockets(transport: str) -> None:
    async with serve(Greeter(), name="greeter", transport=transport) as client:
        host, _, port = client.address.rpartition(":")
        assert host == "127.0.0.1" and int(port) > 0
        rsp = await client.call("Greeter.Hello", HelloRequest(name=transport), response_type=HelloResponse)
        assert rsp.greeting == f"Hello {transport}"


async def test_a_world_lets_services_call_each_other(trimicro_world: World) -> None:
    class Front:
        async def Greet(self, req: dict[str, Any], ctx: trimicro.Context) -> dict[str, Any]:
            rsp: dict[str, Any] = await front.client.call(
                "greeter", "Greeter.Hello", req, content_type="application/json"
            )
            return {"via": "front", **rsp}

    async with (
        trimicro_world.serve(Greeter(), name="greeter"),
        trimicro_world.serve(Front(), name="front") as front,
    ):
        assert await front.call("Front.Greet", {"name": "w"}) == {"via": "front", "greeting": "Hello w"}
        async with trimicro_world.client() as client:
            assert await client.call(
                "greeter", "Greeter.Hello", {"name": "c"}, content_type="application/json"
            ) == {"greeting": "Hello c"}


# -- the fixtures ----------------------------------------------------------------------------------


async def test_service_and_client_fixtures(trimicro_service: Any, trimicro_client: Any) -> None:
    greeter = await trimicro_service(Greeter(), name="greeter")
    assert (await greeter.call("Greeter.Hello", {"name": "f"}))["greeting"] == "Hello f"
    client = await trimicro_client()
    assert (await client.call("greeter", "Greeter.Hello", {"name": "g"}, content_type="application/json"))[
        "greeting"
    ] == "Hello g"


# -- autojump_clock: retries and timeouts in virtual time ---------------------------------------------


async def test_timeout_under_autojump_clock(autojump_clock: trio.testing.MockClock) -> None:
    greeter = Greeter()
    async with serve(greeter, name="greeter") as client:
        start = trio.current_time()
        with pytest.raises(trimicro.MicroError) as info:
            await client.call(
                "Greeter.Slow",
                SlowRequest(sleep_ms=60_000),
                response_type=SlowResponse,
                timeout=2.5,
                retries=0,
            )
        assert info.value.code == 408
        assert 2.5 <= trio.current_time() - start < 3  # a minute-long handler, cut at 2.5 virtual seconds
        rsp = await client.call(
            "Greeter.Slow", SlowRequest(sleep_ms=30_000), response_type=SlowResponse, timeout=60
        )
        assert rsp.slept_ms == 30_000  # half a virtual minute, no real wait


async def test_retry_under_autojump_clock(autojump_clock: trio.testing.MockClock) -> None:
    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        async def Hello(self, req: dict[str, Any], ctx: trimicro.Context) -> dict[str, Any]:
            self.calls += 1
            if self.calls < 3:
                await trio.sleep(1)  # busy for a virtual second, then refuse
                raise trimicro.errors.MicroError("flaky", 503, "try again")
            return {"ok": True}

    flaky = Flaky()
    async with serve(flaky, name="flaky") as client:
        start = trio.current_time()
        assert await client.call("Flaky.Hello", {}, retries=2, timeout=10) == {"ok": True}
        assert flaky.calls == 3
        assert trio.current_time() - start >= 2  # two failed virtual seconds plus backoff
        flaky.calls = 0
        with pytest.raises(trimicro.MicroError) as info:
            await client.call("Flaky.Hello", {}, retries=1, timeout=10)
        assert info.value.code == 503 and flaky.calls == 2


# -- the test broker --------------------------------------------------------------------------------


@attrs.define
class Signup:
    user: str


async def test_broker_records_publishes_and_delivers() -> None:
    seen: list[Signup] = []

    async def on_signup(msg: Signup, ctx: trimicro.Context) -> None:
        if msg.user == "mallory":
            raise ValueError("banned")
        seen.append(msg)

    class Accounts:
        async def Create(self, req: dict[str, Any], ctx: trimicro.Context) -> dict[str, Any]:
            await accounts.client.publish("signups", Signup(req["user"]))
            return {}

    async with serve(Accounts(), name="accounts", subscribe={"signups": on_signup}) as accounts:
        broker: TestBroker = accounts.broker
        await accounts.call("Accounts.Create", {"user": "alice"})
        assert broker.payloads("signups", Signup) == [Signup("alice")]
        assert broker.published["signups"][0].header["Content-Type"] == "application/json"
        assert await broker.deliver("signups", Signup("bob")) == 1
        assert Signup("bob") in seen  # the handler ran before deliver returned
        with pytest.raises(ValueError, match="banned"):
            await broker.deliver("signups", {"user": "mallory"})
        with pytest.raises(BrokerError):
            await broker.deliver("nobody-listens", {})
        assert broker.published["nobody-listens"] == []  # deliver is not a publish


async def test_broker_queue_groups_and_raw_handlers() -> None:
    got: list[str] = []
    broker = TestBroker()
    async with broker:

        async def handler(event: trimicro.broker.Event) -> None:
            got.append(event.message.body.decode())
            if event.message.body == b"boom":
                raise KeyError("raw")

        sub1 = await broker.subscribe("t", handler, queue="q")
        await broker.subscribe("t", handler, queue="q")
        assert await broker.deliver("t", b"one", content_type="application/octet-stream") == 1
        assert got == ["one"]
        with pytest.raises(KeyError):
            await broker.deliver("t", b"boom", content_type="application/octet-stream")
        await sub1.unsubscribe()
        assert len(broker.subscriptions) == 1


# -- worker_factory -------------------------------------------------------------------------------


class Store:
    async def save(self, name: str) -> int:
        raise AssertionError("the real store is not used in unit tests")


class Signups:
    store: Store
    mailer: Any

    def __init__(self) -> None:
        self.store = Store()

    async def Create(self, req: dict[str, Any], ctx: trimicro.Context) -> dict[str, Any]:
        uid = await self.store.save(req["name"])
        self.mailer.send(req["name"])
        return {"id": uid}


async def test_worker_factory_with_autospec_and_given_objects() -> None:
    sent: list[str] = []

    class FakeMailer:
        def send(self, to: str) -> None:
            sent.append(to)

    handler = worker_factory(Signups, store=autospec, mailer=FakeMailer())
    handler.store.save.return_value = 7  # type: ignore[attr-defined]
    async with serve(handler, name="signups") as client:
        assert await client.call("Signups.Create", {"name": "ann"}) == {"id": 7}
    handler.store.save.assert_awaited_once_with("ann")  # type: ignore[attr-defined]
    assert sent == ["ann"]
    with pytest.raises(TypeError):  # autospec keeps the real signature
        await handler.store.save("a", "b")  # type: ignore[call-arg]
    with pytest.raises(AttributeError, match="no attribute or annotation 'stor'"):
        worker_factory(Signups, stor=autospec)
    annotated = worker_factory(Signups(), mailer=autospec)  # only annotated: spec'd from the annotation
    annotated.mailer.anything()


# -- the plugin's registration ------------------------------------------------------------------------


def test_entry_point() -> None:
    """pyproject registers the plugin module under pytest11, and the module has the fixtures."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    target = meta["project"]["entry-points"]["pytest11"]["trimicro"]
    assert target == "trimicro.testing.plugin"
    import importlib

    plugin = importlib.import_module(target)
    for name in ("trimicro_service", "trimicro_client", "trimicro_broker", "trimicro_world", "trimicro_nats"):
        assert hasattr(plugin, name)
