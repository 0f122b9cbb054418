"""Our HTTP/2 connection (``trimicro.transport._http2``) against ``h2``'s, with bytes handed between
the objects directly:

- interop: our client against ``h2``'s server and ``h2``'s client against our server, for whole
  gRPC-shaped exchanges (flow control, CONTINUATION, padding, priorities, HPACK's dynamic table,
  settings changes mid-connection, RST_STREAM, PING, GOAWAY);
- hypothesis: random stream operations keep both ends in agreement.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame as hf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trimicro.transport import _http2 as h2p

from ._support import (
    BIG,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    REQUEST,
    RESPONSE,
    SC,
    TRAILERS,
    E,
    Side,
    assert_call,
    both,
    call,
    connect,
    exchange,
    frame,
    h2_of,
    of,
    ours_of,
    parse,
    payload,
    prop,
)

# ===================================================================== interop with h2


@both
def test_handshake_exchanges_settings(our_client: bool) -> None:
    client, server = connect(our_client, "driver")
    mine, peer = ours_of(client, server), h2_of(client, server)
    # h2 applied what we announced
    assert peer.conn.remote_settings.initial_window_size == 1 << 20
    assert peer.conn.remote_settings.max_frame_size == 1 << 20
    assert peer.conn.remote_settings.max_header_list_size == 64 * 1024
    assert peer.conn.outbound_flow_control_window == 2**31 - 1
    # and we what h2 announced (h2 sends MAX_CONCURRENT_STREAMS 100, MAX_HEADER_LIST_SIZE 64 KiB)
    assert mine.conn.remote_settings.max_concurrent_streams == 100
    assert mine.conn.remote_settings.max_header_list_size == 65536
    changed = [e for e in mine.raw_events if isinstance(e, h2p.RemoteSettingsChanged)]
    assert changed and changed[0].changed[h2p.Settings.MAX_CONCURRENT_STREAMS] == 100
    # both acknowledged: h2 saw our ACK, and our first output after the preface is SETTINGS
    assert any(isinstance(e, h2.events.SettingsAcknowledged) for e in peer.raw_events)
    first = parse(mine.wire[0])
    assert isinstance(first[0], hf.SettingsFrame) and "ACK" not in first[0].flags
    assert mine.wire[0].startswith(h2p.PREFACE) == our_client


SIZES = [0, 1, 5, 16383, 16384, 16385, 65535, 65536, 65537, 200 * 1024]


@both
@pytest.mark.parametrize("cfg", ["default", "driver"])
@pytest.mark.parametrize("size", SIZES)
def test_unary_call(our_client: bool, cfg: str, size: int) -> None:
    client, server = connect(our_client, cfg)
    req, resp = payload(1, 0, size), payload(1, 1, size + 7)
    sid = call(client, server, req, resp)
    assert_call(client, server, sid, req, resp)
    # every DATA frame respected the receiver's frame size, and windows were handed back
    for side, peer in ((client, server), (server, client)):
        limit = peer.conn.local_settings.max_frame_size
        assert all(len(f.data) <= limit for f in of(parse(b"".join(side.wire)), hf.DataFrame))
    mine = ours_of(client, server)
    assert not mine.conn.streams and mine.conn.open_inbound_streams == mine.conn.open_outbound_streams == 0
    if cfg == "default" and size > 65535:  # we handed window back as the data was consumed
        assert of(parse(b"".join(mine.wire)), hf.WindowUpdateFrame)
    # a second call on the same connection works as well (the windows were returned)
    sid2 = call(client, server, resp, req)
    assert_call(client, server, sid2, resp, req)


@both
def test_streaming_both_ways_interleaved(our_client: bool) -> None:
    client, server = connect(our_client)
    sid = client.conn.get_next_available_stream_id()
    client.headers(sid, REQUEST)
    exchange(client, server)
    server.headers(sid, RESPONSE)
    sent = {True: b"", False: b""}
    rnd = random.Random(1)
    for i in range(30):
        who = rnd.random() < 0.5
        chunk = payload(sid, i, rnd.choice([0, 1, 100, 5000, 20000, 70000]))
        (client if who else server).send(sid, chunk)
        sent[who] += chunk
        if i % 3 == 0:
            exchange(client, server)
    client.send(sid, end=True)
    server.send(sid, trailers=TRAILERS)
    exchange(client, server)
    assert bytes(server.body[sid]) == sent[True]
    assert bytes(client.body[sid]) == sent[False]
    assert client.story(sid)[-2:] == [("TrailersReceived", sid, tuple(TRAILERS)), ("StreamEnded", sid)]
    assert server.story(sid)[-1] == ("StreamEnded", sid)


@both
def test_trailers_only_response(our_client: bool) -> None:
    client, server = connect(our_client)
    sid = client.conn.get_next_available_stream_id()
    client.headers(sid, REQUEST)
    client.send(sid, b"\0\0\0\0\0", end=True)
    exchange(client, server)
    only = [*RESPONSE, ("grpc-status", "12"), ("grpc-message", "unimplemented: no such method")]
    server.headers(sid, only, end=True)
    exchange(client, server)
    assert client.story(sid) == [("ResponseReceived", sid, tuple(only)), ("StreamEnded", sid)]
    ev = next(e for e in client.raw_events if type(e).__name__ == "ResponseReceived")
    assert ev.stream_ended
    assert not ours_of(client, server).conn.streams


@both
@pytest.mark.parametrize("resetter", ["client", "server"])
def test_reset_stream_both_ways(our_client: bool, resetter: str) -> None:
    client, server = connect(our_client)
    sid = client.conn.get_next_available_stream_id()
    client.headers(sid, REQUEST)
    client.send(sid, payload(sid, 0, 1000))
    exchange(client, server)
    server.headers(sid, RESPONSE)
    server.send(sid, payload(sid, 1, 1000))
    exchange(client, server)
    me, other = (client, server) if resetter == "client" else (server, client)
    # data already queued by the other side crosses the RST: it must be dropped quietly
    other.conn.send_data(sid, b"in flight")
    me.reset(sid, E.CANCEL if resetter == "client" else E.INTERNAL_ERROR)
    exchange(client, server)
    code = E.CANCEL if resetter == "client" else E.INTERNAL_ERROR
    assert ("StreamReset", sid, code) in other.events
    assert not any(e[0] == "StreamReset" for e in me.events)  # no RST back for the in-flight DATA
    assert other.story(sid)[-1] == ("StreamReset", sid, code)
    mine = ours_of(client, server)
    with pytest.raises(h2p.StreamClosedError):
        mine.conn.send_data(sid, b"x")
    with pytest.raises(h2p.StreamClosedError):
        mine.conn.local_flow_control_window(sid)
    # the connection carries on
    sid2 = call(client, server, b"after", b"reset")
    assert_call(client, server, sid2, b"after", b"reset")


@both
def test_ping_is_answered(our_client: bool) -> None:
    client, server = connect(our_client)
    peer = h2_of(client, server)
    peer.conn.ping(b"12345678")
    exchange(client, server)
    assert ("PingAckReceived", 0, b"12345678") in peer.events
    ack = [f for f in of(parse(b"".join(ours_of(client, server).wire)), hf.PingFrame) if "ACK" in f.flags]
    assert [f.opaque_data for f in ack] == [b"12345678"]


@both
def test_goaway_from_h2(our_client: bool) -> None:
    client, server = connect(our_client)
    sid = call(client, server, b"q", b"a")
    peer = h2_of(client, server)
    peer.conn.close_connection(error_code=E.ENHANCE_YOUR_CALM, additional_data=b"calm down")
    exchange(client, server)
    mine = ours_of(client, server)
    last = sid if peer is server else 0
    assert mine.events[-1] == ("ConnectionTerminated", 0, E.ENHANCE_YOUR_CALM, last, b"calm down")


def test_goaway_from_our_server_names_the_last_stream() -> None:
    client, server = connect(our_client=False)
    call(client, server, b"1", b"1")
    sid = call(client, server, b"2", b"2")
    server.conn.close_connection(E.NO_ERROR, b"shutting down")
    exchange(client, server)
    assert client.events[-1] == ("ConnectionTerminated", 0, 0, sid, b"shutting down")
    assert server.conn.closed
    # a HEADERS opening a stream after our GOAWAY is ignored (RFC 9113 6.8)
    late = frame(HEADERS, END_HEADERS | END_STREAM, sid + 2, client.conn.encoder.encode(REQUEST))
    assert server.conn.receive_data(late) == []


def test_goaway_from_our_client() -> None:
    client, server = connect(our_client=True)
    client.conn.close_connection(E.NO_ERROR)
    exchange(client, server)
    assert server.events[-1] == ("ConnectionTerminated", 0, 0, 0, b"")
    with pytest.raises(h2p.StreamClosedError):  # no new streams once we said GOAWAY
        client.headers(client.conn.get_next_available_stream_id(), REQUEST)


@both
@pytest.mark.parametrize("cfg", ["default", "driver"])
def test_many_concurrent_streams(our_client: bool, cfg: str) -> None:
    client, server = connect(our_client, cfg)
    rnd = random.Random(7)
    sids, reqs, resps = [], {}, {}
    for i in range(60):
        sid = client.conn.get_next_available_stream_id()
        sids.append(sid)
        reqs[sid] = payload(sid, 0, rnd.choice([0, 10, 3000, 17000, 40000]))
        client.headers(sid, [*REQUEST, ("x-call", str(i))])
        client.send(sid, reqs[sid], end=True)
    exchange(client, server)  # interleaved: every stream's data goes out as windows allow
    for sid in sids:
        server.headers(sid, RESPONSE)
        resps[sid] = payload(sid, 1, rnd.choice([0, 10, 3000, 17000, 40000]))
        server.send(sid, resps[sid], trailers=TRAILERS)
    exchange(client, server)
    for i, sid in enumerate(sids):
        assert_call(client, server, sid, reqs[sid], resps[sid], extra=[("x-call", str(i))])
    mine = ours_of(client, server)
    assert not mine.conn.streams


@both
@pytest.mark.parametrize("where", ["request", "response", "trailers"])
def test_header_block_larger_than_a_frame(our_client: bool, where: str) -> None:
    client, server = connect(our_client)
    big = [("x-big", BIG), ("x-big-2", BIG[::-1])]
    req = REQUEST + (big if where == "request" else [])
    resp = RESPONSE + (big if where == "response" else [])
    trailers = TRAILERS + (big if where == "trailers" else [])
    sid = client.conn.get_next_available_stream_id()
    client.headers(sid, req)
    client.send(sid, b"ping", end=True)
    exchange(client, server)
    server.headers(sid, resp)
    server.send(sid, b"pong", trailers=trailers)
    exchange(client, server)
    assert server.story(sid)[0] == ("RequestReceived", sid, tuple(req))
    assert client.story(sid) == [
        ("ResponseReceived", sid, tuple(resp)),
        ("DataReceived", sid, b"pong"),
        ("TrailersReceived", sid, tuple(trailers)),
        ("StreamEnded", sid),
    ]
    sender = client if where == "request" else server
    frames = parse(b"".join(sender.wire))
    conts = of(frames, hf.ContinuationFrame)
    assert len(conts) >= 2 and "END_HEADERS" in conts[-1].flags
    assert all(len(f.data) <= 16384 for f in of(frames, hf.HeadersFrame) + conts)


@both
@pytest.mark.parametrize("size", [0, 256])
def test_peer_shrinks_header_table_mid_connection(our_client: bool, size: int) -> None:
    """h2 announces a smaller HPACK table: its decoder then insists the next block says so."""
    client, server = connect(our_client)
    call(client, server, b"a", b"b")
    h2_of(client, server).conn.update_settings({SC.HEADER_TABLE_SIZE: size})
    exchange(client, server)
    for _ in range(3):
        sid = call(client, server, b"c", b"d", extra=[("x-long", "v" * 300)])
        assert_call(client, server, sid, b"c", b"d", extra=[("x-long", "v" * 300)])


@both
def test_peer_changes_max_frame_size_mid_connection(our_client: bool) -> None:
    client, server = connect(
        our_client, "driver", theirs={SC.MAX_FRAME_SIZE: 65536, SC.INITIAL_WINDOW_SIZE: 1 << 20}
    )
    mine = ours_of(client, server)
    big = payload(1, 0, 300_000)
    h2_of(client, server).conn.increment_flow_control_window(1 << 24)
    sid = call(client, server, big, big)
    assert_call(client, server, sid, big, big)
    sizes = [len(f.data) for f in of(parse(b"".join(mine.wire)), hf.DataFrame)]
    assert max(sizes) == 65536
    h2_of(client, server).conn.update_settings({SC.MAX_FRAME_SIZE: 16384})
    exchange(client, server)
    n = len(mine.wire)
    extra = [("x-big", BIG)]
    sid = call(client, server, big, big, extra=extra)
    assert_call(client, server, sid, big, big, extra=extra)
    frames = parse(b"".join(mine.wire[n:]))
    assert max(len(f.data) for f in of(frames, hf.DataFrame)) == 16384
    assert of(frames, hf.ContinuationFrame) or our_client is False


@both
def test_peer_changes_initial_window_mid_stream(our_client: bool) -> None:
    """A smaller INITIAL_WINDOW_SIZE may drive our stream's window negative; a larger one reopens it."""
    client, server = connect(our_client)
    mine, peer = ours_of(client, server), h2_of(client, server)
    sid = client.conn.get_next_available_stream_id()
    client.headers(sid, REQUEST)
    exchange(client, server)
    server.headers(sid, RESPONSE)
    exchange(client, server)
    # ours has sent 60000 unacknowledged bytes when h2 shrinks every stream window to 1000
    peer.auto_ack = False
    body = payload(sid, 0, 60000)
    mine.send(sid, body)
    exchange(client, server)
    assert mine.conn.local_flow_control_window(sid) == 65535 - 60000
    peer.conn.update_settings({SC.INITIAL_WINDOW_SIZE: 1000})
    exchange(client, server)
    assert mine.conn.local_flow_control_window(sid) == 1000 - 60000
    with pytest.raises(h2p.FlowControlError):
        mine.conn.send_data(sid, b"x")
    more = payload(sid, 1, 50000)
    mine.send(sid, more)
    peer.auto_ack = True
    peer.ack_all()
    exchange(client, server)  # trickles through 1000-byte windows
    peer.conn.update_settings({SC.INITIAL_WINDOW_SIZE: 0})
    exchange(client, server)
    tail = payload(sid, 2, 3000)
    mine.send(sid, tail)
    exchange(client, server)
    assert bytes(peer.body[sid]) == body + more  # a zero window: the tail waits
    peer.conn.update_settings({SC.INITIAL_WINDOW_SIZE: 65535})
    exchange(client, server)
    assert bytes(peer.body[sid]) == body + more + tail
    # new streams start with the new initial window
    sid2 = call(client, server, payload(3, 0, 100000), payload(3, 1, 100000))
    assert_call(client, server, sid2, payload(3, 0, 100000), payload(3, 1, 100000))


@both
@pytest.mark.parametrize("pad", [0, 1, 200, 255])
def test_padded_data_from_h2(our_client: bool, pad: int) -> None:
    client, server = connect(our_client, pad=pad)
    req, resp = payload(1, 0, 150_000), payload(1, 1, 150_000)
    sid = call(client, server, req, resp)  # stalls unless padding counts against and returns windows
    assert_call(client, server, sid, req, resp)
    mine = ours_of(client, server)
    got = [e for e in mine.raw_events if isinstance(e, h2p.DataReceived)]
    assert all(e.flow_controlled_length == len(e.data) + pad + 1 for e in got)
    assert all(f.pad_length == pad for f in of(parse(b"".join(h2_of(client, server).wire)), hf.DataFrame))


def test_priority_from_h2_is_ignored() -> None:
    client, server = connect(our_client=False)
    sid = client.conn.get_next_available_stream_id()
    client.conn.send_headers(
        sid, REQUEST, priority_weight=200, priority_depends_on=0, priority_exclusive=True
    )
    client.conn.prioritize(sid, weight=10)
    client.conn.prioritize(sid + 2, weight=10)  # PRIORITY on an idle stream is allowed too
    client.send(sid, b"body", end=True)
    exchange(client, server)
    frames = parse(b"".join(client.wire))
    assert "PRIORITY" in of(frames, hf.HeadersFrame)[0].flags and len(of(frames, hf.PriorityFrame)) == 2
    assert server.story(sid) == [
        ("RequestReceived", sid, tuple(REQUEST)),
        ("DataReceived", sid, b"body"),
        ("StreamEnded", sid),
    ]
    sid2 = call(client, server, b"x", b"y")
    assert_call(client, server, sid2, b"x", b"y")


@both
def test_dynamic_table_of_h2_tracked(our_client: bool) -> None:
    """h2 indexes what it sends: our decoder must follow its table, evictions included."""
    client, server = connect(our_client)
    peer = h2_of(client, server)
    rnd = random.Random(3)
    stable = [("x-tenant", "acme"), ("x-trace", "t" * 100)]
    for i in range(40):
        # some repeated, some new every time (evicting older entries from the 4 KiB table)
        extra = [*stable, ("x-request-id", f"{rnd.getrandbits(64):x}")]
        if i % 2:
            extra.append(("x-blob", "b" * rnd.randrange(50, 900)))
        sid = client.conn.get_next_available_stream_id()
        client.headers(sid, REQUEST + extra)
        client.send(sid, b"q", end=True)
        exchange(client, server)
        server.headers(sid, RESPONSE + extra)
        server.send(sid, b"a", trailers=[*TRAILERS, *extra])
        exchange(client, server)
        assert server.story(sid)[0] == ("RequestReceived", sid, tuple(REQUEST + extra))
        assert client.story(sid) == [
            ("ResponseReceived", sid, tuple(RESPONSE + extra)),
            ("DataReceived", sid, b"a"),
            ("TrailersReceived", sid, (*TRAILERS, *extra)),
            ("StreamEnded", sid),
        ]
    # h2 really did use its table: without it x-trace alone takes 60+ bytes (Huffman) in every block
    blocks = [len(f.data) for f in of(parse(b"".join(peer.wire)), hf.HeadersFrame)]
    assert min(blocks) < 60


def test_informational_response_is_skipped() -> None:
    client, server = connect(our_client=True)
    sid = client.conn.get_next_available_stream_id()
    client.headers(sid, REQUEST)
    client.send(sid, b"q", end=True)
    exchange(client, server)
    server.headers(sid, [(":status", "100")])
    server.headers(sid, RESPONSE)
    server.send(sid, b"a", trailers=TRAILERS)
    exchange(client, server)
    assert_call(client, server, sid, b"q", b"a")


# ===================================================================== hypothesis: agreement


class Model:
    """Random stream operations between a client and a server (one ours, one h2), with
    acknowledgements withheld until asked for, then everything delivered and checked."""

    def __init__(self, our_client: bool) -> None:
        self.client, self.server = connect(our_client, auto_ack=False)
        self.sids: list[int] = []
        self.sent: dict[tuple[bool, int], bytearray] = defaultdict(bytearray)
        self.ended: set[tuple[bool, int]] = set()
        self.answered: set[int] = set()

    def side(self, is_client: bool) -> Side:
        return self.client if is_client else self.server

    def known(self, is_client: bool, sid: int) -> bool:
        """The stream exists on this side: the client opened it, the server answered it."""
        return is_client or sid in self.answered

    def step(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind == "open":
            if len(self.sids) < 30:
                sid = self.client.conn.get_next_available_stream_id()
                self.client.headers(sid, REQUEST, end=op[1])
                self.sids.append(sid)
                if op[1]:
                    self.ended.add((True, sid))
            return
        if kind == "pump":
            for _ in range(op[1]):
                self.pump()
            return
        if not self.sids:
            return
        is_client, sid = op[1], self.sids[op[2] % len(self.sids)]
        s, key = self.side(is_client), (op[1], self.sids[op[2] % len(self.sids)])
        if kind == "ack":
            n = min(op[3], s.unacked[sid])
            s.ack(sid, n)
            s.unacked[sid] -= n
            return
        if not self.known(is_client, sid) or sid in s.resets:
            return
        if kind == "reset":
            try:
                s.reset(sid, E.CANCEL)
            except s.closed_errors:
                # only a stream both halves of which ended may be closed here already
                assert ("StreamEnded", sid) in s.events and key in self.ended and sid not in s.outq
            return
        if key in self.ended:
            return
        if kind == "data":
            chunk = payload(sid + is_client, len(self.sent[key]), op[3])
            s.send(sid, chunk)
            self.sent[key] += chunk
        elif kind == "end":
            s.send(sid, end=True, trailers=None if is_client else TRAILERS)
            self.ended.add(key)

    def answer(self) -> bool:
        """The server answers every request it has seen with response headers."""
        answered = False
        for e in self.server.events:
            if e[0] == "RequestReceived" and e[1] not in self.answered:
                self.answered.add(e[1])
                if e[1] not in self.server.resets:
                    self.server.headers(e[1], RESPONSE)
                    answered = True
        return answered

    def pump(self) -> None:
        self.client.flush()
        self.server.flush()
        for src, dst in ((self.client, self.server), (self.server, self.client)):
            out = src.conn.data_to_send()
            if out:
                dst.feed(out)
        self.answer()

    def finish(self) -> None:
        self.client.auto_ack = self.server.auto_ack = True
        self.client.ack_all()
        self.server.ack_all()
        exchange(self.client, self.server)
        while self.answer():
            exchange(self.client, self.server)
        reset = self.client.resets | self.server.resets
        for s in (self.client, self.server):
            assert s.refused <= reset, "a library refused to send on a stream nobody reset"
            assert not s.outq, "output stuck behind flow control"
        for (is_client, sid), sent in self.sent.items():
            got = bytes(self.side(not is_client).body[sid])
            if sid in reset:
                assert bytes(sent).startswith(got)
            else:
                assert got == bytes(sent), (is_client, sid, len(got), len(sent))
        for is_client, sid in self.ended:
            if sid not in reset:
                assert ("StreamEnded", sid) in self.side(not is_client).events
        mine = ours_of(self.client, self.server)
        open_ids = {sid for sid in self.sids if sid not in reset}
        open_ids -= {sid for sid in self.sids if (True, sid) in self.ended and (False, sid) in self.ended}
        assert set(mine.conn.streams) == open_ids


sizes = st.one_of(
    st.integers(0, 100), st.integers(0, 20000), st.sampled_from([16383, 16384, 16385, 65535, 65536])
)
data_op = st.tuples(st.just("data"), st.booleans(), st.integers(0, 63), sizes)
stream_ops = st.tuples(
    st.lists(st.tuples(st.just("open"), st.just(False)), min_size=1, max_size=4),
    st.lists(
        st.one_of(
            data_op,
            data_op,
            data_op,
            st.tuples(st.just("open"), st.booleans()),
            st.tuples(st.just("end"), st.booleans(), st.integers(0, 63)),
            st.tuples(st.just("reset"), st.booleans(), st.integers(0, 63)),
            st.tuples(st.just("ack"), st.booleans(), st.integers(0, 63), st.integers(0, 70000)),
            st.tuples(st.just("pump"), st.integers(1, 3)),
        ),
        min_size=5,
        max_size=50,
    ),
).map(lambda t: t[0] + t[1])


@both
@settings(prop, max_examples=80)
@given(ops=stream_ops)
def test_random_stream_operations_agree(our_client: bool, ops: list[tuple[Any, ...]]) -> None:
    m = Model(our_client)
    for op in ops:
        m.step(op)
    m.finish()
