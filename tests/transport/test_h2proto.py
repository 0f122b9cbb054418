"""The sans-IO HTTP/2 module (``trimicro.transport._h2proto``) without any I/O: bytes are handed
between objects directly.

- Interop: our client against ``h2``'s server and ``h2``'s client against our server, for whole
  gRPC-shaped exchanges (flow control, CONTINUATION, padding, priorities, HPACK's dynamic table,
  settings changes mid-connection, RST_STREAM, PING, GOAWAY).
- Hypothesis: random stream operations keep both ends in agreement; any input raises nothing but
  ``ProtocolError`` (with a GOAWAY queued); splitting the input anywhere changes no event.
- Direct RFC 9113 checks with frames built byte by byte here (and HPACK blocks by ``hpack``), our
  output parsed by ``hyperframe``: independent of the code under test on both sides.
"""

from __future__ import annotations

import random
import struct
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
import hpack.table
import hyperframe.frame as hf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trimicro.transport import _http2 as h2p
from trimicro.transport._http2 import encode_header

prop = settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow], deadline=None)

SC = h2.settings.SettingCodes
E = h2p.ErrorCode
REQUEST = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/greeter.Greeter/SayHello"),
    (":authority", "127.0.0.1:50051"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
    ("grpc-timeout", "5S"),
    ("user-agent", "trimicro-test/1.0"),
]
RESPONSE = [(":status", "200"), ("content-type", "application/grpc")]
TRAILERS = [("grpc-status", "0"), ("grpc-message", "")]
SENSITIVE = {"authorization"}
#: payload bytes: a slice's content depends on where it starts, so loss or reordering shows
BLOB = random.Random(9113).randbytes(1 << 20)


def payload(sid: int, offset: int, n: int) -> bytes:
    start = (sid * 7919 + offset * 13) % (len(BLOB) - n)
    return BLOB[start : start + n]


# -- frames by hand, and our output parsed by hyperframe --


def frame(ftype: int, flags: int, sid: int, body: bytes = b"") -> bytes:
    return struct.pack(">L", len(body))[1:] + bytes((ftype, flags)) + struct.pack(">L", sid) + body


DATA, HEADERS, PRIORITY, RST, SETTINGS, PUSH, PING, GOAWAY, WUPDATE, CONT = range(10)
END_STREAM, END_HEADERS, PADDED, PRIO = 0x1, 0x4, 0x8, 0x20


def parse(data: bytes) -> list[Any]:
    """Every frame in ``data`` (a leading client preface skipped), parsed by hyperframe."""
    out = []
    mv = memoryview(data)
    pos = len(h2p.PREFACE) if data.startswith(h2p.PREFACE) else 0
    while pos < len(data):
        assert len(data) - pos >= 9, "a truncated frame header"
        f, length = hf.Frame.parse_frame_header(mv[pos : pos + 9])
        assert len(data) - pos - 9 >= length, "a truncated frame"
        f.parse_body(mv[pos + 9 : pos + 9 + length])
        out.append(f)
        pos += 9 + length
    return out


def of(frames: list[Any], cls: type) -> list[Any]:
    return [f for f in frames if isinstance(f, cls)]


def rsts(data: bytes) -> list[tuple[int, int]]:
    return [(f.stream_id, f.error_code) for f in of(parse(data), hf.RstStreamFrame)]


def goaway_last(data: bytes) -> Any:
    frames = parse(data)
    assert frames and isinstance(frames[-1], hf.GoAwayFrame), frames
    return frames[-1]


# -- events of either library as comparable tuples (stream id second) --


def _hdrs(headers: Any) -> tuple[tuple[str, str], ...]:
    return tuple(
        (n.decode() if isinstance(n, bytes) else n, v.decode() if isinstance(v, bytes) else v)
        for n, v in headers
    )


def norm(ev: Any) -> tuple[Any, ...] | None:
    name = type(ev).__name__
    sid = getattr(ev, "stream_id", 0)
    if name in ("RequestReceived", "ResponseReceived", "TrailersReceived", "InformationalResponseReceived"):
        return (name, sid, _hdrs(ev.headers))
    if name == "DataReceived":
        return (name, sid, bytes(ev.data))
    if name == "StreamEnded":
        return (name, sid)
    if name == "StreamReset":
        return (name, sid, int(ev.error_code))
    if name == "ConnectionTerminated":
        return (name, 0, int(ev.error_code), ev.last_stream_id, bytes(ev.additional_data or b""))
    if name in ("PingAckReceived", "PingReceived"):
        return (name, 0, bytes(ev.ping_data))
    return None


def full(ev: h2p.Event) -> tuple[Any, ...]:
    """Every field of one of our events: name, stream id (if any), then the rest by slot name."""
    slots = sorted({s for cls in type(ev).__mro__ for s in getattr(cls, "__slots__", ())})
    fields = []
    for slot in slots:
        value = getattr(ev, slot)
        if isinstance(value, dict):
            value = tuple(sorted(value.items()))
        elif slot == "headers":
            value = [tuple(h) for h in value]
        fields.append(value)
    if "stream_id" in slots:
        fields.insert(0, fields.pop(slots.index("stream_id")))
    return (type(ev).__name__, *fields)


# -- one endpoint, ours or h2's, behind one interface --


def triples(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes, bool]]:
    return [(n.encode(), v.encode(), n in SENSITIVE) for n, v in headers]


class Side:
    """An endpoint with outbound DATA queued per stream until its windows allow, like the driver."""

    def __init__(self, conn: Any, *, auto_ack: bool = True, pad: int | None = None) -> None:
        self.conn = conn
        self.ours = isinstance(conn, h2p.H2Protocol)
        self.auto_ack = auto_ack
        self.pad = pad  # h2 only: pad every DATA frame by this much
        self.events: list[tuple[Any, ...]] = []
        self.raw_events: list[Any] = []
        self.body: dict[int, bytearray] = defaultdict(bytearray)
        self.unacked: dict[int, int] = defaultdict(int)
        self.outq: dict[int, list[Any]] = {}  # sid -> [bytes, trailers, end]
        self.resets: set[int] = set()  # streams reset by either side, as far as this side knows
        self.refused: set[int] = set()  # streams whose queued output the library refused
        self.wire: list[bytes] = []
        self.closed_errors: tuple[type[Exception], ...] = (
            (h2p.StreamClosedError,) if self.ours else (h2.exceptions.ProtocolError,)
        )

    def headers(self, sid: int, headers: list[tuple[str, str]], end: bool = False) -> None:
        self.conn.send_headers(sid, triples(headers) if self.ours else headers, end_stream=end)

    def send(self, sid: int, data: bytes = b"", *, end: bool = False, trailers: Any = None) -> None:
        q = self.outq.setdefault(sid, [bytearray(), None, False])
        q[0] += data
        if trailers is not None:
            q[1] = trailers
        q[2] = q[2] or end or trailers is not None

    def reset(self, sid: int, code: int = E.CANCEL) -> None:
        self.conn.reset_stream(sid, code)
        self.resets.add(sid)
        self.outq.pop(sid, None)

    def flush(self) -> bool:
        moved = False
        for sid, (buf, trailers, end) in list(self.outq.items()):
            try:
                moved |= self._flush(sid, buf, trailers, end)
            except self.closed_errors:
                self.outq.pop(sid, None)
                self.refused.add(sid)
        return moved

    def _flush(self, sid: int, buf: bytearray, trailers: Any, end: bool) -> bool:
        moved = False
        while buf:
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if self.pad is not None:
                room -= self.pad + 1
            if room <= 0:
                return moved
            n = min(room, len(buf))
            fin = end and trailers is None and n == len(buf)
            if self.pad is None:
                self.conn.send_data(sid, bytes(buf[:n]), end_stream=fin)
            else:
                self.conn.send_data(sid, bytes(buf[:n]), end_stream=fin, pad_length=self.pad)
            del buf[:n]
            moved = True
            if fin:
                del self.outq[sid]
                return True
        if trailers is not None:
            self.headers(sid, trailers, end=True)
        elif end:
            self.conn.end_stream(sid)
        del self.outq[sid]
        return moved or end

    def feed(self, data: bytes) -> list[Any]:
        evs = self.conn.receive_data(data)
        for ev in evs:
            self.raw_events.append(ev)
            n = norm(ev)
            if n is None:
                continue
            self.events.append(n)
            if n[0] == "DataReceived":
                self.body[ev.stream_id] += ev.data
                if self.auto_ack:
                    self.ack(ev.stream_id, ev.flow_controlled_length)
                else:
                    self.unacked[ev.stream_id] += ev.flow_controlled_length
            elif n[0] == "StreamReset":
                self.resets.add(ev.stream_id)
                self.outq.pop(ev.stream_id, None)
        return evs

    def ack(self, sid: int, n: int) -> None:
        if n > 0:
            self.conn.acknowledge_received_data(n, sid)

    def ack_all(self) -> None:
        for sid, n in list(self.unacked.items()):
            self.ack(sid, n)
        self.unacked.clear()

    def story(self, sid: int) -> list[tuple[Any, ...]]:
        """This stream's events, consecutive DATA merged."""
        out: list[tuple[Any, ...]] = []
        for e in self.events:
            if e[1] != sid:
                continue
            if e[0] == "DataReceived" and out and out[-1][0] == "DataReceived":
                out[-1] = (e[0], sid, out[-1][2] + e[2])
            elif e[0] != "DataReceived" or e[2]:
                out.append(e)
        return out


def exchange(a: Side, b: Side) -> None:
    """Move bytes both ways (sending what windows allow) until neither side has anything to say."""
    for _ in range(100_000):
        moved = a.flush()
        moved = b.flush() or moved
        for src, dst in ((a, b), (b, a)):
            out = src.conn.data_to_send()
            if out:
                src.wire.append(bytes(out))
                dst.feed(out)
                moved = True
        if not moved:
            return
    raise AssertionError("the exchange never settled")


def make_h2(client_side: bool) -> h2.connection.H2Connection:
    cfg = h2.config.H2Configuration(client_side=client_side, header_encoding="utf-8")
    return h2.connection.H2Connection(config=cfg)


DRIVER = {"initial_window_size": 1 << 20, "max_frame_size": 1 << 20}


def connect(
    our_client: bool,
    cfg: str = "default",
    *,
    ours: dict[str, Any] | None = None,
    theirs: dict[int, int] | None = None,
    auto_ack: bool = True,
    pad: int | None = None,
) -> tuple[Side, Side]:
    """(client, server), one ours and one h2's, past the preface and SETTINGS exchange.

    ``cfg="driver"`` configures ours as ``_h2conn`` does (1 MiB frames and stream windows, the
    connection window opened wide); ``theirs`` are SETTINGS h2 announces right away."""
    kw = dict(DRIVER if cfg == "driver" else {}) | (ours or {})
    if cfg == "driver" and not our_client:
        kw.setdefault("max_concurrent_streams", 256)
    mine = Side(h2p.H2Protocol(client_side=our_client, **kw), auto_ack=auto_ack)
    peer = Side(make_h2(not our_client), auto_ack=auto_ack, pad=pad)
    client, server = (mine, peer) if our_client else (peer, mine)
    client.conn.initiate_connection()
    server.conn.initiate_connection()
    if cfg == "driver":
        mine.conn.increment_flow_control_window(2**31 - 1 - 65535)
    if theirs:
        peer.conn.update_settings(theirs)
    exchange(client, server)
    return client, server


def ours_of(client: Side, server: Side) -> Side:
    return client if client.ours else server


def h2_of(client: Side, server: Side) -> Side:
    return server if client.ours else client


both = pytest.mark.parametrize("our_client", [True, False], ids=["ours-client", "ours-server"])


def call(
    client: Side,
    server: Side,
    req: bytes,
    resp: bytes,
    *,
    extra: Sequence[tuple[str, str]] = (),
) -> int:
    """One gRPC-shaped call: request headers and body, response headers, body and trailers."""
    sid = client.conn.get_next_available_stream_id()
    client.headers(sid, REQUEST + list(extra))
    client.send(sid, req, end=True)
    exchange(client, server)
    server.headers(sid, RESPONSE)
    server.send(sid, resp, trailers=TRAILERS)
    exchange(client, server)
    return sid


def assert_call(client: Side, server: Side, sid: int, req: bytes, resp: bytes, extra: Any = ()) -> None:
    want_req = [("RequestReceived", sid, tuple(REQUEST) + tuple(extra))]
    want_req += [("DataReceived", sid, req)] if req else []
    assert server.story(sid) == [*want_req, ("StreamEnded", sid)]
    want_resp = [("ResponseReceived", sid, tuple(RESPONSE))]
    want_resp += [("DataReceived", sid, resp)] if resp else []
    assert client.story(sid) == [*want_resp, ("TrailersReceived", sid, tuple(TRAILERS)), ("StreamEnded", sid)]


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


BIG = "x" * 12000 + "".join(chr(0x61 + i % 26) for i in range(12000))


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


# ===================================================================== hypothesis: hostile input


def our_server(**kw: Any) -> h2p.H2Protocol:
    p = h2p.H2Protocol(client_side=False, **kw)
    p.initiate_connection()
    p.receive_data(h2p.PREFACE + frame(SETTINGS, 0, 0))
    p.data_to_send()
    return p


def our_client(streams: int = 0, **kw: Any) -> h2p.H2Protocol:
    p = h2p.H2Protocol(client_side=True, **kw)
    p.initiate_connection()
    for _ in range(streams):
        p.send_headers(p.get_next_available_stream_id(), triples(REQUEST))
    p.receive_data(frame(SETTINGS, 0, 0))
    p.data_to_send()
    return p


def feed_checked(p: h2p.H2Protocol, chunks: list[bytes]) -> None:
    """Feed ``chunks``: only ProtocolError may escape, with a GOAWAY of its code queued last;
    otherwise everything we queue must be well-formed frames."""
    for chunk in chunks:
        try:
            p.receive_data(chunk)
        except h2p.H2ProtocolError as exc:
            g = goaway_last(p.data_to_send())
            assert g.error_code == exc.error_code
            return
        parse(p.data_to_send())


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


# ===================================================================== direct RFC 9113 checks


class Raw:
    """A hand-driven client: frames from bytes, header blocks from hpack's encoder (dynamic
    table, Huffman)."""

    def __init__(self, **kw: Any) -> None:
        self.p = our_server(**kw)
        self.enc = hpack.Encoder()

    def block(self, headers: list[tuple[str, str]]) -> bytes:
        return self.enc.encode(headers)

    def headers(self, sid: int, headers: list[tuple[str, str]], flags: int = END_HEADERS) -> list[h2p.Event]:
        return self.p.receive_data(frame(HEADERS, flags, sid, self.block(headers)))

    def send(self, *frames: bytes) -> list[h2p.Event]:
        return self.p.receive_data(b"".join(frames))

    def out(self) -> bytes:
        return self.p.data_to_send()


def kinds(events: list[h2p.Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def expect_connection_error(p: h2p.H2Protocol, data: bytes, code: int = E.PROTOCOL_ERROR) -> None:
    with pytest.raises(h2p.H2ProtocolError) as info:
        p.receive_data(data)
    assert info.value.error_code == code
    g = goaway_last(p.data_to_send())
    assert g.error_code == code and g.stream_id == 0


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


HPACK_ERRORS = {
    "index 0": b"\x80",
    "index past the tables": b"\xbf",
    "integer too long": b"\xff\xff\xff\xff\xff\xff\xff\x7f",
    "truncated integer": b"\xff",
    "truncated string": b"\x00\x05ab",
    "length past the block": b"\x00\x7f\xff\xff\xff\x0fab",
    "table size update after a field": b"\x82\x20",
    "table size above the 4096 allowed": b"\x3f\xe2\x1f",
    "three table size updates": b"\x20\x20\x20\x82",
    "huffman padding not ones": b"\x00\x81\x18\x01v",  # 'a' (00011) then 000
    "huffman padding of 8 bits": b"\x00\x82\x1f\xff\x01v",
    "huffman EOS": b"\x00\x84\xff\xff\xff\xff\x01v",
}


@pytest.mark.parametrize("name", list(HPACK_ERRORS))
@pytest.mark.parametrize("client", [False, True])
def test_hpack_errors_are_compression_errors(name: str, client: bool) -> None:
    p = our_client(streams=1) if client else our_server()
    expect_connection_error(p, frame(HEADERS, END_HEADERS, 1, HPACK_ERRORS[name]), E.COMPRESSION_ERROR)


def test_hpack_table_size_updates_at_the_start_are_fine() -> None:
    raw = Raw()
    block = b"\x20\x3f\xe1\x1f" + encode_header(b":method", b"POST")  # 0, then 4096
    block += b"".join(encode_header(n.encode(), v.encode()) for n, v in REQUEST[1:])
    events = raw.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
    assert full(events[0]) == ("RequestReceived", 1, REQUEST, True)


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


# -- HPACK encoding --

STATIC = hpack.table.HeaderTable.STATIC_TABLE
names = st.one_of(
    st.sampled_from([n for n, _ in STATIC]),
    st.binary(min_size=1, max_size=200),
    st.sampled_from([b"content-type", b"grpc-status", b"te", b"x-" + b"n" * 150]),
)
values = st.one_of(
    st.sampled_from([v for _, v in STATIC]),
    st.binary(max_size=300),
    st.integers(0, 20000).map(lambda n: b"v" * n),
)


@prop
@given(headers=st.lists(st.tuples(names, values, st.booleans()), max_size=8))
def test_encoded_headers_decode_with_hpack(headers: list[tuple[bytes, bytes, bool]]) -> None:
    dec = hpack.Decoder(max_header_list_size=1 << 20)
    block = b"".join(encode_header(n, v, s) for n, v, s in headers)
    assert block == h2p.encode_headers(headers)
    got = dec.decode(block, raw=True)
    assert [(bytes(n), bytes(v)) for n, v in got] == [(n, v) for n, v, _ in headers]
    assert [isinstance(h, hpack.NeverIndexedHeaderTuple) for h in got] == [s for _, _, s in headers]
    assert len(dec.header_table.dynamic_entries) == 0  # nothing indexed: the peer's table stays empty


@pytest.mark.parametrize("n", [0, 1, 14, 15, 16, 126, 127, 128, 129, 254, 255, 256, 16383, 16384, 100_000])
def test_encode_header_length_boundaries(n: int) -> None:
    for name in (b"x" * max(n, 1), b"content-type"):
        for sensitive in (False, True):
            got = hpack.Decoder(max_header_list_size=1 << 20).decode(
                encode_header(name, b"v" * n, sensitive), raw=True
            )
            assert [(bytes(a), bytes(b)) for a, b in got] == [(name, b"v" * n)]


def test_every_static_entry_round_trips() -> None:
    for i, (n, v) in enumerate(STATIC, start=1):
        enc = encode_header(n, v)
        if STATIC.index((n, v)) + 1 == i:  # the first of duplicates is indexed whole
            assert enc == bytes((0x80 | i,))
        assert hpack.Decoder().decode(enc, raw=True) == [(n, v)]
