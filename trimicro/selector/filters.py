"""Selector filters (Go Micro's ``selector.Filter*``): narrow service versions/nodes before a strategy.

Each returns a :data:`~trimicro.selector.Filter`; pass several to ``select(filters=[...])`` and they
apply in order. A filter never mutates its input; versions left without nodes are dropped.
"""

from __future__ import annotations

import attrs

from ..registry import Service
from ._base import Filter

__all__ = ["filter_endpoint", "filter_label", "filter_version"]


def filter_version(*versions: str) -> Filter:
    """Keep only the given versions of the service."""
    wanted = frozenset(versions)

    def apply(services: list[Service]) -> list[Service]:
        return [s for s in services if s.version in wanted]

    return apply


def filter_label(key: str, value: str) -> Filter:
    """Keep only nodes whose metadata has ``key`` set to ``value``."""

    def apply(services: list[Service]) -> list[Service]:
        out: list[Service] = []
        for s in services:
            nodes = tuple(n for n in s.nodes if n.metadata.get(key) == value)
            if nodes:
                out.append(attrs.evolve(s, nodes=nodes))
        return out

    return apply


def filter_endpoint(name: str) -> Filter:
    """Keep only versions that serve endpoint ``name`` (e.g. ``"Greeter.Hello"``)."""

    def apply(services: list[Service]) -> list[Service]:
        return [s for s in services if any(e.name == name for e in s.endpoints)]

    return apply
