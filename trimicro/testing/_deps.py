"""Replace a handler's dependencies for a test (nameko's ``worker_factory``, made explicit).

A handler reaches its collaborators (a database, another service's client, a clock) through its
attributes. ``worker_factory(Greeter, db=fake_db, mailer=autospec)`` builds the handler and swaps
those attributes: a given object is used as is; :data:`autospec` makes a
:func:`unittest.mock.create_autospec` mock of what was there (or of the class-level annotation when
the constructor did not set it), so a test can assert on calls and a misspelt method or a wrong
signature fails instead of passing silently. Only attributes the handler has (or annotates) can be
replaced: a typo raises ``AttributeError`` rather than adding an attribute nothing reads.
"""

from __future__ import annotations

import typing
from typing import Any, TypeVar, cast
from unittest import mock

__all__ = ["autospec", "worker_factory"]

T = TypeVar("T")


class _Autospec:
    """The :data:`autospec` marker."""

    def __repr__(self) -> str:
        return "trimicro.testing.autospec"


#: Pass as a replacement to get an autospec'd mock of the attribute it replaces.
autospec: Any = _Autospec()


def worker_factory(handler: type[T] | T, /, *args: Any, **replacements: Any) -> T:
    """Return the handler with the named attributes replaced.

    ``handler`` is a class (instantiated with ``*args``) or an instance (changed in place and
    returned). For each ``name=value``: ``value`` replaces the attribute; ``autospec`` replaces it with
    an autospec'd mock (async methods become ``AsyncMock`` s).
    """
    if isinstance(handler, type):
        obj = cast(T, handler(*args))
    else:
        if args:
            raise TypeError("worker_factory: positional arguments are for building a class, not an instance")
        obj = handler
    try:
        hints = typing.get_type_hints(type(obj))
    except Exception:  # unresolvable forward references: fall back to the raw annotations
        hints = dict(getattr(type(obj), "__annotations__", {}))
    for name, value in replacements.items():
        missing = object()
        current = getattr(obj, name, missing)
        if current is missing and name not in hints:
            raise AttributeError(
                f"worker_factory: {type(obj).__name__} has no attribute or annotation {name!r} to replace"
            )
        if value is autospec:
            if current is not missing:
                value = mock.create_autospec(current)
            elif isinstance(hints[name], type) and hints[name] is not Any:
                value = mock.create_autospec(hints[name], instance=True)
            else:  # ``Any``, a union, a protocol alias: nothing to spec against
                value = mock.MagicMock(name=name)
        setattr(obj, name, value)
    return obj
