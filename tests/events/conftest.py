"""Fixtures for events tests: a real ``nats-server -js`` (private store) on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from trimicro.testing.nats import NatsServerNotFound, NatsServerProcess, open_nats_server


@pytest.fixture
async def jetstream() -> AsyncIterator[NatsServerProcess]:
    try:
        async with open_nats_server(jetstream=True) as server:
            yield server
    except NatsServerNotFound as exc:
        pytest.skip(str(exc))
