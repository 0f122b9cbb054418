"""Fixtures for transport tests: a real nats-server on a free loopback port per test (nats transport)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from trimicro.testing.nats import NatsServerNotFound, NatsServerProcess, open_nats_server


@pytest.fixture
async def nats_server() -> AsyncIterator[NatsServerProcess]:
    try:
        async with open_nats_server() as server:
            yield server
    except NatsServerNotFound as exc:
        pytest.skip(str(exc))
