"""Sans-IO parts of the http broker: Go Micro's envelope, registry records, request routing, targets.

Pure functions (no I/O), so they are tested and fuzzed directly; :mod:`trimicro.broker.http` moves
bytes and calls them. What Go Micro v5 does (``broker/http.go``, docs/go-micro-facts.md section 4):

- a subscription registers service ``micro.http.broker`` (older releases: ``go.micro.http.broker``),
  version = the queue name or ``ff.http.broadcast``, one node ``<topic>-<uuid>`` at the broker's
  address with metadata ``broker=http``, ``topic=<topic>``, ``secure=false``;
- a publisher keeps nodes with ``broker=http`` and a matching ``topic``; a broadcast version gets
  every node, a queue version one random node;
- it POSTs ``/?id=<node id>`` (older: ``/_sub``) with ``{"Header": {...}, "Body": "<base64>"}``; the
  subscriber dispatches to its subscription with that id and answers 200 with an empty body (even if
  the handler failed), 405 for other methods, 500 for an unreadable envelope or a missing topic.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import parse_qs, quote, urlsplit

import attrs

from .._metadata import MICRO_TOPIC
from ..errors import CodecError
from ..registry import Node, Service
from ._base import BrokerMessage
from ._envelope import decode_envelope, encode_envelope

__all__ = [
    "BROADCAST",
    "LEGACY_PATH",
    "LEGACY_SERVICE",
    "PATH",
    "SERVICE",
    "Accepted",
    "Rejected",
    "Target",
    "backoff",
    "broker_record",
    "decode_envelope",
    "encode_envelope",
    "error_body",
    "route_request",
    "select_targets",
    "target_path",
]

SERVICE = "micro.http.broker"
LEGACY_SERVICE = "go.micro.http.broker"
BROADCAST = "ff.http.broadcast"
PATH = "/"
LEGACY_PATH = "/_sub"
_TOPIC_LOWER = MICRO_TOPIC.lower()
BROKER_ID = "go.micro.broker"


def topic_of(header: dict[str, str]) -> str:
    """The ``Micro-Topic`` header (exact key first, as Go; then any case)."""
    topic = header.get(MICRO_TOPIC)
    if topic is None:
        for key, value in header.items():
            if key.lower() == _TOPIC_LOWER:
                return value
        return ""
    return topic


def error_body(code: int, status: str, detail: str) -> bytes:
    """Go Micro's error JSON, which Go's broker writes as the body of its non-200 replies."""
    return json.dumps(
        {"id": BROKER_ID, "code": code, "detail": detail, "status": status}, separators=(",", ":")
    ).encode()


@attrs.frozen
class Accepted:
    """A well-formed delivery: hand ``message`` to the subscriptions of ``topic`` with ``node_id``
    (``None``: an id-less legacy request, every local subscription of the topic)."""

    topic: str
    node_id: str | None
    message: BrokerMessage


@attrs.frozen
class Rejected:
    """Answer ``status`` with ``body`` (Go's error JSON)."""

    status: int
    body: bytes


def route_request(method: str, target: str, body: bytes) -> Accepted | Rejected:
    """Decide what one inbound HTTP request means (the whole of the broker's server logic)."""
    if method != "POST":
        return Rejected(405, error_body(400, "Bad Request", "Method not allowed"))
    try:
        parts = urlsplit(target)
    except ValueError:
        return Rejected(400, error_body(400, "Bad Request", "malformed request target"))
    if parts.path not in (PATH, LEGACY_PATH):
        return Rejected(404, error_body(404, "Not Found", f"no broker endpoint at {parts.path!r}"))
    try:
        message = decode_envelope(body)
    except CodecError as exc:
        return Rejected(500, error_body(500, "Internal Server Error", f"Error parsing request body: {exc}"))
    topic = topic_of(message.header)
    if not topic:
        return Rejected(500, error_body(500, "Internal Server Error", "Topic not found"))
    ids = parse_qs(parts.query).get("id")
    return Accepted(topic, ids[0] if ids else None, message)


def target_path(node_id: str, *, legacy: bool = False) -> str:
    """The request target for a node: ``/?id=<node id>`` (``/_sub?id=`` for old subscribers)."""
    return f"{LEGACY_PATH if legacy else PATH}?id={quote(node_id, safe='')}"


def broker_record(
    topic: str, node_id: str, address: str, queue: str | None, *, secure: bool = False
) -> Service:
    """The registry record of one subscription, in Go Micro's shape."""
    metadata = {"broker": "http", "topic": topic, "secure": "true" if secure else "false"}
    return Service(
        name=SERVICE,
        version=queue or BROADCAST,
        metadata={},
        endpoints=(),
        nodes=(Node(node_id, address, metadata),),
    )


@attrs.frozen
class Target:
    """Where one copy of a message goes: ``nodes`` are the candidates in the order to try them (one
    for a broadcast subscriber; every member of a queue group, shuffled, for a queue)."""

    group: str  # the registry version: a queue name or BROADCAST
    nodes: tuple[Node, ...]
    legacy: bool = False


def select_targets(
    services: Iterable[Service], topic: str, *, shuffle: object = None, legacy: bool = False
) -> list[Target]:
    """The deliveries one message to ``topic`` needs: one per broadcast node, one per queue group.

    ``shuffle`` is a ``random.Random``-like object (``shuffle(list)``) ordering queue members; None
    keeps registry order (for tests).
    """
    groups: dict[str, dict[str, Node]] = {}
    for service in services:
        for node in service.nodes:
            if node.metadata.get("broker") != "http" or node.metadata.get("topic") != topic:
                continue
            groups.setdefault(service.version, {})[node.id] = node
    out: list[Target] = []
    for group, members in groups.items():
        nodes = list(members.values())
        if group == BROADCAST:
            out.extend(Target(group, (n,), legacy) for n in nodes)
            continue
        if shuffle is not None:
            shuffle.shuffle(nodes)  # type: ignore[attr-defined]
        out.append(Target(group, tuple(nodes), legacy))
    return out


def backoff(attempt: int, base: float, cap: float) -> float:
    """Delay before retry number ``attempt`` (1, 2, ...): ``base * 2**(attempt-1)`` capped at ``cap``."""
    return float(min(base * 2.0 ** max(attempt - 1, 0), cap))
