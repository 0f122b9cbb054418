"""Header-list validation (``trimicro.transport._http2.headers``) as the connection applies it: a
malformed request, response or trailer block resets that stream only.
"""

from __future__ import annotations

import hpack
import hpack.table
import pytest

from ._support import (
    CONT,
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    REQUEST,
    RESPONSE,
    TRAILERS,
    E,
    Raw,
    frame,
    full,
    our_client,
    rsts,
)

MALFORMED = {
    "uppercase name": [*REQUEST, ("Content-Length", "5")],
    "pseudo after regular": [*REQUEST[:3], ("x-a", "b"), *REQUEST[3:]],
    "missing :path": [h for h in REQUEST if h[0] != ":path"],
    "missing :method": [h for h in REQUEST if h[0] != ":method"],
    "connection header": [*REQUEST, ("connection", "keep-alive")],
    "transfer-encoding": [*REQUEST, ("transfer-encoding", "chunked")],
    "te not trailers": [*REQUEST[:5], ("te", "gzip")],
    "unknown pseudo": [(":foo", "bar"), *REQUEST],
    "response pseudo": [(":status", "200"), *REQUEST],
    "duplicate :path": [*REQUEST[:4], (":path", "/other"), *REQUEST[4:]],
    "newline in value": [*REQUEST, ("x-a", "b\r\nx-injected: 1")],
    "empty name": [*REQUEST, ("", "v")],
    "space in name": [*REQUEST, ("x a", "v")],
    "empty :path": [(":path", "") if h[0] == ":path" else h for h in REQUEST],
}


@pytest.mark.parametrize("name", list(MALFORMED))
@pytest.mark.parametrize("split", [False, True], ids=["one-frame", "continuation"])
def test_malformed_request_resets_the_stream_only(name: str, split: bool) -> None:
    raw = Raw()
    block = raw.block([*MALFORMED[name], ("x-indexed", "into the dynamic table")])
    if split:
        fs = (
            frame(HEADERS, 0, 1, block[:5])
            + frame(CONT, 0, 1, block[5:9])
            + frame(CONT, END_HEADERS, 1, block[9:])
        )
    else:
        fs = frame(HEADERS, END_HEADERS, 1, block)
    assert raw.send(fs) == []
    assert rsts(raw.out()) == [(1, E.PROTOCOL_ERROR)]
    assert raw.send(frame(DATA, END_STREAM, 1, b"body")) == []  # its DATA is ignored
    # the next stream's block refers to what the bad block put in the table
    nxt = [*REQUEST, ("x-indexed", "into the dynamic table")]
    events = raw.headers(3, nxt, END_HEADERS | END_STREAM)
    assert [full(e) for e in events] == [("RequestReceived", 3, nxt, True), ("StreamEnded", 3)]
    assert rsts(raw.out()) == []


@pytest.mark.parametrize(
    "response",
    [
        [("content-type", "application/grpc")],  # no :status
        [(":status", "200"), (":path", "/")],
        [("x", "y"), (":status", "200")],
        [(":status", "200"), ("Grpc-Status", "0")],
        [(":status", "200"), ("connection", "close")],
    ],
)
def test_malformed_response_resets_the_stream_only(response: list[tuple[str, str]]) -> None:
    p = our_client(streams=2)
    enc = hpack.Encoder()
    events = p.receive_data(frame(HEADERS, END_HEADERS, 1, enc.encode(response)))
    assert [full(e) for e in events] == [("StreamReset", 1, E.PROTOCOL_ERROR)]
    assert rsts(p.data_to_send()) == [(1, E.PROTOCOL_ERROR)]
    events = p.receive_data(frame(HEADERS, END_HEADERS | END_STREAM, 3, enc.encode([*RESPONSE, *TRAILERS])))
    assert [full(e) for e in events] == [
        ("ResponseReceived", 3, [*RESPONSE, *TRAILERS], True),
        ("StreamEnded", 3),
    ]


def test_trailers_must_end_the_stream_and_carry_no_pseudo_headers() -> None:
    raw = Raw()
    raw.headers(1, REQUEST)
    assert [full(e) for e in raw.headers(1, TRAILERS, END_HEADERS)] == [("StreamReset", 1, E.PROTOCOL_ERROR)]
    raw.headers(3, REQUEST)
    bad = [(":path", "/"), *TRAILERS]
    assert [full(e) for e in raw.headers(3, bad, END_HEADERS | END_STREAM)] == [
        ("StreamReset", 3, E.PROTOCOL_ERROR)
    ]
    raw.headers(5, REQUEST)
    ok = raw.headers(5, TRAILERS, END_HEADERS | END_STREAM)
    assert [full(e) for e in ok] == [("TrailersReceived", 5, TRAILERS), ("StreamEnded", 5)]
