from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any

import attrs
import pytest
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from hypothesis import given

from tests.codec._messages import everythings, full_everything
from tests.protos import greeter_pb2, kitchen_pb2
from trimicro.codec import Frame, GrpcJsonCodec, JsonCodec, get_codec
from trimicro.errors import CodecError

codec = JsonCodec()


def test_hello_round_trip_and_trailing_newline() -> None:
    data = codec.encode(greeter_pb2.HelloRequest(name="John"))
    assert data == b'{"name":"John"}\n'
    assert codec.decode(data, greeter_pb2.HelloRequest) == greeter_pb2.HelloRequest(name="John")


def test_escapes_like_go_json_encoder() -> None:
    data = codec.encode(greeter_pb2.HelloRequest(name="<b>&\u2028é"))
    assert data == b'{"name":"\\u003cb\\u003e\\u0026\\u2028\xc3\xa9"}\n'
    assert codec.decode(data, greeter_pb2.HelloRequest).name == "<b>&\u2028é"
    assert codec.encode({"k": "<"}) == b'{"k":"\\u003c"}\n'


def test_empty_message_is_empty_object() -> None:
    assert codec.encode(greeter_pb2.HelloRequest()) == b"{}\n"
    assert codec.encode(kitchen_pb2.Everything()) == b"{}\n"
    assert codec.decode(b"{}\n", greeter_pb2.HelloRequest) == greeter_pb2.HelloRequest()


def test_empty_body_decodes_to_empty_message_or_none() -> None:
    assert codec.decode(b"", greeter_pb2.HelloRequest) == greeter_pb2.HelloRequest()
    assert codec.decode(b"  \n", None) is None


def test_zero_values_with_presence_round_trip() -> None:
    msg = kitchen_pb2.Everything(
        maybe="", maybe_number=0, inner=kitchen_pb2.Everything.Inner(), choice_number=0
    )
    data = codec.encode(msg)
    assert json.loads(data) == {"maybe": "", "maybe_number": 0, "inner": {}, "choice_number": 0}
    back = codec.decode(data, kitchen_pb2.Everything)
    assert back == msg
    assert back.HasField("maybe") and back.HasField("inner") and back.WhichOneof("choice") == "choice_number"


def test_everything_round_trips_and_matches_json_format() -> None:
    msg = full_everything()
    data = codec.encode(msg)
    assert data.endswith(b"}\n")
    assert json.loads(data) == json_format.MessageToDict(msg, preserving_proto_field_name=True)
    assert codec.decode(data, kitchen_pb2.Everything) == msg


def test_accepts_camel_case_and_snake_case() -> None:
    msg = full_everything()
    camel = json_format.MessageToJson(msg).encode()
    assert b"anInt32" in camel
    assert codec.decode(camel, kitchen_pb2.Everything) == msg
    assert codec.decode(b'{"a_string":"x","anInt32":5}', kitchen_pb2.Everything) == kitchen_pb2.Everything(
        a_string="x", an_int32=5
    )


def test_ignores_unknown_fields_like_go() -> None:
    got = codec.decode(b'{"name":"x","extra":{"deep":[1,2]},"more":null}', greeter_pb2.HelloRequest)
    assert got == greeter_pb2.HelloRequest(name="x")


def test_int64_as_string_or_number() -> None:
    assert codec.decode(b'{"an_int64":"12"}', kitchen_pb2.Everything).an_int64 == 12
    assert codec.decode(b'{"an_int64":12}', kitchen_pb2.Everything).an_int64 == 12
    assert codec.decode(b'{"colour":2}', kitchen_pb2.Everything).colour == 2
    assert codec.decode(b'{"colour":"RED"}', kitchen_pb2.Everything).colour == 1
    # Unknown enum names are skipped like unknown fields (ignore_unknown_fields).
    assert codec.decode(b'{"colour":"PURPLE"}', kitchen_pb2.Everything).colour == 0


def test_well_known_types_use_their_json_mapping() -> None:
    ts = timestamp_pb2.Timestamp(seconds=1, nanos=500_000_000)
    assert codec.encode(ts) == b'"1970-01-01T00:00:01.500Z"\n'
    assert codec.decode(b'"1970-01-01T00:00:01.500Z"', timestamp_pb2.Timestamp) == ts
    s = struct_pb2.Struct()
    s.update({"a": 1, "b": [True, None]})
    assert json.loads(codec.encode(s)) == {"a": 1.0, "b": [True, None]}


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b'{"name":', "invalid JSON"),
        (b"\xff\xfe", "invalid JSON"),
        (b'{"name": NaN}', "invalid JSON"),
        (b'{"name":"a"} trailing', "invalid JSON"),
        (b"[1,2]", "expected an object"),
        (b'{"name":5}', "greeter.HelloRequest"),
        (b'{"an_int32":"nope"}', "kitchen.Everything"),
        (b'{"an_int32":99999999999}', "kitchen.Everything"),
        (b'{"colour":[1]}', "kitchen.Everything"),
        (b'{"choice_text":"a","choice_number":1}', "kitchen.Everything"),
        (b"[" * 100_000, "invalid JSON"),
    ],
)
def test_bad_bodies_are_codec_errors(body: bytes, match: str) -> None:
    into = (
        kitchen_pb2.Everything
        if b"an_" in body or b"colour" in body or b"choice" in body
        else greeter_pb2.HelloRequest
    )
    with pytest.raises(CodecError, match=match):
        codec.decode(body, into)


# --------------------------------------------------------------------------- plain Python values


class Mood(enum.Enum):
    HAPPY = "happy"
    SAD = "sad"


@attrs.frozen
class Address:
    street: str
    number: int = 0


@attrs.frozen
class Person:
    name: str
    age: int
    address: Address
    tags: tuple[str, ...] = ()
    nick: str | None = None
    mood: Mood = Mood.HAPPY
    scores: dict[str, float] = attrs.field(factory=dict)
    avatar: bytes = b""
    greeting: greeter_pb2.HelloRequest | None = None


@dataclasses.dataclass
class Node:
    value: int
    children: list[Node] = dataclasses.field(default_factory=list)


def test_attrs_round_trip_nested() -> None:
    p = Person(
        name="Ann",
        age=30,
        address=Address("Main", 5),
        tags=("a", "b"),
        scores={"x": 1.5, "y": 2},
        avatar=b"\x00\x01",
        greeting=greeter_pb2.HelloRequest(name="hi"),
        mood=Mood.SAD,
    )
    data = codec.encode(p)
    assert json.loads(data) == {
        "name": "Ann",
        "age": 30,
        "address": {"street": "Main", "number": 5},
        "tags": ["a", "b"],
        "nick": None,
        "mood": "sad",
        "scores": {"x": 1.5, "y": 2},
        "avatar": "AAE=",
        "greeting": {"name": "hi"},
    }
    assert codec.decode(data, Person) == p


def test_attrs_defaults_unknown_keys_and_camel_case() -> None:
    got = codec.decode(b'{"name":"A","age":1,"address":{"street":"S"},"other":1}', Person)
    assert got == Person(name="A", age=1, address=Address("S"))


def test_attrs_missing_required_field() -> None:
    with pytest.raises(CodecError, match="Person"):
        codec.decode(b'{"name":"A"}', Person)


def test_attrs_wrong_field_type() -> None:
    with pytest.raises(CodecError, match="int"):
        codec.decode(b'{"name":"A","age":"old","address":{"street":"S"}}', Person)
    with pytest.raises(CodecError, match="Mood"):
        codec.decode(b'{"name":"A","age":1,"address":{"street":"S"},"mood":"meh"}', Person)


def test_self_referential_dataclass() -> None:
    tree = Node(1, [Node(2), Node(3, [Node(4)])])
    data = codec.encode(tree)
    assert json.loads(data) == {
        "value": 1,
        "children": [{"value": 2, "children": []}, {"value": 3, "children": [{"value": 4, "children": []}]}],
    }
    assert codec.decode(data, Node) == tree


@pytest.mark.parametrize("value", [{"a": [1, 2.5, None, True, "x"]}, [1, "two"], "text", 3, 2.5, True, None])
def test_plain_values(value: Any) -> None:
    data = codec.encode(value)
    assert data.endswith(b"\n")
    assert codec.decode(data) == value
    assert codec.decode(data, None) == value


def test_into_containers_and_dict() -> None:
    assert codec.decode(b'{"a":1}', dict) == {"a": 1}
    assert codec.decode(b'[{"street":"x"}]', list[Address]) == [Address("x")]
    assert codec.decode(b'{"1":{"street":"x"}}', dict[int, Address]) == {1: Address("x")}
    with pytest.raises(CodecError, match="dict"):
        codec.decode(b"[1]", dict)


def test_raw_bytes_in_and_out() -> None:
    assert codec.decode(b'{"a":1}\n', bytes) == b'{"a":1}\n'
    assert codec.decode(b'{"a":1}', Frame) == Frame(b'{"a":1}')
    assert codec.encode(b'{"pre":"encoded"}') == b'{"pre":"encoded"}'


def test_unencodable_values() -> None:
    with pytest.raises(CodecError, match=r"object"):
        codec.encode(object())
    with pytest.raises(CodecError, match="nan"):
        codec.encode({"x": float("nan")})
    with pytest.raises(CodecError, match="key"):
        codec.encode({(1, 2): 3})
    with pytest.raises(CodecError):
        codec.encode("\ud800")  # lone surrogate: not UTF-8


def test_unsupported_into() -> None:
    with pytest.raises(CodecError, match="unsupported"):
        codec.decode(b"{}", complex)


def test_grpc_json_has_no_newline() -> None:
    assert get_codec("application/grpc+json") is not get_codec("application/json")
    assert isinstance(get_codec("application/grpc+json"), GrpcJsonCodec)
    assert get_codec("application/grpc+json").encode(greeter_pb2.HelloRequest(name="a")) == b'{"name":"a"}'


@given(everythings())
def test_random_messages_round_trip_and_match_json_format(msg: kitchen_pb2.Everything) -> None:
    data = codec.encode(msg)
    if abs(msg.a_float) < 3.4e38:  # json_format's own shortest-float32 can't round-trip near FLT_MAX
        assert json.loads(data) == json.loads(
            json_format.MessageToJson(msg, preserving_proto_field_name=True)
        )
    assert codec.decode(data, kitchen_pb2.Everything) == msg
    camel = json.dumps(
        {
            kitchen_pb2.Everything.DESCRIPTOR.fields_by_name[k].json_name: v
            for k, v in json.loads(data).items()
        }
    )
    assert codec.decode(camel.encode(), kitchen_pb2.Everything) == msg


def test_a_request_with_an_unknown_field_is_rejected_naming_it() -> None:
    """A misspelt field in a request would run the handler with an empty value: 400 instead."""
    with pytest.raises(CodecError, match="nam"):
        codec.decode_request(b'{"nam":"x"}', greeter_pb2.HelloRequest)
    with pytest.raises(CodecError, match="deep"):
        codec.decode_request(b'{"a_string":"x","inner":{"deep":1}}', kitchen_pb2.Everything)
    assert codec.decode_request(b'{"name":"x"}', greeter_pb2.HelloRequest) == (
        None, 0, greeter_pb2.HelloRequest(name="x"),
    )  # fmt: skip
    assert codec.decode_request(b"", greeter_pb2.HelloRequest)[2] == greeter_pb2.HelloRequest()
    # plain dict requests and responses keep skipping unknowns; the strictness can be turned off
    assert codec.decode_request(b'{"nam":"x"}', dict)[2] == {"nam": "x"}
    assert codec.decode_response(b'{"name":"x","extra":1}', greeter_pb2.HelloRequest).name == "x"
    lenient = JsonCodec(strict_requests=False)
    assert lenient.decode_request(b'{"nam":"x","name":"y"}', greeter_pb2.HelloRequest)[2].name == "y"
