"""Named plugins per axis, selected by option, ``--flag`` or ``MICRO_*`` env.

Each entry is a factory ``(Options) -> instance`` or a lazy ``"module:function"`` string, so optional
dependencies load only when their plugin is picked. Third parties call :func:`register_plugin`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Options

__all__ = ["create", "plugin_names", "register_plugin"]

Factory = Callable[["Options"], Any]

_PLUGINS: dict[str, dict[str, Factory | str]] = {
    "registry": {
        "memory": "trimicro.registry.memory:from_options",
        "mdns": "trimicro.registry.mdns:from_options",
        "etcd": "trimicro.registry.etcd:from_options",
        "zookeeper": "trimicro.registry.zookeeper:from_options",
        "nats": "trimicro.registry.nats:from_options",
    },
    "selector": {
        "random": "trimicro.selector.cache:from_options",
        "roundrobin": "trimicro.selector.cache:from_options",
        "round_robin": "trimicro.selector.cache:from_options",
        "p2c": "trimicro.selector.cache:from_options",
    },
    "broker": {
        "http": "trimicro.broker.http:from_options",
        "memory": "trimicro.broker.memory:from_options",
        "nats": "trimicro.broker.nats:from_options",
    },
    "transport": {
        "http": "trimicro.transport.http:from_options",
        "mucp": "trimicro.transport.http:from_options",
        "grpc": "trimicro.transport.grpc:from_options",
        "memory": "trimicro.transport.memory:from_options",
        "nats": "trimicro.transport.nats:from_options",
    },
}


def register_plugin(kind: str, name: str, factory: Factory | str) -> None:
    """Add or replace plugin ``name`` of ``kind`` (registry, selector, broker, transport)."""
    _PLUGINS.setdefault(kind, {})[name] = factory


def plugin_names(kind: str) -> list[str]:
    return sorted(_PLUGINS.get(kind, {}))


def create(kind: str, name: str, options: Options) -> Any:
    """Instantiate plugin ``name`` of ``kind`` from ``options``; ValueError names the choices."""
    try:
        factory = _PLUGINS[kind][name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {plugin_names(kind)}") from None
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(options)
