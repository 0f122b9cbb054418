"""The caching selector over a real MemoryRegistry, wrapped to count calls and to fail on demand."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trimicro.config import Options
from trimicro.errors import RegistryError, ServiceNotFound, TransportError
from trimicro.registry import MemoryRegistry, Node, Result, Service, Watcher
from trimicro.selector import (
    P2C,
    CachingSelector,
    OutlierPolicy,
    RegistrySelector,
    RoundRobin,
    filter_version,
    from_options,
)
from trimicro.selector.cache import apply_event


def svc(node: str, version: str = "1", name: str = "greeter") -> Service:
    return Service(name, version, nodes=[Node(node, f"127.0.0.1:{1000 + len(node)}")])


@attrs.define(eq=False)
class BreakableWatcher:
    inner: Watcher
    scopes: set[trio.CancelScope]

    def __aiter__(self) -> BreakableWatcher:
        return self

    async def __anext__(self) -> Result:
        with trio.CancelScope() as scope:
            self.scopes.add(scope)
            try:
                return await self.inner.__anext__()
            finally:
                self.scopes.discard(scope)
        raise StopAsyncIteration  # broken by the test


@attrs.define(eq=False)
class FlakyRegistry:
    """A real MemoryRegistry that counts lookups, and can fail, hang, or break its watches."""

    inner: MemoryRegistry = attrs.field(factory=MemoryRegistry)
    name: str = "flaky"
    calls: int = 0
    watches: int = 0
    fail: bool = False
    hang: bool = False
    gate: trio.Event | None = None
    _scopes: set[trio.CancelScope] = attrs.field(factory=set)

    async def __aenter__(self) -> FlakyRegistry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def register(self, service: Service, *, ttl: float | None = None) -> None:
        await self.inner.register(service, ttl=ttl)

    async def deregister(self, service: Service) -> None:
        await self.inner.deregister(service)

    async def get_service(self, name: str) -> list[Service]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.hang:
            await trio.sleep_forever()
        if self.fail:
            raise RegistryError("registry is down")
        return await self.inner.get_service(name)

    async def list_services(self) -> list[Service]:
        return await self.inner.list_services()

    @asynccontextmanager
    async def watch(self, service: str | None = None) -> AsyncIterator[Watcher]:
        self.watches += 1
        if self.fail:
            raise RegistryError("registry is down")
        async with self.inner.watch(service) as watcher:
            yield BreakableWatcher(watcher, self._scopes)

    def break_watches(self) -> None:
        for scope in list(self._scopes):
            scope.cancel()


async def until(cond: Callable[[], object], timeout: float = 2.0) -> None:
    with trio.fail_after(timeout):
        while not cond():
            await trio.sleep(0.01)


def ids(selector: CachingSelector, service: str = "greeter") -> list[str]:
    return sorted(n.id for s in selector.cached(service) or [] for n in s.nodes)


async def test_cache_hit_and_ttl_expiry(autojump_clock: trio.testing.MockClock) -> None:
    reg = FlakyRegistry()
    await reg.register(svc("n1"))
    async with CachingSelector(reg, ttl=10) as sel:
        assert (await sel.select("greeter"))().id == "n1"
        await sel.select("greeter")
        await trio.sleep(9)
        await sel.select("greeter")
        assert reg.calls == 1
        await trio.sleep(2)
        await sel.select("greeter")
        assert reg.calls == 2


async def test_unknown_names_are_cached_but_bounded(autojump_clock: trio.testing.MockClock) -> None:
    """Random unknown names (a gateway under attack) cost one lookup each within the TTL, and at most
    ``max_misses`` of them stay cached; a service that registers after its miss is seen at once."""
    reg = FlakyRegistry()
    async with CachingSelector(reg, ttl=1000, max_misses=50) as sel:
        for rnd in range(2):
            for i in range(40):
                with pytest.raises(ServiceNotFound):
                    await sel.select(f"nobody-{i}")
            assert reg.calls == 40, rnd  # the second round is all cache hits
        for i in range(40, 500):
            with pytest.raises(ServiceNotFound):
                await sel.select(f"nobody-{i}")
        assert reg.calls == 500
        assert sum(sel.cached(f"nobody-{i}") is not None for i in range(500)) == 50
        # a cached miss is updated by the watch like any entry
        with pytest.raises(ServiceNotFound):
            await sel.select("greeter")
        await reg.register(svc("n1"))
        await until(lambda: ids(sel) == ["n1"])
        assert (await sel.select("greeter"))().id == "n1"
        # a known service never counts against the bound
        for i in range(500, 600):
            with pytest.raises(ServiceNotFound):
                await sel.select(f"nobody-{i}")
        assert ids(sel) == ["n1"]


async def test_watch_applies_create_update_delete(autojump_clock: trio.testing.MockClock) -> None:
    reg = FlakyRegistry()
    await reg.register(svc("n1"))
    async with CachingSelector(reg, ttl=1000) as sel:
        await sel.select("greeter")
        await reg.register(svc("n2"))
        await reg.register(svc("v2", version="2"))
        await until(lambda: ids(sel) == ["n1", "n2", "v2"])
        next_node = await sel.select("greeter", filters=[filter_version("2")])
        assert next_node().id == "v2"
        await reg.deregister(svc("n1"))
        await until(lambda: ids(sel) == ["n2", "v2"])
        await reg.deregister(svc("v2", version="2"))
        await until(lambda: [s.version for s in sel.cached("greeter") or []] == ["1"])
        await reg.register(svc("other-1", name="other"))  # never selected: not cached
        await trio.sleep(1)
        assert sel.cached("other") is None
        assert reg.calls == 1


async def test_stale_served_when_registry_fails(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    reg = FlakyRegistry()
    await reg.register(svc("n1"))
    async with CachingSelector(reg, ttl=10, retry_interval=3) as sel:
        await sel.select("greeter")
        reg.fail = True
        await trio.sleep(11)
        with caplog.at_level(logging.WARNING, logger="trimicro.selector"):
            assert (await sel.select("greeter"))().id == "n1"
        assert "serving stale" in caplog.text
        assert reg.calls == 2
        await sel.select("greeter")  # within retry_interval: no new lookup
        assert reg.calls == 2
        await trio.sleep(3)
        reg.fail = False
        await reg.register(svc("n2"))
        await sel.select("greeter")
        assert reg.calls == 3
        assert ids(sel) == ["n1", "n2"]


async def test_timeout_serves_stale_or_raises(autojump_clock: trio.testing.MockClock) -> None:
    reg = FlakyRegistry()
    await reg.register(svc("n1"))
    async with CachingSelector(reg, ttl=10, lookup_timeout=2) as sel:
        await sel.select("greeter")
        reg.hang = True
        await trio.sleep(11)
        assert (await sel.select("greeter"))().id == "n1"
        with pytest.raises(RegistryError, match="timed out"):
            await sel.select("unknown")


async def test_error_without_stale_and_not_found() -> None:
    reg = FlakyRegistry()
    async with CachingSelector(reg) as sel:
        with pytest.raises(ServiceNotFound):
            await sel.select("greeter")
        reg.fail = True
        with pytest.raises(RegistryError, match="down"):
            await sel.select("other")
    with pytest.raises(RegistryError, match="not open"):
        await sel.select("greeter")


async def test_concurrent_misses_share_one_lookup() -> None:
    reg = FlakyRegistry(gate=trio.Event())
    await reg.register(svc("n1"))
    results: list[str] = []
    async with CachingSelector(reg) as sel:

        async def pick() -> None:
            results.append((await sel.select("greeter"))().id)

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(pick)
            await trio.testing.wait_all_tasks_blocked()
            assert reg.gate is not None
            reg.gate.set()
    assert results == ["n1"] * 5
    assert reg.calls == 1


async def test_broken_watch_invalidates_and_rewatches(autojump_clock: trio.testing.MockClock) -> None:
    reg = FlakyRegistry()
    await reg.register(svc("n1"))
    async with CachingSelector(reg, ttl=1000) as sel:
        await sel.select("greeter")
        assert reg.watches == 1
        reg.break_watches()
        await until(lambda: reg.watches == 2)
        await sel.select("greeter")  # invalidated: asks the registry again
        assert reg.calls == 2
        await reg.register(svc("n2"))  # the new watch works
        await until(lambda: ids(sel) == ["n1", "n2"])


async def test_failing_watch_backs_off_and_lookups_still_work(autojump_clock: trio.testing.MockClock) -> None:
    reg = FlakyRegistry(fail=True)
    await reg.register(svc("n1"))
    async with CachingSelector(reg) as sel:  # opens even though the watch cannot start
        reg.fail = False
        assert (await sel.select("greeter"))().id == "n1"
        await until(lambda: reg.watches >= 2)
        await reg.register(svc("n2"))
        await until(lambda: ids(sel) == ["n1", "n2"])


async def test_failing_node_is_ejected_and_retries_avoid_it(autojump_clock: trio.testing.MockClock) -> None:
    """(Outlier ejection in detail: tests/selector/test_outlier.py.) A retry never goes back to the node
    just tried while another is left; consecutive transport errors eject a node for a while."""
    reg = FlakyRegistry()
    await reg.register(svc("n1"))
    await reg.register(svc("n2"))
    async with CachingSelector(reg, outlier=OutlierPolicy(consecutive_failures=2, ejection_time=5)) as sel:
        next_node = await sel.select("greeter")
        first = next_node()
        assert next_node().id != first.id  # the retry of this call goes elsewhere
        bad = next(s.nodes[0] for s in sel.cached("greeter") or [] if s.nodes[0].id == "n1")
        sel.mark("greeter", bad, TransportError("connection refused"))
        sel.mark("greeter", bad, TransportError("connection refused"))
        assert {(await sel.select("greeter"))().id for _ in range(50)} == {"n2"}
        await trio.sleep(5)
        assert "n1" in {(await sel.select("greeter"))().id for _ in range(50)}  # probed again
        sel.mark("greeter", bad, RuntimeError("handler error"))  # not a node failure: back in
        assert "n1" in {(await sel.select("greeter"))().id for _ in range(100)}


async def test_mark_feeds_p2c() -> None:
    reg = FlakyRegistry()
    await reg.register(svc("n1"))
    await reg.register(svc("n2"))
    p2c = P2C()
    async with CachingSelector(reg, strategy=p2c) as sel:
        next_node = await sel.select("greeter")
        node = next_node()
        assert p2c.score(node) == 1
        sel.mark("greeter", node, None)
        assert p2c.score(node) == 0


async def test_round_robin_rotates_across_selects() -> None:
    reg = FlakyRegistry()
    for n in ("n1", "n2", "n3"):
        await reg.register(svc(n))
    async with CachingSelector(reg, strategy="roundrobin") as sel:
        assert isinstance(sel.strategy, RoundRobin)
        picks = [(await sel.select("greeter"))().id for _ in range(6)]
    assert picks == ["n1", "n2", "n3", "n1", "n2", "n3"]


async def test_registry_selector() -> None:
    reg = FlakyRegistry()
    await reg.register(svc("n1"))
    async with RegistrySelector(reg) as sel:
        assert (await sel.select("greeter"))().id == "n1"
        await sel.select("greeter")
        assert reg.calls == 2
        with pytest.raises(ServiceNotFound):
            await sel.select("greeter", filters=[filter_version("9")])
        sel.mark("greeter", Node("n1", ""), None)


async def test_from_options_owns_its_registry() -> None:
    opts = Options(registry="memory", selector="p2c", selector_cache_ttl=5)
    sel = from_options(opts)
    assert isinstance(sel.strategy, P2C) and sel.ttl == 5 and sel.owns_registry
    assert isinstance(sel.registry, MemoryRegistry)
    await sel.registry.register(svc("opt-1", name="opt"))
    try:
        async with sel:
            assert (await sel.select("opt"))().id == "opt-1"
    finally:
        await sel.registry.deregister(svc("opt-1", name="opt"))
    assert Counter(
        type(from_options(Options(registry="memory", selector=s)).strategy).__name__
        for s in ("random", "round_robin")
    ) == Counter({"function": 1, "RoundRobin": 1})
    with pytest.raises(ValueError):
        from_options(Options(registry="memory", selector="fastest"))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["create", "update", "delete"]), st.sampled_from("abcd"), st.sampled_from("12")
        )
    )
)
def test_apply_event_matches_a_model(events: list[tuple[str, str, str]]) -> None:
    services: list[Service] = []
    model: set[tuple[str, str]] = set()  # (node id, version)
    for action, node, version in events:
        services = apply_event(services, Result(action, svc(node, version)))  # type: ignore[arg-type]
        if action == "delete":
            model.discard((node, version))
        else:
            model.add((node, version))
    assert all(s.nodes for s in services)  # no empty versions linger
    assert len({s.version for s in services}) == len(services)
    got = [(n.id, s.version) for s in services for n in s.nodes]
    assert len(got) == len(set(got)) and set(got) == model
