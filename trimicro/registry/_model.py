"""Registry value types in Go Micro's JSON shapes (see wire/mucp.md, "Registry records")."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs

__all__ = ["Endpoint", "Node", "Result", "Service", "Value"]


def _frozen_dict(value: Mapping[str, str] | None) -> dict[str, str]:
    return dict(value or {})


def _values(value: Iterable[Value]) -> tuple[Value, ...]:
    return tuple(value)


def _endpoints(value: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
    return tuple(value)


def _nodes(value: Iterable[Node]) -> tuple[Node, ...]:
    return tuple(value)


@attrs.frozen
class Value:
    """A field of a request/response type: Go Micro's ``registry.Value`` tree."""

    name: str
    type: str
    values: tuple[Value, ...] = attrs.field(default=(), converter=_values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "values": [v.to_dict() for v in self.values] if self.values else None,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Value | None:
        if not d:
            return None
        return cls(
            name=str(d.get("name", "")),
            type=str(d.get("type", "")),
            values=tuple(v for v in (cls.from_dict(x) for x in d.get("values") or ()) if v is not None),
        )


@attrs.frozen
class Endpoint:
    """An endpoint (``Handler.Method``) with request/response descriptions and metadata."""

    name: str
    request: Value | None = None
    response: Value | None = None
    metadata: dict[str, str] = attrs.field(factory=dict, converter=_frozen_dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "request": self.request.to_dict() if self.request else None,
            "response": self.response.to_dict() if self.response else None,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Endpoint:
        return cls(
            name=str(d.get("name", "")),
            request=Value.from_dict(d.get("request")),
            response=Value.from_dict(d.get("response")),
            metadata={str(k): str(v) for k, v in (d.get("metadata") or {}).items()},
        )


@attrs.frozen
class Node:
    """One running instance of a service: id ``<service>-<uuid>``, ``host:port``, metadata."""

    id: str
    address: str
    metadata: dict[str, str] = attrs.field(factory=dict, converter=_frozen_dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "address": self.address, "metadata": dict(self.metadata)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Node:
        address = str(d.get("address", ""))
        port = d.get("port")  # very old Go Micro records split host and port
        if port and ":" not in address:
            address = f"{address}:{port}"
        return cls(
            id=str(d.get("id", "")),
            address=address,
            metadata={str(k): str(v) for k, v in (d.get("metadata") or {}).items()},
        )


@attrs.frozen
class Service:
    """A service version with its endpoints and nodes, as stored in every registry."""

    name: str
    version: str = ""
    metadata: dict[str, str] = attrs.field(factory=dict, converter=_frozen_dict, hash=False)
    endpoints: tuple[Endpoint, ...] = attrs.field(default=(), converter=_endpoints)
    nodes: tuple[Node, ...] = attrs.field(default=(), converter=_nodes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "metadata": dict(self.metadata),
            "endpoints": [e.to_dict() for e in self.endpoints] if self.endpoints else None,
            "nodes": [n.to_dict() for n in self.nodes] if self.nodes else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Service:
        return cls(
            name=str(d.get("name", "")),
            version=str(d.get("version", "") or ""),
            metadata={str(k): str(v) for k, v in (d.get("metadata") or {}).items()},
            endpoints=tuple(Endpoint.from_dict(e) for e in d.get("endpoints") or ()),
            nodes=tuple(Node.from_dict(n) for n in d.get("nodes") or ()),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Service:
        return cls.from_dict(json.loads(text))


@attrs.frozen
class Result:
    """A watch event: ``action`` is create, update or delete; ``service`` holds only the changed node."""

    action: Literal["create", "update", "delete"]
    service: Service
