"""grpc.health.v1.Health/Watch as a state machine: the status now, each change, the end on drain."""

from __future__ import annotations

import math

import pytest
import trio

from trimicro.debug._grpc_health import (
    NOT_SERVING,
    SERVICE_UNKNOWN,
    SERVING,
    GrpcHealth,
    encode_response,
)
from trimicro.errors import MicroError


def _request(service: str) -> bytes:
    raw = service.encode()
    return b"\x0a" + bytes([len(raw)]) + raw if raw else b""


class Watcher:
    """Runs one Watch, collecting what it sends; the request is given once."""

    def __init__(self, health: GrpcHealth, service: str) -> None:
        self.health = health
        self.request: bytes | None = _request(service)
        self.send, self.out = trio.open_memory_channel[bytes](math.inf)
        self.error: MicroError | None = None

    async def _receive(self) -> bytes | None:
        request, self.request = self.request, None
        return request

    async def run(self) -> None:
        try:
            await self.health.watch(self._receive, self.send.send)
        except MicroError as err:
            self.error = err
        finally:
            self.send.close()

    async def next(self) -> bytes:
        with trio.fail_after(5):
            return await self.out.receive()


async def test_watch_sends_now_then_each_change_only_once(autojump_clock: trio.abc.Clock) -> None:
    health = GrpcHealth()
    w = Watcher(health, "")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(w.run)
        assert await w.next() == encode_response(SERVING)
        health.set_status("", SERVING)  # no change: nothing sent
        health.set_status("", NOT_SERVING)
        assert await w.next() == encode_response(NOT_SERVING)
        health.set_status("", SERVING)
        assert await w.next() == encode_response(SERVING)
        nursery.cancel_scope.cancel()


async def test_watch_of_unknown_service_says_so_and_sees_it_appear(autojump_clock: trio.abc.Clock) -> None:
    health = GrpcHealth()
    w = Watcher(health, "later")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(w.run)
        assert await w.next() == encode_response(SERVICE_UNKNOWN)
        health.set_status("other", NOT_SERVING)  # another service: nothing for this watcher
        health.set_status("later", SERVING)
        assert await w.next() == encode_response(SERVING)
        nursery.cancel_scope.cancel()


async def test_shutdown_sends_the_last_status_and_ends_every_watch(autojump_clock: trio.abc.Clock) -> None:
    health = GrpcHealth()
    watchers = [Watcher(health, ""), Watcher(health, "")]
    async with trio.open_nursery() as nursery:
        for w in watchers:
            nursery.start_soon(w.run)
        for w in watchers:
            assert await w.next() == encode_response(SERVING)
        health.set_status("", NOT_SERVING)
        health.shutdown()
    for w in watchers:
        assert await w.next() == encode_response(NOT_SERVING)
        assert w.error is not None and w.error.code == 503
        with pytest.raises(trio.EndOfChannel):
            await w.out.receive()


async def test_watch_after_shutdown_ends_at_once(autojump_clock: trio.abc.Clock) -> None:
    health = GrpcHealth()
    health.shutdown()
    w = Watcher(health, "")
    with trio.fail_after(1):
        await w.run()
    assert await w.next() == encode_response(SERVING)
    assert w.error is not None and w.error.code == 503


async def test_watch_without_a_request_or_with_garbage_is_bad_request() -> None:
    health = GrpcHealth()

    async def nothing() -> bytes | None:
        return None

    async def garbage() -> bytes | None:
        return b"\x0a\x09abc"  # a length past the end

    async def send(_: bytes) -> None:
        raise AssertionError("nothing to send")

    for receive in (nothing, garbage):
        with pytest.raises(MicroError) as info:
            await health.watch(receive, send)
        assert info.value.code == 400
