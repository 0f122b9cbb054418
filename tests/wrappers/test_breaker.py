"""The circuit breaker: its state machine on trio's autojump clock, then as a client wrapper on a
real service."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import trimicro
from tests.client.test_client import _node
from tests.protos.greeter_pb2 import HelloRequest, HelloResponse
from trimicro import errors
from trimicro.client import CallRequest
from trimicro.errors import MicroError
from trimicro.wrappers import Breaker, circuit_breaker
from trimicro.wrappers._breaker import by_address, is_failure


def test_what_counts_as_a_failure() -> None:
    assert is_failure(MicroError("go.micro.client", 500, "connection refused"))
    assert is_failure(MicroError("go.micro.client", 408, "deadline"))
    assert is_failure(MicroError("x", 503))
    assert not is_failure(MicroError("x", 404)) and not is_failure(MicroError("x", 400))
    assert not is_failure(None)


def test_state_machine_opens_half_opens_and_closes() -> None:
    b = Breaker(failures=3, cool_down=5)
    for t in range(2):
        assert b.allow(t)
        b.record(t, True)
    assert b.allow(2) and b.record(2, False) is None  # a success resets the run
    for t in (3, 3, 3):
        assert b.allow(t)
        changed = b.record(t, True)
    assert changed == "open" and b.state == "open"
    assert not b.allow(4) and not b.allow(7.9)
    assert b.allow(8) and b.state == "half-open"  # the probe
    assert not b.allow(8)  # only one
    assert b.record(8.5, True) == "open"  # probe failed: open for another cool-down
    assert not b.allow(13)
    assert b.allow(13.5)
    assert b.record(13.6, False) == "closed"
    assert b.allow(13.7) and b.opened == 2 and b.rejected == 4


def test_failure_rate_opens() -> None:
    b = Breaker(failures=0, failure_rate=0.5, min_requests=4, window=10)
    for t, failed in enumerate([True, False, True]):
        b.record(t, failed)
    assert b.state == "closed"
    assert b.record(3, True) == "open"  # 3 of 4


class Flaky:
    """A handler that fails with 503 while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    async def Hello(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
        self.calls += 1
        if self.down:
            raise errors.service_unavailable("greeter", "down")
        return HelloResponse(greeting="hi")


async def test_wrapper_on_a_real_service(registry, nursery, socket_clock):
    handler = Flaky()
    svc = trimicro.Service("greeter", registry=registry, argv=[], handle_signals=False)
    svc.handle(handler, name="Greeter")
    await nursery.start(svc.run)
    breaker = circuit_breaker(failures=3, cool_down=5)
    async with trimicro.open_client(registry=registry, wrappers=[breaker], client_retries=0) as client:

        async def hello() -> str:
            rsp = await client.call("greeter", "Greeter.Hello", HelloRequest(), response_type=HelloResponse)
            return str(rsp.greeting)

        assert await hello() == "hi"
        handler.down = True
        for _ in range(3):
            with pytest.raises(MicroError) as info:
                await hello()
            assert info.value.id == "greeter"  # the service's own 503
        assert breaker.breaker("greeter").state == "open"
        calls = handler.calls
        for _ in range(10):  # refused at once: nothing reaches the service
            with pytest.raises(MicroError) as info:
                await hello()
            assert info.value.code == 503 and info.value.id == "go.micro.client"
            assert "circuit open" in info.value.detail
        assert handler.calls == calls
        await trio.sleep(5)
        with pytest.raises(MicroError):  # the probe fails: open again
            await hello()
        assert handler.calls == calls + 1 and breaker.breaker("greeter").state == "open"
        handler.down = False
        await trio.sleep(5)
        assert await hello() == "hi"  # the probe succeeds: closed
        assert breaker.breaker("greeter").state == "closed"
        assert [await hello() for _ in range(5)] == ["hi"] * 5
        assert breaker.stats()["greeter"]["opened"] == 2


async def test_a_handler_4xx_does_not_open_it(registry, nursery):
    await _node(nursery, registry, "a")
    breaker = circuit_breaker(failures=2)
    async with trimicro.open_client(registry=registry, wrappers=[breaker]) as client:
        for _ in range(5):
            with pytest.raises(MicroError) as info:
                await client.call(
                    "greeter", "Greeter.Fail", HelloRequest(name="n"), response_type=HelloResponse
                )
            assert info.value.code == 400
    assert breaker.breaker("greeter").state == "closed"


async def test_an_abandoned_probe_frees_the_slot(autojump_clock: trio.testing.MockClock) -> None:
    breaker = circuit_breaker(failures=1, cool_down=1)
    gate = trio.Event()

    async def downstream(req: CallRequest) -> str:
        if not gate.is_set():
            raise MicroError("svc", 503)
        await trio.sleep_forever()
        return "unreachable"

    call = breaker(downstream)
    req = CallRequest("svc", "E.M", None)
    with pytest.raises(MicroError):
        await call(req)
    await trio.sleep(1)
    gate.set()
    with trio.move_on_after(0.5):  # the probe hangs and its caller gives up
        await call(req)
    assert breaker.breaker("svc").state == "half-open" and not breaker.breaker("svc").probe_out


def test_keys() -> None:
    assert by_address(CallRequest("s", "E.M", None, address="1.2.3.4:5")) == "s@1.2.3.4:5"
    assert by_address(CallRequest("s", "E.M", None)) == "s"
    with pytest.raises(ValueError):
        circuit_breaker(cool_down=0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(min_value=0, max_value=4)), max_size=200))
def test_fuzz_breaker_invariants(events: list[tuple[bool, float]]) -> None:
    """Whatever the outcomes: open refuses until the cool-down, half-open lets exactly one call
    through, and a success always leaves the circuit closed."""
    b = Breaker(failures=3, failure_rate=0.5, min_requests=5, window=10, cool_down=2)
    now = 0.0
    for failed, dt in events:
        now += dt
        state = b.state
        allowed = b.allow(now)
        if state == "closed":
            assert allowed
        if state == "open" and now < b.opened_at + b.cool_down:
            assert not allowed
        if b.state == "half-open" and allowed:
            assert not b.allow(now)  # the probe is out: nobody else
        if allowed:
            b.record(now, failed)
            if not failed:
                assert b.state == "closed"
