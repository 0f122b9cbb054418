"""Regression tests for the HTTP/2 violations h2spec found (tests/interop/test_h2spec.py runs h2spec
itself): each test is named after its h2spec case. Driven sans-IO, as test_connection.py does."""

from __future__ import annotations

import struct

from ._support import (
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    PADDED,
    PRIO,
    PRIORITY,
    REQUEST,
    E,
    Raw,
    expect_connection_error,
    frame,
    kinds,
    rsts,
)


def test_5_3_1_1_headers_depending_on_itself_is_a_stream_error() -> None:
    raw = Raw()
    block = struct.pack(">LB", 1, 15) + raw.block(REQUEST)
    assert raw.send(frame(HEADERS, END_HEADERS | END_STREAM | PRIO, 1, block)) == []
    assert rsts(raw.out()) == [(1, E.PROTOCOL_ERROR)]
    # HPACK stayed in sync and the connection still serves; stream 1 is used up
    assert kinds(raw.headers(3, REQUEST, END_HEADERS | END_STREAM)) == ["RequestReceived", "StreamEnded"]
    assert raw.send(frame(DATA, END_STREAM, 1, b"late")) == []


def test_5_3_1_2_priority_depending_on_itself() -> None:
    raw = Raw()
    raw.headers(1, REQUEST)
    assert kinds(raw.send(frame(PRIORITY, 0, 1, struct.pack(">LB", 1, 255)))) == ["StreamReset"]
    assert rsts(raw.out()) == [(1, E.PROTOCOL_ERROR)]
    # on an idle stream no RST_STREAM may name it: a connection error
    expect_connection_error(Raw().p, frame(PRIORITY, 0, 5, struct.pack(">LB", 5, 255)))
    # depending on another stream is fine
    other = Raw()
    other.headers(1, REQUEST)
    assert other.send(frame(PRIORITY, 0, 1, struct.pack(">LB", 3, 255))) == []
    assert rsts(other.out()) == []


def _post(length: str | None) -> list[tuple[str, str]]:
    return [*REQUEST, ("content-length", length)] if length is not None else REQUEST


def test_8_1_2_6_1_data_shorter_or_longer_than_content_length() -> None:
    raw = Raw()
    assert kinds(raw.headers(1, _post("1"))) == ["RequestReceived"]
    assert kinds(raw.send(frame(DATA, END_STREAM, 1, b"test"))) == ["StreamReset"]
    assert rsts(raw.out()) == [(1, E.PROTOCOL_ERROR)]
    raw.headers(3, _post("8"))
    assert kinds(raw.send(frame(DATA, END_STREAM, 3, b"test"))) == ["StreamReset"]
    assert rsts(raw.out()) == [(3, E.PROTOCOL_ERROR)]


def test_8_1_2_6_2_sum_of_data_frames() -> None:
    raw = Raw()
    raw.headers(1, _post("8"))
    assert kinds(raw.send(frame(DATA, 0, 1, b"test"))) == ["DataReceived"]
    assert kinds(raw.send(frame(DATA, END_STREAM, 1, b"test"))) == ["DataReceived", "StreamEnded"]
    assert rsts(raw.out()) == []
    raw.headers(3, _post("8"))
    raw.send(frame(DATA, 0, 3, b"test"))
    assert kinds(raw.send(frame(DATA, 0, 3, b"tests"))) == ["StreamReset"]
    assert rsts(raw.out()) == [(3, E.PROTOCOL_ERROR)]


def test_content_length_other_malformed_forms() -> None:
    raw = Raw()
    # promised a body, ended at once; not a number; two different values
    assert raw.headers(1, _post("3"), END_HEADERS | END_STREAM) == []
    assert raw.headers(3, _post("x1")) == []
    assert raw.headers(5, [*_post("2"), ("content-length", "3")]) == []
    assert rsts(raw.out()) == [(1, E.PROTOCOL_ERROR), (3, E.PROTOCOL_ERROR), (5, E.PROTOCOL_ERROR)]
    # trailers before the promised bytes
    raw.headers(7, _post("4"))
    raw.send(frame(DATA, 0, 7, b"ab"))
    assert kinds(raw.headers(7, [("x-t", "1")], END_HEADERS | END_STREAM)) == ["StreamReset"]
    assert rsts(raw.out()) == [(7, E.PROTOCOL_ERROR)]
    # zero, repeated equal values, and padding that does not count
    assert kinds(raw.headers(9, _post("0"), END_HEADERS | END_STREAM)) == ["RequestReceived", "StreamEnded"]
    raw.headers(11, [*_post("2"), ("content-length", "2")])
    padded = bytes([3]) + b"hi" + b"\0\0\0"
    assert kinds(raw.send(frame(DATA, END_STREAM | PADDED, 11, padded))) == ["DataReceived", "StreamEnded"]
    assert rsts(raw.out()) == []
