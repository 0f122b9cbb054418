"""Hypothesis: the mucp fast path against h11, and against random bytes.

- On valid frames (any token method, any target, any legal header bytes, OWS, case, X-Micro
  duplicates, pipelining, any chunking) both parsers accept and agree exactly.
- On mutated frames, whenever the fast path accepts, h11 accepts the same frames (it may reject
  where h11 is lenient: bare LF, obs-fold, chunked bodies; see trimicro.transport.mucp).
- On random bytes it only ever yields Messages or typed errors.
"""

from __future__ import annotations

from typing import Any

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trimicro.errors import ProtocolError, TransportError
from trimicro.transport import Message, canonical
from trimicro.transport.mucp import NEED_DATA, ClientConnection, EndOfStream, ServerConnection

TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
SPECIAL = {"connection", "upgrade", "expect", "host", "content-length", "transfer-encoding", "trailer"}
FRAMING = {"Content-Length", "Host", "Transfer-Encoding"}
# Header value bytes: anything but NUL, whitespace and CR/LF (those map to letters).
VCHAR_TABLE = bytes.maketrans(b"\x00\t\n\x0b\x0c\r ", b"abcdefg")
REASON_TABLE = bytes.maketrans(b"\x00\n\x0b\x0c\r", b"abcde")

fuzz = settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)

token = st.text(TCHARS, min_size=1, max_size=12)
header_name = st.one_of(
    token.filter(lambda n: n.lower() not in SPECIAL),
    st.sampled_from(
        ["Micro-Id", "micro-id", "X-Micro-Id", "x-micro-endpoint", "Micro-Endpoint", "Content-Type"]
    ),
)
ows = st.sampled_from([b"", b" ", b"\t", b"  \t "])
vchars = st.binary(min_size=1, max_size=8).map(lambda b: b.translate(VCHAR_TABLE))
value = st.lists(st.tuples(vchars, st.sampled_from([b" ", b"\t", b" \t "])), max_size=4).map(
    lambda parts: b"".join(v + s for v, s in parts).rstrip(b" \t")
)


@st.composite
def header_lines(draw: Any) -> list[bytes]:
    pairs = draw(st.lists(st.tuples(header_name, value), max_size=8))
    return [n.encode() + b":" + draw(ows) + v + draw(ows) for n, v in pairs]


def _shuffle_in(draw: Any, lines: list[bytes], extra: list[bytes]) -> list[bytes]:
    for line in extra:
        lines.insert(draw(st.integers(0, len(lines))), line)
    return lines


@st.composite
def request(draw: Any, pipelined: bool = False) -> bytes:
    method = draw(token).encode()
    target = draw(st.text("".join(map(chr, range(0x21, 0x7F))), min_size=1, max_size=16)).encode()
    version = b"1.1" if pipelined else draw(st.sampled_from([b"1.1", b"1.0"]))
    body = draw(st.binary(max_size=40))
    extra = [draw(st.sampled_from([b"Host", b"host", b"HOST"])) + b": " + draw(token).encode()]
    if body or draw(st.booleans()):
        cl = draw(st.sampled_from([b"", b"0", b"00"])) + str(len(body)).encode()
        extra.append(b"content-length:" + draw(ows) + cl)
    lines = _shuffle_in(draw, draw(header_lines()), extra)
    if version == b"1.0" and not draw(st.booleans()):
        lines = [line for line in lines if not line.lower().startswith(b"host")]
    head = b"%s %s HTTP/%s\r\n" % (method, target, version)
    return head + b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body


@st.composite
def response(draw: Any) -> bytes:
    reason = draw(st.binary(max_size=12)).translate(REASON_TABLE)
    status = b"HTTP/1.1 200" + (b" " + reason if reason or draw(st.booleans()) else b"")
    body = draw(st.binary(max_size=40))
    lines = _shuffle_in(draw, draw(header_lines()), [b"Content-Length: " + str(len(body)).encode()])
    return status + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body


def to_message(raw: list[tuple[bytes, bytes]], body: bytes) -> Message:
    header: dict[str, str] = {}
    for name, val in raw:
        key = canonical(name.decode("ascii"))
        if key not in FRAMING and key not in header:
            header[key] = val.decode("utf-8", "surrogateescape")
    for key in [k for k in header if k.startswith("X-Micro-")]:
        header.setdefault(key[2:], header[key])
    return Message(header, body)


_CLOSED_AFTER = [-1]  # set by h11_parse: frames read before h11 stopped for keep-alive reasons


def h11_parse(data: bytes, *, server: bool) -> tuple[list[Message], bool]:
    """Frames h11 reads from ``data`` (then EOF), and whether it stopped on an error."""
    _CLOSED_AFTER[0] = -1
    conn = h11.Connection(h11.SERVER if server else h11.CLIENT, max_incomplete_event_size=10**7)
    if not server:
        conn.send(h11.Request(method="POST", target="/", headers=[("Host", "x"), ("Content-Length", "0")]))
        conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    conn.receive_data(b"")
    out: list[Message] = []
    raw: list[tuple[bytes, bytes]] = []
    body = b""
    try:
        while True:
            ev = conn.next_event()
            if isinstance(ev, h11.Request | h11.Response):
                raw, body = list(ev.headers.raw_items()), b""
            elif isinstance(ev, h11.Data):
                body += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                out.append(to_message(raw, body))
                if server:
                    conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
                    conn.send(h11.EndOfMessage())
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    # Keep-alive ends here (HTTP/1.0, Connection: close): h11 reads no further frames.
                    _CLOSED_AFTER[0] = len(out)
                    return out, False
                if not conn.trailing_data[0]:
                    return out, False  # all frames read (a new cycle would then see EOF mid-exchange)
                conn.start_next_cycle()
                if not server:
                    conn.send(
                        h11.Request(
                            method="POST", target="/", headers=[("Host", "x"), ("Content-Length", "0")]
                        )
                    )
                    conn.send(h11.EndOfMessage())
            else:
                return out, False
    except h11.ProtocolError:
        return out, True


def mucp_parse(data: bytes, cuts: list[int], *, server: bool) -> tuple[list[Message], BaseException | None]:
    conn: ServerConnection | ClientConnection = ServerConnection() if server else ClientConnection()
    out: list[Message] = []
    pieces = [data[i:j] for i, j in zip([0, *sorted(cuts)], [*sorted(cuts), len(data)], strict=True)]
    try:
        for piece in pieces:
            if piece:  # b"" would mean EOF
                conn.receive_data(piece)
            while (msg := conn.next_message()) is not NEED_DATA:
                out.append(msg)
        conn.receive_data(b"")
        while True:
            msg = conn.next_message()
            assert msg is not NEED_DATA  # after EOF the parser always decides
            out.append(msg)
    except (EndOfStream, ProtocolError, TransportError) as exc:
        return out, exc


cuts = st.lists(st.integers(0, 400), max_size=5)


@settings(fuzz, max_examples=100)
@given(st.lists(request(pipelined=True), min_size=1, max_size=3), cuts)
def test_valid_requests_agree_with_h11(reqs: list[bytes], cut: list[int]) -> None:
    data = b"".join(reqs)
    ours, err = mucp_parse(data, [c for c in cut if c <= len(data)], server=True)
    theirs, failed = h11_parse(data, server=True)
    assert isinstance(err, EndOfStream)
    assert not failed
    assert ours == theirs
    assert len(ours) == len(reqs)


@fuzz
@given(request(), cuts)
def test_valid_single_requests_agree_with_h11(req: bytes, cut: list[int]) -> None:
    ours, err = mucp_parse(req, [c for c in cut if c <= len(req)], server=True)
    theirs, failed = h11_parse(req, server=True)
    assert isinstance(err, EndOfStream), err
    assert not failed
    assert ours == theirs[:1]


@fuzz
@given(st.lists(response(), min_size=1, max_size=4), cuts)
def test_valid_responses_agree_with_h11(rsps: list[bytes], cut: list[int]) -> None:
    data = b"".join(rsps)
    ours, err = mucp_parse(data, [c for c in cut if c <= len(data)], server=False)
    theirs, failed = h11_parse(data, server=False)
    assert isinstance(err, EndOfStream), err
    assert not failed
    assert ours == theirs
    assert len(ours) == len(rsps)


@st.composite
def mutated(draw: Any, frames: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(frames))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        pos = draw(st.integers(0, len(data)))
        byte = draw(st.sampled_from([0, 9, 10, 13, 32, 44, 58, 0x41, 0x80, 0xFF, *range(0x30, 0x3A)]))
        if op == "insert":
            data.insert(pos, byte)
        elif pos < len(data):
            if op == "delete":
                del data[pos]
            else:
                data[pos] = byte
    return bytes(data)


@fuzz
@given(mutated(st.lists(request(pipelined=True), min_size=1, max_size=3).map(b"".join)))
def test_mutated_requests_accepted_only_if_h11_agrees(data: bytes) -> None:
    ours, _ = mucp_parse(data, [], server=True)
    theirs, _ = h11_parse(data, server=True)
    assert theirs[: len(ours)] == ours


@fuzz
@given(mutated(st.lists(response(), min_size=1, max_size=3).map(b"".join)))
def test_mutated_responses_accepted_only_if_h11_agrees(data: bytes) -> None:
    ours, err = mucp_parse(data, [], server=False)
    theirs, _ = h11_parse(data, server=False)
    if isinstance(err, ProtocolError) and err.code not in (400, 411, 501):
        return  # a non-200 status: h11 reads it as a response, we report it as an error
    if _CLOSED_AFTER[0] >= 0:
        # h11 stops at a connection-closing response (HTTP/1.0); mucp frames need no keep-alive
        # negotiation, so we may read on. Up to that point both must agree.
        ours = ours[: _CLOSED_AFTER[0]]
    assert theirs[: len(ours)] == ours


@fuzz
@given(st.binary(max_size=300), cuts, st.booleans())
def test_random_bytes_only_yield_messages_or_typed_errors(data: bytes, cut: list[int], server: bool) -> None:
    ours, err = mucp_parse(data, [c for c in cut if c <= len(data)], server=server)
    assert all(isinstance(m, Message) for m in ours)
    assert isinstance(err, EndOfStream | ProtocolError | TransportError)


@fuzz
@given(
    st.sampled_from([b"POST / HTTP/1.1\r\nHost: h\r\n", b"HTTP/1.1 200 OK\r\n"]),
    st.binary(max_size=200),
    cuts,
)
def test_random_header_bytes_only_yield_messages_or_typed_errors(
    start: bytes, rest: bytes, cut: list[int]
) -> None:
    data = start + rest
    ours, err = mucp_parse(data, [c for c in cut if c <= len(data)], server=start.startswith(b"POST"))
    assert isinstance(err, EndOfStream | ProtocolError | TransportError)
    theirs, _ = h11_parse(data, server=start.startswith(b"POST"))
    if not (isinstance(err, ProtocolError) and err.code >= 200 and err.code not in (400, 411, 501)):
        assert theirs[: len(ours)] == ours


@pytest.mark.parametrize(
    "data",
    [
        b"POST / HTTP/1.1\nHost: h\n\n",  # bare LF
        b"POST / HTTP/1.1\r\nHost: h\r\nA: b\r\n c\r\n\r\n",  # obs-fold
    ],
)
def test_documented_divergences_from_h11(data: bytes) -> None:
    """Where h11 is lenient the fast path rejects, clearly; it never accepts something different."""
    theirs, failed = h11_parse(data, server=True)
    assert len(theirs) == 1 and not failed
    ours, err = mucp_parse(data, [], server=True)
    assert ours == [] and isinstance(err, ProtocolError)
