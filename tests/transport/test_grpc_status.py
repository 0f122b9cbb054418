"""grpc-status-details-bin: our hand-written google.rpc.Status with Go Micro's errors.Error, checked
against protobuf's own encoding (messages declared in a private descriptor pool, so nothing clashes
with googleapis' real google.rpc package if it is installed)."""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from hypothesis import given
from hypothesis import strategies as st

from trimicro.errors import MicroError
from trimicro.transport._grpc_status import (
    MICRO_ERROR_TYPE_URL,
    decode_status_details,
    encode_status_details,
)
from trimicro.transport._h2grpc import error_from_status, status_details_for_error, status_for_error

F = descriptor_pb2.FieldDescriptorProto


def _classes() -> tuple[Any, Any]:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
    rpc = descriptor_pb2.FileDescriptorProto(name="t/status.proto", package="google.rpc", syntax="proto3")
    rpc.dependency.append("google/protobuf/any.proto")
    status = rpc.message_type.add(name="Status")
    status.field.add(name="code", number=1, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    status.field.add(name="message", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    status.field.add(
        name="details",
        number=3,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_REPEATED,
        type_name=".google.protobuf.Any",
    )
    micro = descriptor_pb2.FileDescriptorProto(name="t/errors.proto", package="errors", syntax="proto3")
    error = micro.message_type.add(name="Error")
    for number, (name, kind) in enumerate(
        [("id", F.TYPE_STRING), ("code", F.TYPE_INT32), ("detail", F.TYPE_STRING), ("status", F.TYPE_STRING)],
        1,
    ):
        error.field.add(name=name, number=number, type=kind, label=F.LABEL_OPTIONAL)
    pool.Add(rpc)
    pool.Add(micro)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("errors.Error")),
    )


Status, Error = _classes()

_errors = st.builds(
    MicroError,
    st.text(max_size=20),
    st.integers(-(2**31), 2**31 - 1),
    st.text(max_size=40),
    st.text(max_size=20),
)


@given(_errors, st.integers(0, 16))
def test_encoding_is_protobufs(err: MicroError, status: int) -> None:
    raw = base64.b64decode(encode_status_details(status, err.detail, err) + "==")
    msg = Status.FromString(raw)
    assert (msg.code, msg.message, len(msg.details)) == (status, err.detail, 1)
    assert msg.details[0].type_url == MICRO_ERROR_TYPE_URL
    inner = Error.FromString(msg.details[0].value)
    assert (inner.id, inner.code, inner.detail, inner.status) == (err.id, err.code, err.detail, err.status)
    assert decode_status_details(encode_status_details(status, err.detail, err)) == err


def test_decodes_what_protobuf_writes_and_skips_other_details() -> None:
    msg = Status(code=5, message="gone")
    msg.details.add(type_url="type.googleapis.com/google.rpc.RetryInfo", value=b"\x0a\x00")
    msg.details.add(
        type_url=MICRO_ERROR_TYPE_URL,
        value=Error(id="go.micro.srv", code=404, detail="gone", status="Not Found").SerializeToString(),
    )
    raw = msg.SerializeToString()
    padded = base64.b64encode(raw).decode()
    assert decode_status_details(padded) == MicroError("go.micro.srv", 404, "gone", "Not Found")
    assert decode_status_details(padded.rstrip("=")) == MicroError("go.micro.srv", 404, "gone", "Not Found")
    assert decode_status_details(base64.b64encode(Status(code=5).SerializeToString()).decode()) is None


@given(st.binary(max_size=64))
def test_garbage_is_no_error(data: bytes) -> None:
    decode_status_details(base64.b64encode(data).decode())
    decode_status_details(data.decode("latin-1"))


def test_message_is_the_plain_detail_and_details_carry_the_error() -> None:
    err = MicroError("greeter", 404, "no such thing: 100% \u263a")
    status, message = status_for_error(err)
    assert (status, message) == (5, "no such thing: 100%25 %E2%98%BA")
    details = status_details_for_error(err)
    assert error_from_status(status, message, default_id="c", details=details) == err
    # without details (a stock server): built from the code and the message
    plain = error_from_status(status, message, default_id="c")
    assert (plain.id, plain.code, plain.detail) == ("c", 404, "no such thing: 100% \u263a")
    # the old form (Go Micro's and older trimicro servers): the JSON in grpc-message
    assert error_from_status(5, err.to_json(), default_id="c") == err
