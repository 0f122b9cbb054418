"""Rate and concurrency limits as client wrappers, on trio's autojump clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trimicro.client import CallRequest
from trimicro.errors import MicroError
from trimicro.wrappers import TokenBucket, concurrency_limit, rate_limit


def test_token_bucket() -> None:
    b = TokenBucket(rate=2, burst=3)
    assert [b.take(0) for _ in range(4)] == [True, True, True, False]
    assert b.wait_time(0) == 0.5
    assert b.take(0.5) and not b.take(0.5)
    assert b.take(100) and b.tokens == 2  # capped at the burst


async def ok(req: CallRequest) -> float | None:
    return req.timeout


async def test_rate_limit_rejects_or_waits(autojump_clock: trio.testing.MockClock) -> None:
    call = rate_limit(10, burst=2)(ok)
    req = CallRequest("svc", "E.M", None, timeout=5)
    await call(req)
    await call(req)
    with pytest.raises(MicroError) as info:
        await call(req)
    assert info.value.code == 429 and "rate limit" in info.value.detail
    waiting = rate_limit(10, burst=1, max_wait=1)(ok)
    start = trio.current_time()
    await waiting(CallRequest("svc", "E.M", None, timeout=5))
    left = await waiting(CallRequest("svc", "E.M", None, timeout=5))
    assert trio.current_time() - start == pytest.approx(0.1)
    assert left == pytest.approx(4.9)  # the wait came off the call's timeout


async def test_concurrency_limit(autojump_clock: trio.testing.MockClock) -> None:
    release = trio.Event()
    running = 0
    peak = 0

    async def slow(req: CallRequest) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        return "done"

    call = concurrency_limit(2, max_wait=1)(slow)
    results: list[object] = []

    async def one() -> None:
        try:
            results.append(await call(CallRequest("svc", "E.M", None, timeout=5)))
        except MicroError as exc:
            results.append(exc.code)

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(one)
        await trio.sleep(2)  # the third waited 1 s and gave up
        assert results == [429]
        nursery.start_soon(one)  # waits for a slot...
        await trio.sleep(0.1)
        release.set()  # ...which frees up
    assert peak == 2 and sorted(map(str, results)) == ["429", "done", "done", "done"]
