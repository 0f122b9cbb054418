"""Opening a NATS connection for the nats registry and transport: bounded retries, then a clear error.

:class:`~trimicro.broker._nats_client.NatsClient` tries each server once when entered and reconnects by
itself after that. A service starting while nats-server is still coming up (or a container that is a
moment late) should not fail on the first refused connection, nor hang forever when nothing is there:
:func:`open_nats` tries ``attempts`` rounds with exponential backoff and then raises the caller's error
type naming the servers and the last failure. Once connected, restarts of the server mid-run are the
client's business (it resubscribes and resends what it buffered).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio

from .broker._nats_client import NatsClient
from .errors import BrokerError

__all__ = ["DEFAULT_NATS_ADDRESS", "nats_servers", "open_nats"]

log = logging.getLogger("trimicro.nats")

DEFAULT_NATS_ADDRESS = "127.0.0.1:4222"  # Go's nats.DefaultURL, nats://127.0.0.1:4222


def nats_servers(addresses: Sequence[str] | None) -> list[str]:
    """The configured addresses, or Go's default server; ``nats://`` prefixes are accepted."""
    return [a for a in (addresses or ()) if a.strip()] or [DEFAULT_NATS_ADDRESS]


@asynccontextmanager
async def open_nats(
    servers: Sequence[str],
    *,
    error: type[Exception],
    attempts: int = 4,
    backoff: float = 0.1,
    name: str = "trimicro",
    **client_options: Any,
) -> AsyncIterator[NatsClient]:
    """A connected :class:`NatsClient`, closed on exit; ``error(...)`` after ``attempts`` failed rounds.

    Rounds are ``backoff``, ``2*backoff``, ... apart (0.1 + 0.2 + 0.4 s by default: under a second
    before a service reports that NATS is down).
    """
    last: BaseException | None = None
    async with AsyncExitStack() as stack:
        client: NatsClient | None = None
        for attempt in range(max(1, attempts)):
            if attempt:
                await trio.sleep(backoff * 2 ** (attempt - 1))
            try:
                client = await stack.enter_async_context(
                    NatsClient(list(servers), name=name, **client_options)
                )
                break
            except BrokerError as exc:
                last = exc
                log.debug("NATS connect attempt %d to %s failed: %s", attempt + 1, ", ".join(servers), exc)
        if client is None:
            where = ", ".join(servers)
            detail = str(last).removeprefix(f"cannot connect to NATS at {where}: ")
            raise error(f"cannot connect to NATS at {where} after {attempts} attempts: {detail}")
        yield client
