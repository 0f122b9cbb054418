"""Named plugins per axis, selected by option, ``--flag`` or ``MICRO_*`` env; one typed table per kind.

A name resolves, in order, to: a factory registered in code (:func:`register_plugin`), a built-in, or
an installed package's entry point in the kind's group (``trimicro.registry``, ``trimicro.selector``,
``trimicro.transport``, ``trimicro.broker``; codecs are in ``trimicro.codec``, see codec/_registry.py).
So ``pip install trimicro-registry-file`` makes ``--registry file`` work with no code change.

Why the built-ins stay in this table instead of being trimicro's own entry points: entry points are
install metadata, written when the package is installed. A source checkout on ``PYTHONPATH``, or an
editable install made before a plugin was added, would not see a new built-in until reinstalled;
the table is read from the code that is running. Entry points are for what is not in trimicro.

Each entry is a factory ``(Options) -> instance`` or a lazy ``"module:function"`` string, so a plugin's
module (and its dependencies) load only when it is picked. Entry points are read when a name is not
in the table, never at import.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from .errors import UnknownPlugin

if TYPE_CHECKING:
    from .broker import Broker
    from .config import Options
    from .registry import Registry
    from .selector import Selector
    from .transport import Transport

__all__ = [
    "BROKERS",
    "REGISTRIES",
    "SELECTORS",
    "TRANSPORTS",
    "Factory",
    "Kind",
    "PluginTable",
    "create",
    "plugin_names",
    "register_plugin",
    "table",
]

T = TypeVar("T")

#: What a plugin is: a function from the options to a (not yet entered) instance.
Factory = Callable[["Options"], T]

Kind = Literal["registry", "selector", "transport", "broker"]


class PluginTable(Generic[T]):
    """The plugins of one kind: name -> factory, plus the installed entry points of ``group``."""

    def __init__(self, kind: str, builtins: dict[str, Factory[T] | str]) -> None:
        self.kind = kind
        self.group = f"trimicro.{kind}"
        self._table: dict[str, Factory[T] | str] = dict(builtins)

    def register(self, name: str, factory: Factory[T] | str) -> None:
        """Add or replace ``name``: a factory, or ``"module:function"`` imported when first picked."""
        self._table[name] = factory

    def _entry_points(self) -> dict[str, importlib.metadata.EntryPoint]:
        return {ep.name: ep for ep in importlib.metadata.entry_points(group=self.group)}

    def names(self) -> list[str]:
        """Every name that resolves: registered, built in, or installed as an entry point."""
        return sorted(set(self._table) | set(self._entry_points()))

    def factory(self, name: str) -> Factory[T]:
        """The factory for ``name``; :class:`~trimicro.errors.UnknownPlugin` (a ValueError) lists the rest."""
        found: Any = self._table.get(name)
        if found is None:
            ep = self._entry_points().get(name)
            if ep is None:
                raise UnknownPlugin(f"unknown {self.kind} {name!r}; installed: {', '.join(self.names())}")
            found = ep.load()
        elif isinstance(found, str):
            module, _, attr = found.partition(":")
            found = getattr(importlib.import_module(module), attr)
        if not callable(found):
            raise TypeError(
                f"{self.kind} plugin {name!r} is {found!r}, not a factory (Options) -> {self.kind}"
            )
        factory: Factory[T] = found
        return factory

    def create(self, name: str, options: Options) -> T:
        """Instantiate plugin ``name`` from ``options``."""
        return self.factory(name)(options)


REGISTRIES: PluginTable[Registry] = PluginTable(
    "registry",
    {
        "memory": "trimicro.registry.memory:from_options",
        "mdns": "trimicro.registry.mdns:from_options",
        "etcd": "trimicro.registry.etcd:from_options",
        "zookeeper": "trimicro.registry.zookeeper:from_options",
        "nats": "trimicro.registry.nats:from_options",
        "gossip": "trimicro.registry.gossip:from_options",
    },
)
SELECTORS: PluginTable[Selector] = PluginTable(
    "selector",
    {
        "random": "trimicro.selector.cache:from_options",
        "roundrobin": "trimicro.selector.cache:from_options",
        "round_robin": "trimicro.selector.cache:from_options",
        "p2c": "trimicro.selector.cache:from_options",
    },
)
BROKERS: PluginTable[Broker] = PluginTable(
    "broker",
    {
        "http": "trimicro.broker.http:from_options",
        "kafka": "trimicro.broker.kafka:from_options",
        "memory": "trimicro.broker.memory:from_options",
        "nats": "trimicro.broker.nats:from_options",
    },
)
TRANSPORTS: PluginTable[Transport] = PluginTable(
    "transport",
    {
        "http": "trimicro.transport.http:from_options",
        "mucp": "trimicro.transport.http:from_options",
        "grpc": "trimicro.transport.grpc:from_options",
        "memory": "trimicro.transport.memory:from_options",
        "nats": "trimicro.transport.nats:from_options",
    },
)

_TABLES: dict[str, PluginTable[Any]] = {t.kind: t for t in (REGISTRIES, SELECTORS, BROKERS, TRANSPORTS)}


@overload
def table(kind: Literal["registry"]) -> PluginTable[Registry]: ...
@overload
def table(kind: Literal["selector"]) -> PluginTable[Selector]: ...
@overload
def table(kind: Literal["transport"]) -> PluginTable[Transport]: ...
@overload
def table(kind: Literal["broker"]) -> PluginTable[Broker]: ...
def table(kind: str) -> PluginTable[Any]:
    """The table of ``kind``; ValueError for a kind that is not one."""
    return _table(kind)


def _table(kind: str) -> PluginTable[Any]:
    try:
        return _TABLES[kind]
    except KeyError:
        raise ValueError(f"unknown plugin kind {kind!r}; one of {', '.join(sorted(_TABLES))}") from None


@overload
def register_plugin(kind: Literal["registry"], name: str, factory: Factory[Registry] | str) -> None: ...
@overload
def register_plugin(kind: Literal["selector"], name: str, factory: Factory[Selector] | str) -> None: ...
@overload
def register_plugin(kind: Literal["transport"], name: str, factory: Factory[Transport] | str) -> None: ...
@overload
def register_plugin(kind: Literal["broker"], name: str, factory: Factory[Broker] | str) -> None: ...
def register_plugin(kind: str, name: str, factory: Factory[Any] | str) -> None:
    """Add or replace plugin ``name`` of ``kind`` (registry, selector, transport, broker) in code.

    For a plugin shipped as a package, declare an entry point instead (docs/plugins.md).
    """
    _table(kind).register(name, factory)


def plugin_names(kind: Kind) -> list[str]:
    return _table(kind).names()


@overload
def create(kind: Literal["registry"], name: str, options: Options) -> Registry: ...
@overload
def create(kind: Literal["selector"], name: str, options: Options) -> Selector: ...
@overload
def create(kind: Literal["transport"], name: str, options: Options) -> Transport: ...
@overload
def create(kind: Literal["broker"], name: str, options: Options) -> Broker: ...
def create(kind: str, name: str, options: Options) -> object:
    """Instantiate plugin ``name`` of ``kind`` from ``options``; UnknownPlugin (a ValueError) names the choices."""
    return _table(kind).create(name, options)
