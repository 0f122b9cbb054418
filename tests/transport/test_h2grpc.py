"""Sans-IO gRPC header rules: grpc-message, paths, metadata, status, health messages (grpc-timeout:
tests/test_metadata.py)."""

from __future__ import annotations

import pytest
from grpc_health.v1 import health_pb2
from hypothesis import given
from hypothesis import strategies as st

from trimicro.debug._grpc_health import decode_request, encode_response
from trimicro.errors import MicroError
from trimicro.transport._h2grpc import (
    check_metadata,
    decode_grpc_message,
    encode_grpc_message,
    endpoint_for_path,
    error_from_status,
    grpc_content_type,
    incoming_metadata,
    outgoing_metadata,
    path_for_endpoint,
    status_for_error,
)


@given(st.text())
def test_grpc_message_roundtrip(text: str) -> None:
    encoded = encode_grpc_message(text)
    assert all(0x20 <= ord(c) < 0x7F for c in encoded)
    assert decode_grpc_message(encoded) == text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def test_grpc_message_examples() -> None:
    assert encode_grpc_message("100% sure") == "100%25 sure"
    assert encode_grpc_message("é") == "%C3%A9"
    assert decode_grpc_message("bad %zz and %4") == "bad %zz and %4"


@given(st.text(max_size=30))
def test_decode_grpc_message_never_raises(value: str) -> None:
    decode_grpc_message(value)


def test_paths() -> None:
    assert path_for_endpoint("greeter", "Greeter.Hello") == "/greeter.Greeter/Hello"
    assert path_for_endpoint("go.micro.srv.greeter", "Greeter.Hello") == "/go.micro.srv.greeter.Greeter/Hello"
    assert path_for_endpoint("", "Greeter.Hello") == "/Greeter/Hello"
    assert path_for_endpoint("x", "/helloworld.Greeter/SayHello") == "/helloworld.Greeter/SayHello"
    assert endpoint_for_path("/greeter.Greeter/Hello", {}) == "Greeter.Hello"
    assert endpoint_for_path("/Greeter/Hello", {}) == "Greeter.Hello"
    assert endpoint_for_path("/pkg.v1.Svc/Do", {"/pkg.v1.Svc/Do": "Impl.Do"}) == "Impl.Do"
    for bad in ("", "/", "Greeter/Hello", "/Greeter", "/Greeter/", "/a/b/c"):
        assert endpoint_for_path(bad, {}) is None


def test_content_types() -> None:
    assert grpc_content_type("application/protobuf") == "application/grpc+proto"
    assert grpc_content_type("application/json") == "application/grpc+json"
    assert grpc_content_type("application/grpc") == "application/grpc"
    assert grpc_content_type(None) == "application/grpc"


def test_metadata_mapping() -> None:
    md = incoming_metadata(
        [(":path", "/a/b"), ("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", "1S"),
         ("x-user", "bob"), ("x-tag", "a"), ("x-tag", "b"), ("trace-bin", "AAEC")]
    )  # fmt: skip
    assert md == {"X-User": "bob", "X-Tag": "a,b", "Trace-Bin": "AAEC"}
    out = outgoing_metadata(
        {
            "Micro-Service": "s",
            "Micro-Endpoint": "A.B",
            "Timeout": "5",
            "Content-Type": "x",
            "Micro-Id": "1",
            "X-User": "z",
        }
    )
    assert out == [("micro-id", "1"), ("x-user", "z")]


def test_status_mapping() -> None:
    err = MicroError("greeter", 404, "no such thing: 100%")
    status, message = status_for_error(err)
    assert (status, message) == (5, "no such thing: 100%25")
    assert error_from_status(5, err.to_json(), default_id="go.micro.client") == err
    plain = error_from_status(7, "denied", default_id="go.micro.client")
    assert (plain.id, plain.code, plain.detail) == ("go.micro.client", 403, "denied")
    unknown = error_from_status(2, "", default_id="c")
    assert unknown.code == 500 and "status 2" in unknown.detail


@given(st.text(max_size=50))
def test_health_request_matches_protobuf(service: str) -> None:
    raw = health_pb2.HealthCheckRequest(service=service).SerializeToString()
    assert decode_request(raw) == service


@given(st.binary(max_size=40))
def test_health_request_garbage_is_a_value_error(data: bytes) -> None:
    try:
        decode_request(data)
    except (ValueError, UnicodeDecodeError):
        pass


@pytest.mark.parametrize("status", [0, 1, 2, 3, 300])
def test_health_response_matches_protobuf(status: int) -> None:
    msg = health_pb2.HealthCheckResponse.FromString(encode_response(status))
    assert msg.status == status


def test_check_metadata() -> None:
    assert check_metadata("x-user", "  ann ") == "ann"
    assert check_metadata("x-u", "héllo") == "héllo"  # UTF-8 values pass, as before
    for name in ("X-User", "x user", "x:y", ""):
        with pytest.raises(ValueError, match="lower-case HTTP token"):
            check_metadata(name, "v")
    for value in ("a\nb", "a\rb", "a\x00b"):
        with pytest.raises(ValueError, match="CR, LF or NUL"):
            check_metadata("x-v", value)


def test_outgoing_metadata_checks_and_drops_connection_headers() -> None:
    assert outgoing_metadata({"X-User": "a", "Keep-Alive": "5", "Upgrade": "h2c"}) == [("x-user", "a")]
    with pytest.raises(ValueError):
        outgoing_metadata({"X-Bad": "a\nb"})
