"""Filters narrow versions and nodes without mutating their input."""

from __future__ import annotations

from trimicro.registry import Endpoint, Node, Service
from trimicro.selector import filter_endpoint, filter_label, filter_version

V1 = Service(
    "greeter",
    "1",
    endpoints=[Endpoint("Greeter.Hello")],
    nodes=[Node("a", "127.0.0.1:1", {"zone": "x"}), Node("b", "127.0.0.1:2", {"zone": "y"})],
)
V2 = Service(
    "greeter",
    "2",
    endpoints=[Endpoint("Greeter.Hello"), Endpoint("Greeter.Chat")],
    nodes=[Node("c", "127.0.0.1:3", {"zone": "y"})],
)


def test_filter_version() -> None:
    assert filter_version("2")([V1, V2]) == [V2]
    assert filter_version("1", "2")([V1, V2]) == [V1, V2]
    assert filter_version("3")([V1, V2]) == []


def test_filter_label_keeps_matching_nodes_and_drops_empty_versions() -> None:
    got = filter_label("zone", "x")([V1, V2])
    assert [(s.version, [n.id for n in s.nodes]) for s in got] == [("1", ["a"])]
    got = filter_label("zone", "y")([V1, V2])
    assert [(s.version, [n.id for n in s.nodes]) for s in got] == [("1", ["b"]), ("2", ["c"])]
    assert filter_label("zone", "z")([V1, V2]) == []
    assert len(V1.nodes) == 2  # input untouched


def test_filter_endpoint() -> None:
    assert filter_endpoint("Greeter.Chat")([V1, V2]) == [V2]
    assert filter_endpoint("Greeter.Hello")([V1, V2]) == [V1, V2]
    assert filter_endpoint("Nope.Nope")([V1, V2]) == []
