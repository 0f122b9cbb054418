"""Outlier ejection: the sans-IO detector driven directly, then through the caching selector."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.selector.test_cache import FlakyRegistry, svc
from trimicro import errors
from trimicro.errors import AttemptTimeout, MicroError, TransportError
from trimicro.selector import CachingSelector, OutlierDetector, OutlierPolicy, is_node_failure

S = "greeter"
DOWN = TransportError("connection refused")
OK = None


def test_classification() -> None:
    assert is_node_failure(DOWN)
    assert is_node_failure(AttemptTimeout("no answer in 0.3s"))
    assert is_node_failure(errors.service_unavailable("go.micro.server", "overloaded"))
    assert is_node_failure(MicroError("x", 504))
    for handler_error in (
        errors.bad_request("greeter", "bad name"),
        errors.not_found("greeter", "no such user"),
        errors.internal_server_error("go.micro.server", "ZeroDivisionError: boom"),
        errors.timeout("go.micro.server", "handler deadline"),
    ):
        assert not is_node_failure(handler_error)
    assert not is_node_failure(None)
    assert not is_node_failure(trio.Cancelled._create())


def fail(
    d: OutlierDetector, node: str, n: int, now: float, nodes: int = 3, error: BaseException = DOWN
) -> None:
    for _ in range(n):
        d.blocked(S, now)  # as the selector does before each pick
        d.acquire(S, node, now)
        d.record(S, node, error, now, nodes)


def test_consecutive_failures_eject_then_probe_then_reinstate(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "trimicro.selector")
    d = OutlierDetector(OutlierPolicy(consecutive_failures=3, ejection_time=5))
    fail(d, "a", 2, now=0)
    d.acquire(S, "a", 0)
    d.record(S, "a", OK, 0, 3)  # a success breaks the run
    fail(d, "a", 2, now=0)
    assert d.blocked(S, 0) == frozenset()
    fail(d, "a", 1, now=1)
    assert d.blocked(S, 1) == {"a"}
    assert d.ejected() == {S: ["a"]} and d.ejections_total == 1
    assert d.blocked(S, 5.9) == {"a"}
    assert d.blocked(S, 6) == frozenset()  # ejection over: one probe may go
    d.acquire(S, "a", 6)
    assert d.blocked(S, 6) == {"a"}  # the probe is out: nobody else goes there
    d.record(S, "a", OK, 6.1, 3)
    assert d.blocked(S, 6.1) == frozenset() and d.ejected() == {}
    assert d.stats() == {"ejections": 1, "reinstated": 1, "probes": 1, "ejected": {}}
    messages = [r.getMessage() for r in caplog.records]
    assert sum("ejected for 5.0s" in m for m in messages) == 1  # once per state change
    assert sum("probing it" in m for m in messages) == 1
    assert sum("back in rotation" in m for m in messages) == 1


def test_failed_probe_doubles_the_ejection_up_to_the_cap() -> None:
    d = OutlierDetector(OutlierPolicy(consecutive_failures=1, ejection_time=5, max_ejection_time=12))
    fail(d, "a", 1, now=0)
    now, lengths = 0.0, []
    for _ in range(4):
        until = d.health(S, "a").until
        lengths.append(until - now)
        now = until
        assert d.blocked(S, now) == frozenset()
        fail(d, "a", 1, now=now)  # the probe fails
    assert lengths == [5, 10, 12, 12]


def test_the_multiplier_decays_while_healthy() -> None:
    d = OutlierDetector(OutlierPolicy(consecutive_failures=1, ejection_time=5))
    fail(d, "a", 1, now=0)  # out 5 s
    fail(d, "a", 1, now=5)  # probe fails: out 10 s, until 15
    d.blocked(S, 15)
    d.acquire(S, "a", 15)
    d.record(S, "a", OK, 15, 3)
    fail(d, "a", 1, now=20)  # healthy 5 s: one ejection forgiven, this is the 2nd again
    assert d.health(S, "a").until == 30


def test_failure_rate_over_the_window() -> None:
    d = OutlierDetector(OutlierPolicy(consecutive_failures=0, failure_rate=0.5, min_requests=10, window=10))
    for i in range(9):  # alternate: 5 failures of 9, under min_requests
        d.acquire(S, "a", i * 0.1)
        d.record(S, "a", DOWN if i % 2 == 0 else OK, i * 0.1, 3)
    assert d.blocked(S, 1) == frozenset()
    fail(d, "a", 1, now=1)
    assert d.blocked(S, 1) == {"a"}
    # Outcomes older than the window are forgotten.
    d2 = OutlierDetector(OutlierPolicy(consecutive_failures=0, min_requests=4, window=10))
    fail(d2, "b", 3, now=0)
    for t in (20, 20, 20):
        d2.acquire(S, "b", t)
        d2.record(S, "b", OK, t, 3)
    fail(d2, "b", 1, now=20)  # 1 of 4 in the window
    assert d2.blocked(S, 20) == frozenset()


def test_handler_errors_and_cancellation_do_not_eject() -> None:
    d = OutlierDetector(OutlierPolicy(consecutive_failures=2))
    fail(d, "a", 10, now=0, error=errors.bad_request("greeter", "bad"))
    fail(d, "a", 10, now=0, error=errors.internal_server_error("go.micro.server", "boom"))
    fail(d, "a", 10, now=0, error=trio.Cancelled._create())
    assert d.blocked(S, 0) == frozenset() and d.inflight(S, "a") == 0


def test_never_more_than_max_ejection_percent_and_never_all() -> None:
    d = OutlierDetector(OutlierPolicy(consecutive_failures=1, max_ejection_percent=50))
    for node in "abc":
        fail(d, node, 1, now=0, nodes=3)
    assert len(d.blocked(S, 0)) == 1  # floor(50% of 3)
    d100 = OutlierDetector(OutlierPolicy(consecutive_failures=1, max_ejection_percent=100))
    for node in "ab":
        fail(d100, node, 1, now=0, nodes=2)
    assert len(d100.blocked(S, 0)) == 1  # never the last one
    alone = OutlierDetector(OutlierPolicy(consecutive_failures=1, max_ejection_percent=100))
    fail(alone, "a", 5, now=0, nodes=1)
    assert alone.blocked(S, 0) == frozenset()
    off = OutlierDetector(OutlierPolicy(consecutive_failures=1, max_ejection_percent=0))
    fail(off, "a", 5, now=0, nodes=10)
    assert off.blocked(S, 0) == frozenset()


def test_an_unreported_probe_is_given_up_and_stragglers_are_ignored() -> None:
    d = OutlierDetector(OutlierPolicy(consecutive_failures=1, ejection_time=5))
    d.acquire(S, "a", 0)  # a slow call, started before the ejection
    fail(d, "a", 1, now=0)
    d.record(S, "a", OK, 1, 3)  # the straggler succeeds while ejected: ignored
    assert d.blocked(S, 1) == {"a"}
    assert d.blocked(S, 5) == frozenset()
    d.acquire(S, "a", 5)  # the probe, never reported
    assert d.blocked(S, 9.9) == {"a"}
    assert d.blocked(S, 10) == frozenset()  # another call may probe
    d.acquire(S, "a", 10)
    d.record(S, "a", OK, 10, 3)
    assert d.ejected() == {}


def test_forget_drops_departed_nodes() -> None:
    d = OutlierDetector(OutlierPolicy(consecutive_failures=1))
    fail(d, "a", 1, now=0)
    fail(d, "b", 0, now=0)
    d.acquire(S, "b", 0)
    d.forget(S, ["b"])
    assert d.size(S) == 1 and d.ejected() == {}


outcome = st.tuples(
    st.sampled_from("abcd"),
    st.sampled_from(["ok", "down", "cancel", "handler"]),
    st.floats(min_value=0, max_value=3),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(outcome, max_size=200), st.integers(min_value=1, max_value=4), st.sampled_from([0, 25, 50, 100])
)
def test_fuzz_invariants(events: list[tuple[str, str, float]], nodes: int, pct: int) -> None:
    """Whatever happens, at most floor(pct%) of the nodes and never all are out, counts never go
    negative, and every node comes back once its ejection (and a probe's grace) has passed."""
    d = OutlierDetector(OutlierPolicy(consecutive_failures=2, min_requests=3, max_ejection_percent=pct))
    ids = "abcd"[:nodes]
    errs = {"ok": None, "down": DOWN, "cancel": trio.Cancelled._create(), "handler": errors.bad_request("x")}
    now = 0.0
    for node, kind, dt in events:
        if node not in ids:
            continue
        now += dt
        if node in d.blocked(S, now):
            continue
        d.acquire(S, node, now)
        d.record(S, node, errs[kind], now, nodes)
        out = d.blocked(S, now)
        assert (len(out) <= pct * nodes // 100 and len(out) < max(nodes, 1)) or not out
        assert all(d.inflight(S, n) >= 0 for n in ids)
    assert d.blocked(S, now + 1000) == frozenset()


# ---- through the caching selector --------------------------------------------------------------------


async def test_selector_ejects_probes_and_reinstates(autojump_clock: trio.testing.MockClock) -> None:
    reg = FlakyRegistry()
    for n in ("n1", "n2", "n3"):
        await reg.register(svc(n))
    async with CachingSelector(reg, outlier=OutlierPolicy(consecutive_failures=3, ejection_time=5)) as sel:
        await sel.select(S)
        bad = next(s for s in sel.cached(S) or [] if s.nodes[0].id == "n1").nodes[0]
        for _ in range(3):
            sel.mark(S, bad, DOWN)
        picks = set()
        for _ in range(60):
            nxt = await sel.select(S)
            node = nxt()
            picks.add(node.id)
            sel.mark(S, node, None)
        assert picks == {"n2", "n3"}
        assert sel.stats()["ejected"] == {S: ["n1"]}
        await trio.sleep(5)
        firsts = []
        for _ in range(60):  # exactly one call probes n1 while its probe is out
            firsts.append((await sel.select(S))().id)
        assert firsts.count("n1") == 1
        sel.mark(S, bad, None)  # the probe answered
        assert sel.stats()["ejected"] == {}
        assert "n1" in {(await sel.select(S))().id for _ in range(60)}


async def test_a_next_does_not_repeat_a_node_while_others_remain() -> None:
    reg = FlakyRegistry()
    for n in ("n1", "n2", "n3"):
        await reg.register(svc(n))
    async with CachingSelector(reg) as sel:
        for _ in range(20):
            nxt = await sel.select(S)
            assert len({nxt().id for _ in range(3)}) == 3  # attempts 1..3 of one call: three nodes
            assert len({nxt().id for _ in range(3)}) == 3  # then it starts over


async def test_random_keeps_new_calls_off_a_node_piling_up_calls() -> None:
    """A node that accepts calls and never answers holds them in flight: new calls go elsewhere."""
    reg = FlakyRegistry()
    for n in ("n1", "n2", "n3"):
        await reg.register(svc(n))
    async with CachingSelector(reg) as sel:
        held = 0
        for _ in range(1000):  # three calls stuck on n1 (never marked)
            if held == 3:
                break
            node = (await sel.select(S))()
            if node.id == "n1":
                held += 1
            else:
                sel.mark(S, node, None)
        picks = []
        for _ in range(200):
            node = (await sel.select(S))()
            picks.append(node.id)
            sel.mark(S, node, None)
        assert "n1" not in picks and {"n2", "n3"} <= set(picks)


async def test_stats_show_in_debug_stats(autojump_clock: trio.testing.MockClock) -> None:
    from trimicro.debug import Debug
    from trimicro.server import Stats

    reg = FlakyRegistry()
    for n in ("n1", "n2"):
        await reg.register(svc(n))
    async with CachingSelector(reg, outlier=OutlierPolicy(consecutive_failures=1)) as sel:
        nxt = await sel.select(S)
        node = nxt()
        sel.mark(S, node, DOWN)
        stats = await Debug(Stats(), {"selector": sel}).Stats(None, None)
    assert stats["selector"] == {"ejections": 1, "reinstated": 0, "probes": 0, "ejected": {S: [node.id]}}


async def test_options_reach_the_selectors_of_services_and_clients(registry) -> None:
    import trimicro

    async with trimicro.open_client(
        registry=registry, selector_ejection_time="250ms", selector_max_ejection_percent=100
    ) as client:
        policy = client.selector.detector.policy
    assert policy.ejection_time == 0.25 and policy.max_ejection_percent == 100
    with pytest.raises(ValueError, match="option selector_max_ejection_percent must be in"):
        async with trimicro.open_client(registry=registry, selector_max_ejection_percent=150):
            pass
