"""Hostile input to our HTTP/2 connection (``trimicro.transport._http2``), by hypothesis: any input
raises nothing but ``H2ProtocolError`` (with a GOAWAY queued), and splitting the input anywhere
changes no event.
"""

from __future__ import annotations

import struct
from typing import Any

import hpack
import hpack.table
from hypothesis import given
from hypothesis import strategies as st

from trimicro.transport import _http2 as h2p

from ._support import (
    BIG,
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
    REQUEST,
    RESPONSE,
    RST,
    SC,
    SETTINGS,
    TRAILERS,
    WUPDATE,
    E,
    connect,
    exchange,
    feed_checked,
    frame,
    full,
    our_client,
    our_server,
    payload,
    prop,
    triples,
)

# ===================================================================== hypothesis: hostile input


field_lists = st.lists(
    st.tuples(
        st.sampled_from(
            [":method", ":path", ":scheme", ":status", ":authority", "te", "content-type", "x-a", "X-B"]
        ),
        st.sampled_from(["POST", "/a", "http", "200", "trailers", "gzip", "", "a\nb", "application/grpc"]),
    ),
    max_size=6,
)
#: mostly plausible header lists, so that streams get opened, answered and ended
header_lists = st.one_of(
    st.sampled_from([REQUEST, RESPONSE, TRAILERS, [*RESPONSE, *TRAILERS], [(":status", "100")]]),
    field_lists,
)
#: frame types weighted toward what streams are made of
frame_types = st.sampled_from([DATA] * 4 + [HEADERS] * 4 + [WUPDATE] * 2 + list(range(11)) + [0x42])
FLAGS = {
    DATA: [0, END_STREAM, PADDED, PADDED | END_STREAM],
    HEADERS: [END_HEADERS, END_HEADERS | END_STREAM, 0, END_STREAM, END_HEADERS | PADDED | PRIO],
    CONT: [END_HEADERS, 0],
    SETTINGS: [0, 0, 1],
    PING: [0, 1],
}


#: True one time in eight (shrinking toward False, the plausible choice)
rarely = st.sampled_from([False] * 7 + [True])


@st.composite
def hostile_frame(draw: Any, encoder: hpack.Encoder) -> bytes:
    """A frame that is mostly well-formed and plausible, with any field possibly wrong."""
    ftype = draw(frame_types)
    flags = draw(st.sampled_from(FLAGS.get(ftype, [0])))
    if draw(rarely):
        flags = draw(st.integers(0, 255))
    default_sid = 0 if ftype in (SETTINGS, PING, GOAWAY) else draw(st.sampled_from([1, 1, 3, 3, 5, 7]))
    sid = draw(st.sampled_from([0, 2, 99, 2**31 - 1, 2**31 + 1]))
    if not draw(rarely):
        sid = default_sid
    if ftype in (HEADERS, CONT):
        body = encoder.encode(draw(header_lists))
        if ftype == HEADERS and flags & PRIO:
            body = draw(st.sampled_from([b"\0\0\0\0\x10", b"\x80\0\0\x01\xff", b""])) + body
    elif ftype == DATA:
        body = draw(st.one_of(st.binary(max_size=30), st.integers(0, 70000).map(lambda n: b"d" * n)))
    elif ftype == SETTINGS:
        values = st.sampled_from([0, 1, 2, 100, 16383, 16384, 65535, 70000, 2**24, 2**31 - 1, 2**31])
        body = b"".join(
            struct.pack(">HL", k, v)
            for k, v in draw(st.lists(st.tuples(st.integers(0, 8), values), max_size=4))
        )
        body = b"" if flags & 1 and draw(st.booleans()) else body
    elif ftype in (WUPDATE, RST):
        body = struct.pack(">L", draw(st.sampled_from([0, 1, 8, 65535, 2**31 - 1, 2**31, 2**32 - 1])))
    elif ftype == PING:
        body = b"12345678"
    elif ftype == GOAWAY:
        body = struct.pack(">LL", draw(st.sampled_from([0, 1, 3, 2**31 - 1])), draw(st.integers(0, 14)))
    elif ftype == PRIORITY:
        body = b"\0\0\0\x01\x10"
    else:
        body = draw(st.binary(max_size=20))
    if flags & PADDED and ftype in (DATA, HEADERS):
        body = bytes((draw(st.integers(0, 12)),)) + body + b"\0" * draw(st.integers(0, 12))
    if draw(rarely):  # a body that does not fit its type
        body = draw(st.binary(max_size=40))
    if draw(rarely):  # a length field that lies
        length = draw(st.integers(0, 2**24 - 1))
        return struct.pack(">L", length)[1:] + bytes((ftype, flags)) + struct.pack(">L", sid) + body
    return frame(ftype, flags, sid, body)


@prop
@given(data=st.data(), client=st.booleans())
def test_hostile_frames_raise_only_protocol_error(data: Any, client: bool) -> None:
    enc = hpack.Encoder()
    if client:
        p = our_client(streams=5, initial_window_size=100_000, max_frame_size=1 << 17)
    else:
        p = our_server(max_concurrent_streams=3, initial_window_size=100_000, max_frame_size=1 << 17)
        # two requests already open, their HPACK table state shared with what follows
        p.receive_data(frame(HEADERS, END_HEADERS, 1, enc.encode(REQUEST)))
        p.receive_data(frame(HEADERS, END_HEADERS, 3, enc.encode([*REQUEST, ("x-a", "b")])))
        p.data_to_send()
    frames = data.draw(st.lists(hostile_frame(enc), max_size=25))
    feed_checked(p, frames)


@prop
@given(blob=st.binary(max_size=200), after_preface=st.booleans(), client=st.booleans())
def test_arbitrary_bytes_raise_only_protocol_error(blob: bytes, after_preface: bool, client: bool) -> None:
    if client:
        p = h2p.H2Protocol(client_side=True)
        p.initiate_connection()
        p.data_to_send()
        feed_checked(p, [frame(SETTINGS, 0, 0) + blob] if after_preface else [blob])
    else:
        p = h2p.H2Protocol(client_side=False)
        p.initiate_connection()
        p.data_to_send()
        feed_checked(p, [h2p.PREFACE + frame(SETTINGS, 0, 0) + blob] if after_preface else [blob])


def _transcript_to_our_server() -> bytes:
    """What an h2 client sends us in a busy exchange (padding, priorities, CONTINUATION, PINGs,
    resets, the dynamic table, settings changes), recorded."""
    client, server = connect(our_client=False, pad=3)
    for i in range(6):
        sid = client.conn.get_next_available_stream_id()
        extra = [("x-i", str(i)), ("x-big", BIG[: 9000 * i])]
        client.headers(sid, REQUEST + extra)
        client.send(sid, payload(sid, 0, 7000 * i), end=i != 4)
        if i == 2:
            client.conn.ping(b"abcdefgh")
        if i == 3:
            client.conn.update_settings({SC.INITIAL_WINDOW_SIZE: 30000, SC.HEADER_TABLE_SIZE: 1000})
        exchange(client, server)
        if i == 4:
            client.reset(sid)
    exchange(client, server)
    return b"".join(client.wire)


def _transcript_to_our_client() -> tuple[bytes, int]:
    client, server = connect(our_client=True, pad=2)
    n = 5
    for i in range(n):
        sid = client.conn.get_next_available_stream_id()
        client.headers(sid, REQUEST)
        client.send(sid, b"q", end=True)
    exchange(client, server)
    for i, sid in enumerate(range(1, 2 * n, 2)):
        if i == 3:
            server.reset(sid, E.REFUSED_STREAM)
            continue
        server.headers(sid, [*RESPONSE, ("x-big", BIG[: 9000 * i])])
        server.send(sid, payload(sid, 1, 30000 * i), trailers=TRAILERS)
        if i == 1:
            server.conn.ping(b"12345678")
            server.conn.update_settings({SC.MAX_FRAME_SIZE: 20000})
    exchange(client, server)
    server.conn.close_connection(0, b"bye")
    exchange(client, server)
    return b"".join(server.wire), n


TO_SERVER = _transcript_to_our_server()
TO_CLIENT, TO_CLIENT_STREAMS = _transcript_to_our_client()


def _replay(p: h2p.H2Protocol, chunks: list[bytes]) -> tuple[list[tuple[Any, ...]], bytes]:
    events, out = [], []
    for chunk in chunks:
        for ev in p.receive_data(chunk):
            events.append(full(ev))
            if isinstance(ev, h2p.DataReceived):
                p.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        out.append(p.data_to_send())
    return events, b"".join(out)


def _fresh(client: bool) -> h2p.H2Protocol:
    """A replay endpoint. Its windows are wide: it acknowledges only after each whole input, where
    the recorded one handed windows back as it went."""
    p = h2p.H2Protocol(client_side=client, initial_window_size=1 << 24)
    p.initiate_connection()
    p.increment_flow_control_window(1 << 24)
    if client:
        for _ in range(TO_CLIENT_STREAMS):
            sid = p.get_next_available_stream_id()
            p.send_headers(sid, triples(REQUEST))
            p.send_data(sid, b"q", end_stream=True)
    p.data_to_send()
    return p


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def test_transcripts_replay_cleanly() -> None:
    for client, data in ((False, TO_SERVER), (True, TO_CLIENT)):
        events, _ = _replay(_fresh(client), [data])
        names = {e[0] for e in events}
        assert {"DataReceived", "StreamEnded", "StreamReset", "RemoteSettingsChanged"} <= names, names
        assert ("RequestReceived" if not client else "TrailersReceived") in names


@prop
@given(cuts=st.lists(st.integers(0, 2**20), max_size=40), client=st.booleans(), small=st.booleans())
def test_split_input_gives_the_same_events(cuts: list[int], client: bool, small: bool) -> None:
    data = TO_CLIENT if client else TO_SERVER
    if small:  # concentrate the cuts on the first few frames (preface, SETTINGS, HEADERS)
        cuts = [c % 200 for c in cuts]
    whole = _replay(_fresh(client), [data])
    split = _replay(_fresh(client), _cut(data, cuts))
    assert split == whole


def test_byte_at_a_time_gives_the_same_events() -> None:
    for client, data in ((False, TO_SERVER[:60000]), (True, TO_CLIENT[:60000])):
        whole = _replay(_fresh(client), [data])
        split = _replay(_fresh(client), [data[i : i + 1] for i in range(len(data))])
        assert split == whole


@prop
@given(data=st.data(), client=st.booleans())
def test_mutated_transcripts_raise_only_protocol_error(data: Any, client: bool) -> None:
    blob = bytearray((TO_CLIENT if client else TO_SERVER)[:20000])
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        how = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if how == "flip":
            blob[pos] ^= data.draw(st.integers(1, 255))
        elif how == "insert":
            blob[pos:pos] = data.draw(st.binary(min_size=1, max_size=9))
        else:
            del blob[pos : pos + data.draw(st.integers(1, 9))]
    p = _fresh(client)
    feed_checked(p, _cut(bytes(blob), data.draw(st.lists(st.integers(0, 2**20), max_size=5))))
