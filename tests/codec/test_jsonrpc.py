from __future__ import annotations

import json

import pytest

from tests.protos import greeter_pb2
from trimicro.codec import JsonRpcCodec, get_codec
from trimicro.errors import CodecError, MicroError

codec = get_codec("application/json-rpc")


def test_is_envelope_codec() -> None:
    assert isinstance(codec, JsonRpcCodec) and codec.envelope


def test_request_bytes_exact() -> None:
    data = codec.encode_request("Greeter.Hello", 1, greeter_pb2.HelloRequest(name="John"))
    assert data == b'{"method":"Greeter.Hello","params":[{"name":"John"}],"id":1}\n'


def test_response_bytes_exact() -> None:
    ok = codec.encode_response("Greeter.Hello", 1, greeter_pb2.HelloResponse(greeting="Hello John"))
    assert ok == b'{"id":1,"result":{"greeting":"Hello John"},"error":null}\n'
    err = codec.encode_response("Greeter.Hello", 7, None, 'boom "quoted"')
    assert err == b'{"id":7,"result":null,"error":"boom \\"quoted\\""}\n'
    empty = codec.encode_response("Greeter.Hello", 2, greeter_pb2.HelloResponse(), "")
    assert empty == b'{"id":2,"result":{},"error":null}\n'


def test_round_trip() -> None:
    req = codec.encode_request("Greeter.Hello", 42, greeter_pb2.HelloRequest(name="x"))
    assert codec.decode_request(req, greeter_pb2.HelloRequest) == (
        "Greeter.Hello",
        42,
        greeter_pb2.HelloRequest(name="x"),
    )
    rsp = codec.encode_response("Greeter.Hello", 42, greeter_pb2.HelloResponse(greeting="y"))
    assert codec.decode_response(rsp, greeter_pb2.HelloResponse) == greeter_pb2.HelloResponse(greeting="y")


def test_go_micro_shapes_decode() -> None:
    # Go Micro's client writes params first and a string id; field names may be camelCase.
    go_req = b'{"params":[{"name":"Go"}],"id":"3","method":"Greeter.Hello"}\n'
    assert codec.decode_request(go_req, greeter_pb2.HelloRequest) == (
        "Greeter.Hello",
        3,
        greeter_pb2.HelloRequest(name="Go"),
    )
    go_rsp = b'{"id":"3","result":{"greeting":"hi"},"error":null}\n'
    assert codec.decode_response(go_rsp, greeter_pb2.HelloResponse) == greeter_pb2.HelloResponse(
        greeting="hi"
    )
    assert codec.decode_request(b'{"method":"A.B","params":[],"id":"1e+06"}', None) == (
        "A.B",
        1_000_000,
        None,
    )
    assert codec.decode_request(b'{"method":"A.B","id":"zz"}', None) == ("A.B", 0, None)


def test_into_none_dict_and_bytes() -> None:
    req = b'{"method":"A.B","params":[{"name":"x","n":[1,2]}],"id":1}'
    assert codec.decode_request(req)[2] == {"name": "x", "n": [1, 2]}
    assert codec.decode_request(req, dict)[2] == {"name": "x", "n": [1, 2]}
    assert json.loads(codec.decode_request(req, bytes)[2]) == {"name": "x", "n": [1, 2]}


def test_raw_params_pass_through() -> None:
    data = codec.encode_request("A.B", 1, b'{"pre":1}\n')
    assert data == b'{"method":"A.B","params":[{"pre":1}],"id":1}\n'


def test_error_raises_micro_error() -> None:
    with pytest.raises(MicroError) as info:
        codec.decode_response(b'{"id":1,"result":null,"error":"plain text"}', greeter_pb2.HelloResponse)
    assert (info.value.code, info.value.detail) == (500, "plain text")
    go_err = json.dumps(
        {"id": 1, "result": None, "error": '{"id":"g","code":408,"detail":"slow","status":"Request Timeout"}'}
    )
    with pytest.raises(MicroError) as info:
        codec.decode_response(go_err.encode())
    assert (info.value.id, info.value.code, info.value.detail) == ("g", 408, "slow")
    with pytest.raises(MicroError, match="unspecified error"):
        codec.decode_response(b'{"id":1,"result":null,"error":""}')
    with pytest.raises(MicroError) as info:
        codec.decode_response(b'{"id":1,"error":{"code":404,"detail":"gone"}}')
    assert info.value.code == 404


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "expected a JSON object"),
        (b"[]", "expected a JSON object"),
        (b"not json", "invalid JSON"),
        (b'{"params":[{}],"id":1}', "method must be a string"),
        (b'{"method":"A.B","params":{"name":"x"},"id":1}', "params must be an array"),
        (b'{"method":"A.B","params":[{"name":7}],"id":1}', "greeter.HelloRequest"),
    ],
)
def test_malformed_requests(data: bytes, match: str) -> None:
    with pytest.raises(CodecError, match=match):
        codec.decode_request(data, greeter_pb2.HelloRequest)


def test_plain_encode_decode() -> None:
    assert codec.encode(greeter_pb2.HelloRequest(name="a")) == b'{"name":"a"}\n'
    assert codec.decode(b'{"name":"a"}', greeter_pb2.HelloRequest) == greeter_pb2.HelloRequest(name="a")


def test_unencodable_envelope_fields() -> None:
    with pytest.raises(CodecError, match="int"):
        codec.encode_request("A.B", "1", None)  # type: ignore[arg-type]
    with pytest.raises(CodecError):
        codec.encode_request("\ud800", 1, None)
    with pytest.raises(CodecError):
        codec.encode_response("A.B", 1, None, "\udfff")


def test_html_characters_escaped_like_go() -> None:
    data = codec.encode_response("A.B", 1, greeter_pb2.HelloResponse(greeting="<&>"), None)
    assert data == b'{"id":1,"result":{"greeting":"\\u003c\\u0026\\u003e"},"error":null}\n'
