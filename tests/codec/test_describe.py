from __future__ import annotations

import dataclasses
from typing import Any

import attrs

from tests.protos import greeter_pb2, kitchen_pb2
from trimicro.codec import describe
from trimicro.registry import Value


def test_hello_request_shape_matches_go_micro() -> None:
    assert describe(greeter_pb2.HelloRequest) == Value(
        name="HelloRequest", type="HelloRequest", values=(Value(name="name", type="string"),)
    )
    assert describe(greeter_pb2.HelloRequest).to_dict() == {  # type: ignore[union-attr]
        "name": "HelloRequest",
        "type": "HelloRequest",
        "values": [{"name": "name", "type": "string", "values": None}],
    }


def test_kitchen_field_types_use_go_names() -> None:
    v = describe(kitchen_pb2.Everything)
    assert v is not None and v.name == "Everything"
    types = {f.name: f.type for f in v.values}
    assert types["an_int32"] == "int32"
    assert types["a_sint64"] == "int64"
    assert types["a_fixed32"] == "uint32"
    assert types["a_float"] == "float32"
    assert types["a_double"] == "float64"
    assert types["some_bytes"] == "[]uint8"
    assert types["colour"] == "Everything_Colour"
    assert types["inner"] == "Everything_Inner"
    assert types["tags"] == "[]string"
    assert types["inners"] == "[]Everything_Inner"
    assert types["counts"] == "map[string]int32"
    assert types["named"] == "map[string]Everything_Inner"
    assert types["maybe"] == "string"
    assert {"choice_text", "choice_number", "choice_inner"} <= types.keys()
    inner = next(f for f in v.values if f.name == "inner")
    assert inner.values == (Value(name="label", type="string"), Value(name="count", type="int64"))
    # Depth limit as extractor.go: the third level has no values.
    choice_inner = next(f for f in v.values if f.name == "choice_inner")
    assert [x.values for x in choice_inner.values] == [(), ()]


def test_self_referential_message_terminates() -> None:
    v = describe(kitchen_pb2.Tree)
    assert v == Value(
        name="Tree",
        type="Tree",
        values=(Value(name="name", type="string"), Value(name="children", type="[]Tree")),
    )


@attrs.frozen
class Point:
    x: float
    y: float


@attrs.frozen
class Shape:
    name: str
    points: list[Point]
    origin: Point
    tags: dict[str, int] | None = None
    proto: greeter_pb2.HelloRequest | None = None


@dataclasses.dataclass
class Loop:
    value: int
    next: Loop | None = None


def test_attrs_classes() -> None:
    assert describe(Shape) == Value(
        name="Shape",
        type="Shape",
        values=(
            Value(name="name", type="string"),
            Value(name="points", type="[]Point"),
            Value(name="origin", type="Point", values=(Value("x", "float64"), Value("y", "float64"))),
            Value(name="tags", type="map[string]int64"),
            Value(name="proto", type="HelloRequest", values=(Value("name", "string"),)),
        ),
    )


def test_self_referential_dataclass_terminates() -> None:
    v = describe(Loop)
    assert v is not None
    assert v.values[1] == Value(
        name="next", type="Loop", values=(Value("value", "int64"), Value("next", "Loop"))
    )


def test_plain_types() -> None:
    assert describe(None) is None
    assert describe(dict) == Value(name="dict", type="map[string]interface {}")
    assert describe(bytes) == Value(name="bytes", type="[]uint8")
    assert describe(Any) is not None and describe(Any).type == "interface {}"  # type: ignore[union-attr]
    assert describe(list[int]) == Value(name="[]int64", type="[]int64")
