"""Deadline-aware retries over real nodes (and a zombie: a listener that accepts and never answers):
per-attempt timeouts, the retry budget, pushback and hedging."""

from __future__ import annotations

import collections
import functools
import math

import attrs
import pytest
import trio
import trio.testing

import trimicro
from tests.client.test_client import _hello, _node
from tests.protos.greeter_pb2 import HelloRequest, HelloResponse, SlowRequest, SlowResponse
from trimicro import errors
from trimicro.client import default_retry
from trimicro.client._retry import Retrier, RetryBudget, attach_pushback, pushback_of
from trimicro.errors import AttemptTimeout, MicroError
from trimicro.registry import Node, Service


async def zombie(
    nursery: trio.Nursery, registry: trimicro.registry.MemoryRegistry, node_id: str = "zombie"
) -> str:
    """A node that takes connections and never answers (what a SIGSTOPped process looks like)."""

    async def hold(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    listeners = await nursery.start(functools.partial(trio.serve_tcp, hold, 0, host="127.0.0.1"))
    address = f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"
    await registry.register(
        Service("greeter", "latest", nodes=[Node(node_id, address, {"protocol": "mucp"})])
    )
    return address


class Overloaded:
    def __init__(self) -> None:
        self.calls = 0

    async def Hello(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
        self.calls += 1
        raise errors.service_unavailable("greeter", "overloaded")


async def test_a_hung_node_costs_one_attempt_not_the_call(registry, nursery, socket_clock):
    await _node(nursery, registry, "a")
    await _node(nursery, registry, "b")
    await zombie(nursery, registry)
    async with trimicro.open_client(registry=registry) as client:
        got = collections.Counter()
        for _ in range(60):
            start = trio.current_time()
            got[await _hello(client, timeout=1)] += 1
            assert trio.current_time() - start < 0.5  # at most one third of the deadline lost
        stats = client.stats()
        assert set(got) == {"a", "b"} and sum(got.values()) == 60
        assert 1 <= stats["attempt_timeouts"] <= 5  # five in a row eject it
        assert client.selector.stats()["ejected"] == {"greeter": ["zombie"]}


async def test_the_last_attempt_gets_what_is_left(registry, nursery, socket_clock):
    """A 500 ms call with a 1 s deadline: the first attempt is cut at a third, the retry has the rest."""
    await _node(nursery, registry, "a")
    async with trimicro.open_client(registry=registry) as client:
        rsp = await client.call(
            "greeter", "Greeter.Slow", SlowRequest(sleep_ms=500), response_type=SlowResponse, timeout=1
        )
        assert rsp.slept_ms == 500
        # The server had the attempt's deadline (Timeout header) and answered 408 at it: retried.
        assert client.stats()["retries"] == 1
        with pytest.raises(MicroError) as info:  # too slow for any attempt: a 408, as before
            await client.call(
                "greeter", "Greeter.Slow", SlowRequest(sleep_ms=5000), response_type=SlowResponse, timeout=1
            )
        assert info.value.code == 408 and info.value.id == "go.micro.client"


async def test_client_attempt_timeout_option(registry, nursery, socket_clock):
    await zombie(nursery, registry)
    async with trimicro.open_client(
        registry=registry, client_attempt_timeout=0.2, client_retries=2
    ) as client:
        start = trio.current_time()
        with pytest.raises(MicroError) as info:
            await _hello(client, timeout=5)
        # two attempts of 0.2 s, then the last one has the rest of the deadline
        assert info.value.code == 408
        assert trio.current_time() - start == pytest.approx(5, abs=0.1)
        assert client.stats()["attempt_timeouts"] == 2


async def test_retry_budget_stops_retries_when_everything_fails(registry, nursery):
    handler = Overloaded()
    svc = trimicro.Service("greeter", registry=registry, argv=[], handle_signals=False)
    svc.handle(handler, name="Greeter")
    await nursery.start(svc.run)
    async with trimicro.open_client(registry=registry, client_retries=3, client_retry_budget=10) as client:
        for _ in range(20):
            with pytest.raises(MicroError) as info:
                await _hello(client)
            assert info.value.code == 503
        stats = client.stats()
    # 10 tokens, retries only above 5: calls 1-2 retry (3 attempts then 2), then only first attempts
    assert handler.calls < 30, handler.calls  # without a budget: 80
    assert stats["retries_throttled"] >= 15
    assert stats["retry_tokens"]["greeter"] < 5


def test_budget_refills_with_successes() -> None:
    b = RetryBudget(10, 0.5)
    for _ in range(6):
        b.failure("s")
    assert not b.allow("s")
    for _ in range(3):
        b.success("s")
    assert b.tokens("s") == 5.5 and b.allow("s")
    for _ in range(20):
        b.success("s")
    assert b.tokens("s") == 10
    assert RetryBudget(0).allow("s")  # no budget


def test_pushback_parsing() -> None:
    def pb(header: dict[str, str]) -> float | None:
        return pushback_of(attach_pushback(MicroError("x", 503), header))

    assert pb({}) is None
    assert pb({"Micro-Retry-After": "250ms"}) == 0.25
    assert pb({"Micro-Retry-After": "2"}) == 2.0
    assert pb({"Grpc-Retry-Pushback-Ms": "30"}) == 0.03
    assert pb({"grpc-retry-pushback-ms": "-1"}) < 0  # negative: do not retry
    assert pb({"Micro-Retry-After": "soon"}) == -1.0


@attrs.define
class ScriptedClient:
    """Just what Retrier.run uses of a Client: ``_call_node`` answers from a script."""

    script: list[BaseException | str]
    selector: None = None
    retry: object = staticmethod(default_retry)
    calls: list[float] = attrs.field(factory=list)

    async def _call_node(self, req, node, deadline):
        self.calls.append(trio.current_time())
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


def _req(retries: int = 3):
    from trimicro.client import CallRequest

    return CallRequest("s", "E.M", None, retries=retries)


async def test_pushback_delays_the_retry_and_negative_stops_it(autojump_clock):
    node = Node("n", "127.0.0.1:1")
    busy = attach_pushback(MicroError("srv", 503, "busy"), {"Micro-Retry-After": "0.5"})
    client = ScriptedClient([busy, "ok"])
    r = Retrier()
    assert await r.run(client, _req(), math.inf, lambda: node) == "ok"
    assert client.calls[1] - client.calls[0] == pytest.approx(0.5)
    assert r.pushbacks == 1
    stop = attach_pushback(MicroError("srv", 503, "go away"), {"Grpc-Retry-Pushback-Ms": "-1"})
    client = ScriptedClient([stop, "ok"])
    with pytest.raises(MicroError) as info:
        await r.run(client, _req(), math.inf, lambda: node)
    assert info.value is stop and len(client.calls) == 1
    # A pushback longer than the time left: no retry, the 503 is the answer.
    client = ScriptedClient([busy, "ok"])
    with pytest.raises(MicroError):
        await r.run(client, _req(), trio.current_time() + 0.3, lambda: node)
    assert len(client.calls) == 1


async def test_attempt_timeout_is_a_retryable_transport_error(autojump_clock):
    assert default_retry(AttemptTimeout("x"))
    node = Node("n", "127.0.0.1:1")

    @attrs.define
    class Hangs(ScriptedClient):
        async def _call_node(self, req, node, deadline):
            self.calls.append(deadline)
            if len(self.calls) == 1:
                await trio.sleep_forever()
            return "ok"

    client = Hangs([])
    start = trio.current_time()
    assert await Retrier().run(client, _req(retries=1), start + 3, lambda: node) == "ok"
    assert client.calls[0] == pytest.approx(start + 1)  # a third of the deadline
    assert client.calls[1] == pytest.approx(start + 3)  # the last attempt: all of it


async def test_hedging_sends_a_second_attempt_and_the_first_answer_wins(registry, nursery, socket_clock):
    await _node(nursery, registry, "a")
    await zombie(nursery, registry)
    async with trimicro.open_client(registry=registry, client_hedge_delay=0.05) as client:
        for _ in range(30):
            start = trio.current_time()
            assert await _hello(client, timeout=5) == "a"
            assert trio.current_time() - start < 0.2
        stats = client.stats()
        assert stats["hedges"] >= 1 and stats["attempt_timeouts"] == 0
        # The losing attempts were cancelled and released: nothing held in flight on the zombie.
        await trio.sleep(0.1)
        assert client.selector.detector.inflight("greeter", "zombie") == 0


async def test_client_and_selector_stats_in_debug_stats(registry, nursery):
    svc, _ = await _node(nursery, registry, "a")
    await _hello(svc.client)
    async with trimicro.open_client(registry=registry) as client:
        stats = await client.call("greeter", "Debug.Stats", {}, content_type="application/json")
    assert stats["client"]["retries"] == 0 and "retries_throttled" in stats["client"]
    assert stats["selector"] == {"ejections": 0, "reinstated": 0, "probes": 0, "ejected": {}}


async def test_hedged_failures_retry_at_once_and_errors_come_out_typed(autojump_clock):
    node = Node("n", "127.0.0.1:1")
    r = Retrier(hedge_delay=0.5)
    client = ScriptedClient([MicroError("srv", 503, "busy"), "ok"])
    assert await r.run(client, _req(retries=1), math.inf, lambda: node) == "ok"
    assert client.calls[1] - client.calls[0] < 0.5 and r.retries == 1  # no waiting for the hedge delay
    client = ScriptedClient([errors.TransportError("refused"), errors.TransportError("refused")])
    with pytest.raises(MicroError) as info:  # not an ExceptionGroup: the nursery is left first
        await r.run(client, _req(retries=1), math.inf, lambda: node)
    assert info.value.code == 500 and info.value.id == "go.micro.client"
    client = ScriptedClient([MicroError("srv", 400, "bad"), "never"])
    with pytest.raises(MicroError) as info:
        await r.run(client, _req(retries=3), math.inf, lambda: node)
    assert info.value.code == 400 and len(client.calls) == 1
