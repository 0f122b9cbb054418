"""The Selector contract: pick a node of a service for each call (Go Micro's ``selector.Selector``).

``await selector.select(service, filters=...)`` returns a :class:`Next`: calling it yields a node per
attempt (the client calls it afresh for every retry). ``selector.mark(service, node, error)`` reports
the outcome of a call so smarter strategies can learn. A selector is an async context manager (the
caching selector runs registry watches in a nursery it owns).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Protocol

from ..registry import Node, Service

__all__ = ["Filter", "Next", "Selector", "Strategy"]

#: A filter narrows the list of service versions (with their nodes) before a strategy picks one.
Filter = Callable[[list[Service]], list[Service]]
#: Returns the next node to try; raises ServiceNotFound when there is none.
Next = Callable[[], Node]
#: A strategy builds a Next from the filtered services.
Strategy = Callable[[list[Service]], Next]


class Selector(Protocol):
    name: str

    async def __aenter__(self) -> Selector: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None: ...

    async def select(
        self, service: str, *, filters: Sequence[Filter] = (), strategy: Strategy | None = None
    ) -> Next: ...

    def mark(self, service: str, node: Node, error: BaseException | None) -> None: ...
