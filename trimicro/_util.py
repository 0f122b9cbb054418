"""Small shared helpers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

__all__ = ["collapse_excgroups"]

_ANY: Final = object()


@contextmanager
def collapse_excgroups(*, only: object = _ANY) -> Iterator[None]:
    """Re-raise a lone exception out of trio's (strict) exception groups.

    A nursery that wraps user code (``async with client.stream(...)``, ``open_service``) would
    otherwise turn ``raise MicroError`` in the block into an ``ExceptionGroup`` the caller can't
    ``except``. Groups with several real errors are left as they are.

    ``only``: unwrap just that exception (or nothing, for ``None``). Resources that exit a nursery
    opened in ``__aenter__`` pass the body's own exception (``exc[1]``), so ``async with resource:``
    is transparent to the body's errors while a crash of a background task stays grouped.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        exc: BaseException = group
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1 and exc is not only:
            exc = exc.exceptions[0]
        if exc is group or (only is not _ANY and exc is not only):
            raise
        raise exc from exc.__cause__
