"""One lifecycle for resources that own a nursery (brokers, registries, selectors, clients).

A resource that runs background tasks for as long as it is open subclasses :class:`NurseryOwner` and
writes its whole life as one ``@asynccontextmanager`` method, ``_lifespan``: open what it needs, open
*one* ``async with trio.open_nursery() as nursery:``, start its tasks there, ``yield``, and tidy up
after the ``yield`` (or in ``finally``). Nothing calls a nursery's ``__aenter__`` by hand, so the nursery
is always closed by the ``async with`` that opened it, in the task that opened it.

``async with resource:`` then enters that lifespan. Entering is re-entrant: each task keeps its own
stack of open lifespans, and ``__aexit__`` closes the innermost one *of the task leaving*, so one
resource shared by several tasks (the memory broker under several services, each session owning its
own deliveries) can be left in any order -- a nursery must be exited by the task that entered it. Errors raised by the body of ``async with resource:`` come out
unwrapped from the nursery's exception group, so a caller can ``except`` them; a crash of a
background task stays grouped.

Why a base class and not ``@asynccontextmanager`` functions: the resources are also values the rest
of the framework holds (``client.broker``, ``service.registry``) and are entered by whoever owns them;
``async with broker:`` on the object is Go Micro's ``Connect``/``Disconnect`` pair made structured.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Self

import attrs
import trio

from ._util import collapse_excgroups

__all__ = ["NurseryOwner"]


@attrs.define(eq=False)
class NurseryOwner:
    """Base for ``async with`` resources whose life is one ``_lifespan`` context manager."""

    # entering task -> its open lifespans, innermost last
    _lifespans: dict[trio.lowlevel.Task, list[AbstractAsyncContextManager[None]]] = attrs.field(
        factory=dict, init=False, repr=False, alias="_lifespans"
    )

    def _lifespan(self) -> AbstractAsyncContextManager[None]:
        """Override with an ``@contextlib.asynccontextmanager`` method holding one nursery."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        lifespan = self._lifespan()
        await lifespan.__aenter__()
        self._lifespans.setdefault(trio.lowlevel.current_task(), []).append(lifespan)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task = trio.lowlevel.current_task()
        stack = self._lifespans[task]
        lifespan = stack.pop()
        if not stack:
            del self._lifespans[task]
        with collapse_excgroups(only=exc):
            return await lifespan.__aexit__(exc_type, exc, tb)

    @property
    def is_open(self) -> bool:
        """True between a successful ``__aenter__`` and the matching ``__aexit__`` (of any task)."""
        return bool(self._lifespans)
