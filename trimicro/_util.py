"""Small shared helpers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collapse_excgroups"]


@contextmanager
def collapse_excgroups() -> Iterator[None]:
    """Re-raise a lone exception out of trio's (strict) exception groups.

    A nursery that wraps user code (``async with client.stream(...)``, ``open_service``) would
    otherwise turn ``raise MicroError`` in the block into an ``ExceptionGroup`` the caller can't
    ``except``. Groups with several real errors are left as they are.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        exc: BaseException = group
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        if exc is group:
            raise
        raise exc from exc.__cause__
