"""Shared by the HTTP/2 engine's tests: frames built by hand, our output parsed by ``hyperframe``,
events of either library normalised, one endpoint (ours or ``h2``'s) behind one interface, and
our own endpoints ready to be fed bytes."""

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
from hypothesis import HealthCheck, settings

from trimicro.transport import _http2 as h2p

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
#: a header value larger than one frame (and than a default HPACK table)
BIG = "x" * 12000 + "".join(chr(0x61 + i % 26) for i in range(12000))
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
    """Feed ``chunks``: only H2ProtocolError may escape, with a GOAWAY of its code queued last;
    otherwise everything we queue must be well-formed frames."""
    for chunk in chunks:
        try:
            p.receive_data(chunk)
        except h2p.H2ProtocolError as exc:
            g = goaway_last(p.data_to_send())
            assert g.error_code == exc.error_code
            return
        parse(p.data_to_send())


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
