"""The sans-IO NATS protocol: parsing, limits, builders, and hypothesis fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trimicro._nats import protocol as p
from trimicro._nats.protocol import NEED_DATA, Err, Info, MalformedMsg, Msg, NatsParser, Ok, Ping, Pong
from trimicro.errors import ProtocolError


def parse(*chunks: bytes, parser: NatsParser | None = None, eof: bool = False) -> tuple[list[object], bool]:
    """Feed chunks one by one, collecting events; (events, whether a ProtocolError was raised)."""
    parser = parser or NatsParser()
    events: list[object] = []
    try:
        for chunk in [*(c for c in chunks if c), *([b""] if eof else [])]:  # b"" means EOF
            parser.receive_data(chunk)
            while (ev := parser.next_event()) is not NEED_DATA:
                events.append(ev)
    except ProtocolError:
        return events, True
    return events, False


def test_all_server_ops() -> None:
    data = (
        b'INFO {"server_id":"x","max_payload":1048576,"headers":true}\r\n'
        b"PING\r\nPONG\r\n+OK\r\n-ERR 'Unknown Protocol Operation'\r\n"
        b"MSG foo.bar 9 5\r\nhello\r\n"
        b"MSG foo 1 _INBOX.x 0\r\n\r\n"
        b"HMSG foo 2 26 31\r\nNATS/1.0\r\nA: 1\r\nB:  2 \r\n\r\nworld\r\n"
        b"HMSG _INBOX.a.1 3 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"
    )
    events, failed = parse(data)
    assert not failed
    assert events == [
        Info({"server_id": "x", "max_payload": 1048576, "headers": True}),
        Ping(),
        Pong(),
        Ok(),
        Err("Unknown Protocol Operation"),
        Msg("foo.bar", 9, None, b"hello"),
        Msg("foo", 1, "_INBOX.x", b""),
        Msg("foo", 2, None, b"world", (("A", "1"), ("B", "2"))),
        Msg("_INBOX.a.1", 3, None, b"", (), 503, ""),
    ]


def test_status_with_description_and_repeated_headers() -> None:
    block = b"NATS/1.0 408 Request Timeout\r\nK: a\r\nK: b\r\n\r\n"
    data = b"HMSG s 1 r %d %d\r\n%s\r\n" % (len(block), len(block), block)
    (msg,), failed = parse(data)
    assert not failed and isinstance(msg, Msg)
    assert (msg.status, msg.description, msg.reply) == (408, "Request Timeout", "r")
    assert msg.headers == (("K", "a"), ("K", "b"))
    assert msg.header_dict() == {"K": "a"}


def test_malformed_header_block_is_an_event_not_a_dead_connection() -> None:
    block = b"NATS/1.0\r\nno colon here\r\n\r\n"
    data = b"HMSG s 1 %d %d\r\n%sxy\r\nPING\r\n" % (len(block), len(block) + 2, block)
    events, failed = parse(data)
    assert not failed
    assert isinstance(events[0], MalformedMsg) and events[0].sid == 1
    assert events[1] == Ping()


@pytest.mark.parametrize(
    "data",
    [
        b"BOGUS\r\n",
        b"MSG foo\r\n",
        b"MSG foo x 1\r\na\r\n",
        b"MSG foo 1 -1\r\n",
        b"MSG foo 1 3\r\nabcXY",  # payload not followed by CRLF
        b"HMSG foo 1 5 3\r\n",  # header size > total
        b"INFO not-json\r\n",
        b"INFO [1]\r\n",
        b"PING extra\r\n",
    ],
)
def test_malformed_frames_raise_protocol_error(data: bytes) -> None:
    _, failed = parse(data)
    assert failed


def test_parser_stays_dead_after_error() -> None:
    parser = NatsParser()
    parser.receive_data(b"BOGUS\r\n")
    with pytest.raises(ProtocolError):
        parser.next_event()
    with pytest.raises(ProtocolError):
        parser.next_event()
    with pytest.raises(ProtocolError):
        parser.receive_data(b"PING\r\n")


def test_line_length_limit() -> None:
    parser = NatsParser(max_line=16)
    parser.receive_data(b"MSG " + b"a" * 20)
    with pytest.raises(ProtocolError, match="control line"):
        parser.next_event()
    ok, failed = parse(b"MSG " + b"a" * 8 + b" 1 0\r\n\r\n", parser=NatsParser(max_line=16))
    assert not failed and len(ok) == 1


def test_max_payload_comes_from_info_and_is_capped() -> None:
    events, failed = parse(b'INFO {"max_payload":4}\r\nMSG a 1 4\r\nabcd\r\nMSG a 1 5\r\nabcde\r\n')
    assert failed and len(events) == 2
    parser = NatsParser(ceiling=1000)
    parse(b'INFO {"max_payload":99999999}\r\n', parser=parser)
    assert parser.max_payload == 1000


def test_eof_mid_frame_is_an_error_and_clean_eof_is_not() -> None:
    assert parse(b"MSG a 1 4\r\nab", eof=True)[1]
    assert parse(b"PI", eof=True)[1]
    assert parse(b"PING\r\n", eof=True) == ([Ping()], False)


def test_builders() -> None:
    assert p.pub("a.b", b"hi") == b"PUB a.b 2\r\nhi\r\n"
    assert p.pub("a", b"", reply="r") == b"PUB a r 0\r\n\r\n"
    assert p.hpub("a", {"K": "v"}, b"xy") == b"HPUB a 18 20\r\nNATS/1.0\r\nK: v\r\n\r\nxy\r\n"
    assert p.sub("a.*", 3) == b"SUB a.* 3\r\n"
    assert p.sub("a", 4, "q") == b"SUB a q 4\r\n"
    assert p.unsub(4) == b"UNSUB 4\r\n"
    assert p.unsub(4, 1) == b"UNSUB 4 1\r\n"
    assert p.connect({"verbose": False}) == b'CONNECT {"verbose":false}\r\n'


@pytest.mark.parametrize("subject", ["", "a b", "a\r\nPUB x 1", "a\tb"])
def test_builders_reject_bad_subjects(subject: str) -> None:
    with pytest.raises(ValueError):
        p.pub(subject, b"")
    with pytest.raises(ValueError):
        p.sub(subject, 1)


@pytest.mark.parametrize("headers", [{"a b": "v"}, {"a:b": "v"}, {"": "v"}, {"k": "v\r\nX: y"}])
def test_builders_reject_bad_headers(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        p.hpub("s", headers, b"")


def test_hpub_round_trips_through_the_parser() -> None:
    headers = {"Content-Type": "application/json", "Micro-Id": "ü-1"}
    wire = p.hpub("t", headers, b"body", reply="r")
    # a server delivers HPUB as HMSG with the same sizes; rewrite the op and insert a sid
    assert wire.startswith(b"HPUB t r ")
    delivered = b"HMSG t 7 r " + wire[len(b"HPUB t r ") :]
    (msg,), failed = parse(delivered)
    assert not failed and isinstance(msg, Msg)
    assert msg.header_dict() == headers and msg.payload == b"body" and msg.sid == 7


# ------------------------------------------------------------------ fuzzing

_tokens = st.sampled_from(
    [
        b"MSG ",
        b"HMSG ",
        b"PING",
        b"PONG",
        b"+OK",
        b"-ERR ",
        b"INFO ",
        b"\r\n",
        b" ",
        b"1",
        b"5",
        b"a",
        b"NATS/1.0",
        b":",
    ]
)
_noise = st.lists(st.one_of(_tokens, st.binary(max_size=8)), max_size=30).map(b"".join)


def _valid_op() -> st.SearchStrategy[bytes]:
    subject = st.text("abc.*>_", min_size=1, max_size=8)
    payload = st.binary(max_size=40)
    header = st.dictionaries(
        st.text("XYZk-", min_size=1, max_size=5), st.text("vw ü", max_size=6), max_size=3
    )

    def msg(s: str, sid: int, reply: str | None, data: bytes) -> bytes:
        return p.pub(s, data, reply).replace(b"PUB " + s.encode(), b"MSG " + s.encode() + b" %d" % sid, 1)

    def hmsg(s: str, sid: int, h: dict[str, str], data: bytes) -> bytes:
        return p.hpub(s, h, data).replace(b"HPUB " + s.encode(), b"HMSG " + s.encode() + b" %d" % sid, 1)

    sids = st.integers(0, 10**6)
    return st.one_of(
        st.just(b"PING\r\n"),
        st.just(b"PONG\r\n"),
        st.just(b"+OK\r\n"),
        st.just(b"-ERR 'Authorization Violation'\r\n"),
        st.just(b'INFO {"max_payload":1048576}\r\n'),
        st.builds(msg, subject, sids, st.none() | subject, payload),
        st.builds(hmsg, subject, sids, header, payload),
    )


def _all_splits_agree(data: bytes) -> tuple[list[object], bool]:
    whole = parse(data)
    for i in range(len(data) + 1):
        assert parse(data[:i], data[i:]) == whole
    assert parse(*[data[i : i + 1] for i in range(len(data))]) == whole
    return whole


@settings(max_examples=300, deadline=None, database=None)
@given(st.one_of(st.binary(max_size=120), _noise))
def test_fuzz_random_bytes_give_events_or_protocol_error(data: bytes) -> None:
    # parse() catches only ProtocolError: any other exception fails the test.
    events, _ = _all_splits_agree(data)
    assert all(isinstance(e, (Info, Msg, MalformedMsg, Ping, Pong, Ok, Err)) for e in events)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(_valid_op(), max_size=8))
def test_fuzz_valid_streams_parse_identically_however_split(ops: list[bytes]) -> None:
    events, failed = _all_splits_agree(b"".join(ops))
    assert not failed and len(events) == len(ops)
