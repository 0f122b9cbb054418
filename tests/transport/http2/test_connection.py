"""Direct RFC 9113 checks of the HTTP/2 connection (``trimicro.transport._http2.connection``): frames
built byte by byte here (and HPACK blocks by ``hpack``), our output parsed by ``hyperframe``, so both
sides are independent of the code under test.
"""

from __future__ import annotations

import struct

import hpack
import hpack.table
import hyperframe.frame as hf
import pytest

from trimicro.transport import _http2 as h2p

from ._support import (
    CONT,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PADDED,
    PING,
    PRIO,
    PRIORITY,
    PUSH,
    REQUEST,
    RESPONSE,
    RST,
    SETTINGS,
    TRAILERS,
    WUPDATE,
    E,
    Raw,
    expect_connection_error,
    frame,
    full,
    goaway_last,
    kinds,
    of,
    our_client,
    our_server,
    parse,
    rsts,
    triples,
)

# ===================================================================== direct RFC 9113 checks


@pytest.mark.parametrize("client", [False, True])
@pytest.mark.parametrize(
    "first", [frame(PING, 0, 0, b"12345678"), frame(SETTINGS, 1, 0), frame(WUPDATE, 0, 0, b"\0\0\0\1")]
)
def test_first_frame_must_be_settings(client: bool, first: bytes) -> None:
    p = h2p.H2Protocol(client_side=client)
    p.initiate_connection()
    p.data_to_send()
    expect_connection_error(p, first if client else h2p.PREFACE + first)


@pytest.mark.parametrize(
    "bad", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", b"P\0"]
)
def test_bad_preface(bad: bytes) -> None:
    p = h2p.H2Protocol(client_side=False)
    p.initiate_connection()
    p.data_to_send()
    expect_connection_error(p, bad)


def test_preface_in_pieces() -> None:
    p = h2p.H2Protocol(client_side=False)
    for i in range(len(h2p.PREFACE)):
        assert p.receive_data(h2p.PREFACE[i : i + 1]) == []
    assert kinds(p.receive_data(frame(SETTINGS, 0, 0))) == ["RemoteSettingsChanged"]


def test_data_on_idle_or_zero_stream_is_a_connection_error() -> None:
    expect_connection_error(our_server(), frame(DATA, 0, 1, b"x"))
    expect_connection_error(our_server(), frame(DATA, 0, 0, b"x"))
    expect_connection_error(our_client(streams=1), frame(DATA, 0, 3, b"x"))
    expect_connection_error(our_client(streams=1), frame(DATA, 0, 2, b"x"))


def test_stream_window_exceeded_resets_only_that_stream() -> None:
    raw = Raw(initial_window_size=100)
    raw.headers(1, REQUEST)
    ok = raw.send(frame(DATA, 0, 1, b"a" * 100))
    assert kinds(ok) == ["DataReceived"]
    events = raw.send(frame(DATA, 0, 1, b"b"))
    assert [full(e) for e in events] == [("StreamReset", 1, E.FLOW_CONTROL_ERROR)]
    assert rsts(raw.out()) == [(1, E.FLOW_CONTROL_ERROR)]
    # the connection serves the next stream, and the reset stream's leftovers are ignored
    assert kinds(raw.headers(3, REQUEST, END_HEADERS | END_STREAM)) == ["RequestReceived", "StreamEnded"]
    assert raw.send(frame(DATA, END_STREAM, 1, b"late")) == []
    assert rsts(raw.out()) == []


def test_connection_window_exceeded_is_a_connection_error() -> None:
    raw = Raw(initial_window_size=1 << 20)
    raw.headers(1, REQUEST)
    raw.headers(3, REQUEST)
    got = raw.send(
        *(frame(DATA, 0, 1 + 2 * (i % 2), b"z" * 16383) for i in range(4)), frame(DATA, 0, 1, b"zzz")
    )
    assert sum(e.flow_controlled_length for e in got if isinstance(e, h2p.DataReceived)) == 65535
    expect_connection_error(raw.p, frame(DATA, 0, 3, b"!"), E.FLOW_CONTROL_ERROR)


def test_window_update_of_zero() -> None:
    raw = Raw()
    raw.headers(1, REQUEST)
    events = raw.send(frame(WUPDATE, 0, 1, b"\0\0\0\0"))
    assert [full(e) for e in events] == [("StreamReset", 1, E.PROTOCOL_ERROR)]
    assert rsts(raw.out()) == [(1, E.PROTOCOL_ERROR)]
    assert kinds(raw.headers(3, REQUEST, END_HEADERS | END_STREAM)) == ["RequestReceived", "StreamEnded"]
    expect_connection_error(raw.p, frame(WUPDATE, 0, 0, b"\0\0\0\0"))


def test_window_overflow() -> None:
    raw = Raw()
    raw.headers(1, REQUEST)
    events = raw.send(frame(WUPDATE, 0, 1, struct.pack(">L", 2**31 - 1)))
    assert [full(e) for e in events] == [("StreamReset", 1, E.FLOW_CONTROL_ERROR)]
    expect_connection_error(raw.p, frame(WUPDATE, 0, 0, struct.pack(">L", 2**31 - 1)), E.FLOW_CONTROL_ERROR)


@pytest.mark.parametrize("max_frame", [16384, 100_000])
def test_frame_larger_than_our_max_frame_size(max_frame: int) -> None:
    raw = Raw(max_frame_size=max_frame, initial_window_size=1 << 20)
    raw.p.increment_flow_control_window(1 << 20)
    raw.headers(1, REQUEST)
    assert kinds(raw.send(frame(DATA, 0, 1, b"x" * max_frame))) == ["DataReceived"]
    # refused on the header alone, before the payload arrives
    head = frame(DATA, 0, 1, b"x" * (max_frame + 1))[:9]
    expect_connection_error(raw.p, head, E.FRAME_SIZE_ERROR)


def test_max_concurrent_streams_refuses_the_extra_stream() -> None:
    raw = Raw(max_concurrent_streams=2)
    assert kinds(raw.headers(1, REQUEST)) == ["RequestReceived"]
    assert kinds(raw.headers(3, REQUEST)) == ["RequestReceived"]
    assert raw.headers(5, REQUEST) == []
    assert rsts(raw.out()) == [(5, E.REFUSED_STREAM)]
    assert raw.send(frame(DATA, END_STREAM, 5, b"x" * 1000)) == []  # ignored, no second RST
    assert rsts(raw.out()) == []
    # finishing stream 1 both ways frees a slot
    raw.send(frame(DATA, END_STREAM, 1, b""))
    raw.p.send_headers(1, triples([*RESPONSE, *TRAILERS]), end_stream=True)
    assert raw.p.open_inbound_streams == 1
    assert kinds(raw.headers(7, REQUEST)) == ["RequestReceived"]


def test_frames_after_we_reset_are_ignored_and_their_window_returned() -> None:
    raw = Raw()
    raw.headers(1, REQUEST)
    raw.p.reset_stream(1, E.CANCEL)
    assert rsts(raw.out()) == [(1, E.CANCEL)]
    # more DATA than the connection window, all on the reset stream: no error, window handed back
    late = [frame(DATA, 0, 1, b"d" * 16000) for _ in range(8)]
    assert raw.send(*late) == []
    out = parse(raw.out())
    assert not of(out, hf.RstStreamFrame) and not of(out, hf.GoAwayFrame)
    assert (
        sum(f.window_increment for f in of(out, hf.WindowUpdateFrame) if f.stream_id == 0)
        >= 8 * 16000 - 65535
    )
    # trailers (which add to the HPACK table), WINDOW_UPDATE, RST_STREAM, PRIORITY: all ignored
    assert raw.headers(1, [("grpc-status", "1"), ("x-new", "entry")], END_HEADERS | END_STREAM) == []
    assert raw.send(frame(WUPDATE, 0, 1, b"\0\0\1\0"), frame(RST, 0, 1, b"\0\0\0\x08")) == []
    assert raw.send(frame(PRIORITY, 0, 1, b"\0\0\0\0\x10")) == []
    assert parse(raw.out()) == []
    events = raw.headers(3, [*REQUEST, ("x-new", "entry")], END_HEADERS | END_STREAM)
    assert full(events[0]) == ("RequestReceived", 3, [*REQUEST, ("x-new", "entry")], True)


def test_client_ignores_a_response_to_a_stream_it_reset() -> None:
    p = our_client(streams=2)
    p.reset_stream(1)
    p.data_to_send()
    enc = hpack.Encoder()
    late = frame(HEADERS, END_HEADERS, 1, enc.encode(RESPONSE)) + b"".join(
        frame(DATA, 0, 1, b"r" * 16000) for _ in range(6)
    )
    assert p.receive_data(late) == []
    assert not of(parse(p.data_to_send()), hf.RstStreamFrame)
    events = p.receive_data(frame(HEADERS, END_HEADERS, 3, enc.encode(RESPONSE)))
    assert [full(e) for e in events] == [("ResponseReceived", 3, RESPONSE, False)]


def test_interrupted_continuation_is_a_connection_error() -> None:
    for interruption in (frame(DATA, 0, 1, b"x"), frame(PING, 0, 0, b"12345678"), frame(0x42, 0, 0, b"ext")):
        raw = Raw()
        block = raw.block(REQUEST)
        assert raw.send(frame(HEADERS, 0, 1, block[:4])) == []
        expect_connection_error(raw.p, interruption)
    raw = Raw()
    block = raw.block(REQUEST)
    raw.send(frame(HEADERS, 0, 1, block[:4]))
    expect_connection_error(raw.p, frame(CONT, END_HEADERS, 3, block[4:]))  # another stream's
    expect_connection_error(our_server(), frame(CONT, END_HEADERS, 1, b"\x82"))  # nothing to continue


def test_oversized_header_list_is_a_connection_error() -> None:
    raw = Raw(max_header_list_size=1000)
    with pytest.raises(h2p.H2ProtocolError):
        raw.headers(1, [*REQUEST, ("x-big", "v" * 2000)])
    goaway_last(raw.out())
    # a CONTINUATION stream that never ends is cut off, not buffered without bound
    raw = Raw(max_header_list_size=1000)
    raw.send(frame(HEADERS, 0, 1, raw.block(REQUEST)))
    with pytest.raises(h2p.H2ProtocolError):
        for _ in range(100):
            raw.send(frame(CONT, 0, 1, b"\0" * 16384))
    goaway_last(raw.out())
    # ... even when its frames are empty
    raw = Raw()
    raw.send(frame(HEADERS, 0, 1, raw.block(REQUEST)))
    with pytest.raises(h2p.H2ProtocolError):
        raw.send(frame(CONT, 0, 1) * 100_000)
    goaway_last(raw.out())


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(SETTINGS, 0, 0, b"\0\4\x80\0\0\0"), E.FLOW_CONTROL_ERROR),  # INITIAL_WINDOW_SIZE 2^31
        (frame(SETTINGS, 0, 0, b"\0\5\0\0\x3f\xff"), E.PROTOCOL_ERROR),  # MAX_FRAME_SIZE 16383
        (frame(SETTINGS, 0, 0, b"\0\5\1\0\0\0"), E.PROTOCOL_ERROR),  # MAX_FRAME_SIZE 2^24
        (frame(SETTINGS, 0, 0, b"\0\2\0\0\0\2"), E.PROTOCOL_ERROR),  # ENABLE_PUSH 2
        (frame(SETTINGS, 0, 0, b"\0\1\0\0"), E.FRAME_SIZE_ERROR),
        (frame(SETTINGS, 1, 0, b"\0\1\0\0\0\0"), E.FRAME_SIZE_ERROR),  # ACK with a payload
        (frame(SETTINGS, 0, 1), E.PROTOCOL_ERROR),
        (frame(PING, 0, 0, b"1234567"), E.FRAME_SIZE_ERROR),
        (frame(PING, 0, 1, b"12345678"), E.PROTOCOL_ERROR),
        (frame(GOAWAY, 0, 0, b"1234567"), E.FRAME_SIZE_ERROR),
        (frame(GOAWAY, 0, 1, b"\0" * 8), E.PROTOCOL_ERROR),
        (frame(RST, 0, 0, b"\0\0\0\1"), E.PROTOCOL_ERROR),
        (frame(RST, 0, 1, b"\0\0\0\1"), E.PROTOCOL_ERROR),  # idle stream
        (frame(WUPDATE, 0, 0, b"\0\0\1"), E.FRAME_SIZE_ERROR),
        (frame(WUPDATE, 0, 1, b"\0\0\0\1"), E.PROTOCOL_ERROR),  # idle stream
        (frame(PRIORITY, 0, 0, b"\0" * 5), E.PROTOCOL_ERROR),
        (frame(PUSH, END_HEADERS, 1, b"\0\0\0\2\x82"), E.PROTOCOL_ERROR),
        (frame(HEADERS, END_HEADERS, 0, b"\x82"), E.PROTOCOL_ERROR),
        (frame(HEADERS, END_HEADERS, 2, b"\x82"), E.PROTOCOL_ERROR),  # the server's parity
        (frame(HEADERS, END_HEADERS | PADDED, 1, b"\x05\x82"), E.PROTOCOL_ERROR),  # padding too long
        (frame(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff"), E.COMPRESSION_ERROR),  # bad HPACK
    ],
)
def test_connection_errors(data: bytes, code: int) -> None:
    expect_connection_error(our_server(), data, code)


def test_response_data_before_headers_resets_the_stream() -> None:
    p = our_client(streams=2)
    events = p.receive_data(frame(DATA, 0, 1, b"too early"))
    assert [full(e) for e in events] == [("StreamReset", 1, E.PROTOCOL_ERROR)]
    assert rsts(p.data_to_send()) == [(1, E.PROTOCOL_ERROR)]
    events = p.receive_data(frame(HEADERS, END_HEADERS, 3, hpack.Encoder().encode(RESPONSE)))
    assert kinds(events) == ["ResponseReceived"]


def test_goaway_closes_our_streams_it_did_not_process() -> None:
    p = our_client(streams=3)  # 1, 3, 5
    events = p.receive_data(frame(GOAWAY, 0, 0, struct.pack(">LL", 1, 0) + b"draining"))
    assert [full(e) for e in events] == [("ConnectionTerminated", b"draining", 0, 1)]
    assert set(p.streams) == {1}
    for sid in (3, 5):
        with pytest.raises(h2p.StreamClosedError):
            p.send_data(sid, b"x")
    # the stream it did process completes
    p.send_data(1, b"q", end_stream=True)
    enc = hpack.Encoder()
    events = p.receive_data(
        frame(HEADERS, END_HEADERS, 1, enc.encode(RESPONSE))
        + frame(DATA, 0, 1, b"a")
        + frame(HEADERS, END_HEADERS | END_STREAM, 1, enc.encode(TRAILERS))
    )
    assert kinds(events) == ["ResponseReceived", "DataReceived", "TrailersReceived", "StreamEnded"]
    assert not p.streams


def test_enable_push_from_a_server_is_refused() -> None:
    p = h2p.H2Protocol(client_side=True)
    p.initiate_connection()
    expect_connection_error(p, frame(SETTINGS, 0, 0, b"\0\2\0\0\0\1"))
    # a client may say it (h2's clients do): the server ignores it, pushing nothing anyway
    s = h2p.H2Protocol(client_side=False)
    assert kinds(s.receive_data(h2p.PREFACE + frame(SETTINGS, 0, 0, b"\0\2\0\0\0\1"))) == [
        "RemoteSettingsChanged"
    ]


def test_priority_of_the_wrong_length() -> None:
    raw = Raw()
    raw.headers(1, REQUEST)
    events = raw.send(frame(PRIORITY, 0, 1, b"\0" * 4))  # an open stream: only it is reset
    assert [full(e) for e in events] == [("StreamReset", 1, E.FRAME_SIZE_ERROR)]
    assert rsts(raw.out()) == [(1, E.FRAME_SIZE_ERROR)]
    expect_connection_error(raw.p, frame(PRIORITY, 0, 9, b"\0" * 6), E.FRAME_SIZE_ERROR)  # idle: no RST there


def test_padded_headers_with_priority() -> None:
    raw = Raw()
    block = raw.block(REQUEST)
    body = bytes((7,)) + b"\x80\0\0\0\x0f" + block + b"\0" * 7
    events = raw.send(frame(HEADERS, END_HEADERS | PADDED | PRIO, 1, body))
    assert [full(e) for e in events] == [("RequestReceived", 1, REQUEST, False)]
    data = bytes((3,)) + b"abc" + b"\0\0\0"
    events = raw.send(frame(DATA, END_STREAM | PADDED, 1, data))
    assert [full(e) for e in events] == [("DataReceived", 1, b"abc", 7), ("StreamEnded", 1)]
    raw.headers(3, REQUEST)
    expect_connection_error(raw.p, frame(DATA, PADDED, 3, b""))  # no room for the pad length


def test_unknown_frames_and_settings_are_ignored() -> None:
    raw = Raw()
    assert raw.send(frame(0x42, 0xFF, 1, b"extension")) == []
    events = raw.send(frame(SETTINGS, 0, 0, b"\0\x42\0\0\0\1" + b"\0\3\0\0\0\x10"))
    assert [full(e) for e in events] == [("RemoteSettingsChanged", ((3, 16),))]
    assert [f for f in parse(raw.out()) if isinstance(f, hf.SettingsFrame) and "ACK" in f.flags]


def test_decreasing_or_reused_stream_id_is_a_connection_error() -> None:
    # RFC 9113 5.1.1: a new stream's id must exceed every id the peer used before
    raw = Raw()
    raw.headers(5, REQUEST)
    with pytest.raises(h2p.H2ProtocolError) as info:
        raw.headers(3, REQUEST, END_HEADERS | END_STREAM)
    assert info.value.error_code in (E.PROTOCOL_ERROR, E.STREAM_CLOSED)
    goaway_last(raw.out())
    raw = Raw()
    raw.headers(1, REQUEST, END_HEADERS | END_STREAM)
    raw.p.send_headers(1, triples([*RESPONSE, *TRAILERS]), end_stream=True)
    with pytest.raises(h2p.H2ProtocolError):
        raw.headers(1, REQUEST, END_HEADERS | END_STREAM)


def test_streams_ignored_after_our_goaway_stay_ignored() -> None:
    raw = Raw()
    raw.headers(1, REQUEST)
    raw.p.close_connection()
    assert goaway_last(raw.out()).last_stream_id == 1
    # stream 3 was in flight when we said GOAWAY: it is ignored, all of it
    assert raw.headers(3, REQUEST) == []
    raw.headers(3, TRAILERS, END_HEADERS | END_STREAM)
    raw.send(frame(DATA, 0, 3, b"x"))
    # and stream 1 drains normally
    assert kinds(raw.send(frame(DATA, END_STREAM, 1, b"last"))) == ["DataReceived", "StreamEnded"]


# -- what we send --


def test_send_data_beyond_window_or_frame_size() -> None:
    p = our_client(streams=1)
    with pytest.raises(h2p.FlowControlError):
        p.send_data(1, b"x" * 16385)  # over the peer's frame size, though inside the window
    for _ in range(3):
        p.send_data(1, b"x" * 16384)
    p.send_data(1, b"x" * 16383)
    assert p.local_flow_control_window(1) == 0
    with pytest.raises(h2p.FlowControlError):
        p.send_data(1, b"x")
    assert p.local_flow_control_window(1) == 0
    p.send_data(1, b"", end_stream=True)  # an empty END_STREAM needs no window
    frames = of(parse(p.data_to_send()), hf.DataFrame)
    assert [len(f.data) for f in frames] == [16384, 16384, 16384, 16383, 0]
    assert "END_STREAM" in frames[-1].flags


def test_sending_on_closed_streams_raises() -> None:
    p = our_client(streams=2)
    p.end_stream(1)
    with pytest.raises(h2p.StreamClosedError):
        p.send_data(1, b"x")
    with pytest.raises(h2p.StreamClosedError):
        p.send_headers(1, triples(TRAILERS), end_stream=True)
    p.reset_stream(3)
    for action in (
        lambda: p.send_data(3, b"x"),
        lambda: p.local_flow_control_window(3),
        lambda: p.reset_stream(3),
        lambda: p.send_data(99, b"x"),
        lambda: p.send_headers(99, triples(REQUEST)),  # not the next stream id
    ):
        with pytest.raises(h2p.StreamClosedError):
            action()
    # the peer reset: the stream is gone for sending
    p.send_headers(5, triples(REQUEST))
    p.receive_data(frame(RST, 0, 5, b"\0\0\0\x02"))
    with pytest.raises(h2p.StreamClosedError):
        p.send_data(5, b"x")
    # a server never opens streams
    s = our_server()
    with pytest.raises(h2p.StreamClosedError):
        s.send_headers(2, triples(RESPONSE))


def test_increment_flow_control_window_bounds() -> None:
    p = our_server()
    with pytest.raises(ValueError):
        p.increment_flow_control_window(0)
    p.increment_flow_control_window(2**31 - 1 - 65535)
    with pytest.raises(ValueError):
        p.increment_flow_control_window(1)
