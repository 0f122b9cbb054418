"""The http broker's sans-IO parts: envelope, request routing, target selection; fuzzed."""

from __future__ import annotations

import base64
import json
import random

from hypothesis import given
from hypothesis import strategies as st

from trimicro.broker import BrokerMessage
from trimicro.broker._http_proto import (
    BROADCAST,
    Accepted,
    Rejected,
    backoff,
    broker_record,
    decode_envelope,
    encode_envelope,
    route_request,
    select_targets,
    target_path,
)
from trimicro.errors import CodecError
from trimicro.registry import Node, Service

GO_CAPTURE = (
    b'{"Header":{"Content-Type":"application/json","Micro-ID":"c90e3ab4-a133-45b3-8701-3b36c508ea77",'
    b'"Micro-Topic":"events"},"Body":"eyJpZCI6IjAiLCJtZXNzYWdlIjoiaGkifQo="}'
)


def test_go_capture_decodes() -> None:
    msg = decode_envelope(GO_CAPTURE)
    assert msg.header["Micro-Topic"] == "events"
    assert msg.header["Micro-ID"] == "c90e3ab4-a133-45b3-8701-3b36c508ea77"
    assert msg.body == b'{"id":"0","message":"hi"}\n'


def test_encode_matches_go_marshal() -> None:
    msg = BrokerMessage(
        {
            "Content-Type": "application/json",
            "Micro-ID": "c90e3ab4-a133-45b3-8701-3b36c508ea77",
            "Micro-Topic": "events",
        },
        b'{"id":"0","message":"hi"}\n',
    )
    assert encode_envelope(msg) == GO_CAPTURE


def test_lenient_like_go_json() -> None:
    assert decode_envelope(b'{"header":null,"BODY":null,"extra":1}') == BrokerMessage({}, b"")
    for bad in (b"[]", b'{"Header":{"a":1}}', b'{"Body":"***"}', b'{"Body":5}', b"\xff"):
        try:
            decode_envelope(bad)
        except CodecError:
            continue
        raise AssertionError(f"{bad!r} accepted")


def test_route_request() -> None:
    ok = route_request("POST", "/?id=events-1", GO_CAPTURE)
    assert isinstance(ok, Accepted) and ok.topic == "events" and ok.node_id == "events-1"
    legacy = route_request("POST", "/_sub", GO_CAPTURE)
    assert isinstance(legacy, Accepted) and legacy.node_id is None
    assert route_request("GET", "/?id=x", GO_CAPTURE) == Rejected(405, legacy_body(405))
    rej = route_request("POST", "/elsewhere", GO_CAPTURE)
    assert isinstance(rej, Rejected) and rej.status == 404
    rej = route_request("POST", "/", b'{"Header":{}}')
    assert isinstance(rej, Rejected) and rej.status == 500
    assert json.loads(rej.body) == {
        "id": "go.micro.broker",
        "code": 500,
        "detail": "Topic not found",
        "status": "Internal Server Error",
    }


def legacy_body(_status: int) -> bytes:
    return b'{"id":"go.micro.broker","code":400,"detail":"Method not allowed","status":"Bad Request"}'


def test_target_path_quotes_the_id() -> None:
    assert target_path("events-1") == "/?id=events-1"
    assert target_path("a b&c", legacy=True) == "/_sub?id=a%20b%26c"
    routed = route_request("POST", target_path("a b&c"), GO_CAPTURE)
    assert isinstance(routed, Accepted) and routed.node_id == "a b&c"


def test_select_targets_groups_and_filters() -> None:
    def svc(version: str, *nodes: tuple[str, str]) -> Service:
        return Service(
            "micro.http.broker",
            version,
            {},
            (),
            tuple(Node(i, "127.0.0.1:1", {"broker": "http", "topic": t}) for i, t in nodes),
        )

    services = [
        svc(BROADCAST, ("b1", "events"), ("b2", "events"), ("x", "other")),
        svc("q1", ("q1a", "events"), ("q1b", "events")),
        svc("q2", ("q2a", "other")),
        Service("micro.http.broker", "q3", {}, (), (Node("nb", "127.0.0.1:1", {"topic": "events"}),)),
    ]
    targets = select_targets(services, "events", shuffle=random.Random(0))
    by_group: dict[str, list[set[str]]] = {}
    for t in targets:
        by_group.setdefault(t.group, []).append({n.id for n in t.nodes})
    assert by_group == {BROADCAST: [{"b1"}, {"b2"}], "q1": [{"q1a", "q1b"}]}


def test_record_shape() -> None:
    rec = broker_record("events", "events-1", "127.0.0.1:5", "q")
    assert rec.name == "micro.http.broker" and rec.version == "q"
    assert dict(rec.nodes[0].metadata) == {"broker": "http", "topic": "events", "secure": "false"}
    assert broker_record("events", "events-1", "127.0.0.1:5", None).version == BROADCAST


def test_backoff() -> None:
    assert [backoff(i, 0.1, 0.5) for i in (1, 2, 3, 4)] == [0.1, 0.2, 0.4, 0.5]


headers = st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=6)


@given(headers, st.binary(max_size=200))
def test_envelope_round_trip(header: dict[str, str], body: bytes) -> None:
    msg = BrokerMessage(header, body)
    assert decode_envelope(encode_envelope(msg)) == msg


@given(st.text(max_size=12), st.text(max_size=60), st.binary(max_size=300))
def test_route_request_never_raises(method: str, target: str, body: bytes) -> None:
    assert isinstance(route_request(method, target, body), Accepted | Rejected)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=10,
    )
)
def test_decode_any_json_is_typed(value: object) -> None:
    data = json.dumps(value).encode()
    try:
        decode_envelope(data)
    except CodecError:
        pass


@given(st.binary(max_size=64))
def test_base64_bodies(raw: bytes) -> None:
    doc = json.dumps({"Header": {"Micro-Topic": "t"}, "Body": base64.b64encode(raw).decode()}).encode()
    routed = route_request("POST", "/?id=t-1", doc)
    assert isinstance(routed, Accepted) and routed.message.body == raw
