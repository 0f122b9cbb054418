"""Regression tests for the HTTP/2 violations h2spec found (tests/interop/test_h2spec.py runs h2spec
itself): each test is named after its h2spec case. Driven sans-IO, as test_connection.py does."""

from __future__ import annotations

import struct

from ._support import (
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
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
