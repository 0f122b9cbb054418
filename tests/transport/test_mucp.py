"""The sans-IO mucp framing: exact bytes in and out, pipelining, limits, malformed input."""

from __future__ import annotations

import pytest

from trimicro.errors import ProtocolError, TransportError
from trimicro.transport import Message
from trimicro.transport.mucp import (
    NEED_DATA,
    ClientConnection,
    EndOfStream,
    FrameState,
    ServerConnection,
)

# What Go Micro's client writes (net/http Request.Write: Host, User-Agent, Content-Length, then the
# message headers sorted).
GO_REQUEST = (
    b"POST / HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8080\r\n"
    b"User-Agent: Go-http-client/1.1\r\n"
    b"Content-Length: 11\r\n"
    b"Accept: application/protobuf\r\n"
    b"Content-Type: application/protobuf\r\n"
    b"Micro-Endpoint: Greeter.Hello\r\n"
    b"Micro-Id: 5a8c4f3e\r\n"
    b"Micro-Method: Greeter.Hello\r\n"
    b"Micro-Service: greeter\r\n"
    b"Timeout: 5000000000\r\n"
    b"\r\n"
    b"\n\tsome name"
)
GO_REQUEST_HEADER = {
    "User-Agent": "Go-http-client/1.1",
    "Accept": "application/protobuf",
    "Content-Type": "application/protobuf",
    "Micro-Endpoint": "Greeter.Hello",
    "Micro-Id": "5a8c4f3e",
    "Micro-Method": "Greeter.Hello",
    "Micro-Service": "greeter",
    "Timeout": "5000000000",
}
# What Go Micro's server writes (net/http Response.Write).
GO_RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Length: 7\r\n"
    b"Content-Type: application/protobuf\r\n"
    b"Micro-Id: 5a8c4f3e\r\n"
    b"\r\n"
    b"\n\x05hello"
)


def feed_all(conn: ServerConnection | ClientConnection, data: bytes) -> list[Message]:
    if data:  # b"" would mean EOF
        conn.receive_data(data)
    out = []
    while (msg := conn.next_message()) is not NEED_DATA:
        out.append(msg)
    return out


def test_parses_go_request() -> None:
    conn = ServerConnection()
    assert feed_all(conn, GO_REQUEST) == [Message(GO_REQUEST_HEADER, b"\n\tsome name")]
    assert conn.state is FrameState.IDLE
    conn.receive_data(b"")
    with pytest.raises(EndOfStream):
        conn.next_message()


def test_parses_go_response() -> None:
    conn = ClientConnection("127.0.0.1:8080")
    msgs = feed_all(conn, GO_RESPONSE)
    assert msgs == [Message({"Content-Type": "application/protobuf", "Micro-Id": "5a8c4f3e"}, b"\n\x05hello")]


def test_server_send_exact_bytes() -> None:
    conn = ServerConnection()
    out = conn.send(Message({"Content-Type": "application/json", "micro-id": "1"}, b'{"msg":"hi"}\n'))
    assert out == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n"
        b"Content-Type: application/json\r\nMicro-Id: 1\r\n\r\n"
        b'{"msg":"hi"}\n'
    )
    assert conn.send(Message({"Micro-Error": "EOS"})) == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nMicro-Error: EOS\r\n\r\n"
    )


def test_client_send_exact_bytes() -> None:
    conn = ClientConnection("10.0.0.1:9000")
    out = conn.send(Message({"Micro-Endpoint": "Greeter.Hello", "Content-Type": "application/json"}, b"{}"))
    assert out == (
        b"POST / HTTP/1.1\r\nHost: 10.0.0.1:9000\r\nContent-Length: 2\r\n"
        b"Micro-Endpoint: Greeter.Hello\r\nContent-Type: application/json\r\n\r\n{}"
    )


def test_framing_headers_never_copied_from_message() -> None:
    conn = ServerConnection()
    out = conn.send(
        Message({"Content-Length": "99", "transfer-encoding": "chunked", "Host": "x", "A": "b"}, b"x")
    )
    assert out == b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nA: b\r\n\r\nx"


def test_round_trip_both_ways() -> None:
    msg = Message({"Micro-Id": "7", "Micro-Stream": "s", "Meta": "ünïcode \udcff"}, bytes(range(256)))
    server, client = ServerConnection(), ClientConnection()
    assert feed_all(server, client.send(msg)) == [msg]
    assert feed_all(client, server.send(msg)) == [msg]


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "a\nb", "a\rb", "nul\x00", "\x0b"])
def test_send_rejects_header_injection(value: str) -> None:
    with pytest.raises(ProtocolError):
        ServerConnection().send(Message({"Foo": value}))
    with pytest.raises(ProtocolError):
        ClientConnection().send(Message({"Foo": value}))


@pytest.mark.parametrize("name", ["", "a b", "a:b", "ä", "a\r\n"])
def test_send_rejects_bad_header_names(name: str) -> None:
    with pytest.raises(ProtocolError):
        ServerConnection().send(Message({name: "x"}))


def test_client_rejects_bad_host() -> None:
    with pytest.raises(ValueError):
        ClientConnection("a b")


def test_canonical_names_first_wins_and_x_micro() -> None:
    data = (
        b"POST /any/path?q=1 HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n"
        b"x-micro-id: fromx\r\nMICRO-endpoint: A.B\r\nmicro-endpoint: C.D\r\n"
        b"X-Micro-Endpoint: E.F\r\nfoo:   spaced value \t\r\nEmpty:\r\n\r\n"
    )
    [msg] = feed_all(ServerConnection(), data)
    assert msg.header == {
        "X-Micro-Id": "fromx",
        "Micro-Id": "fromx",
        "Micro-Endpoint": "A.B",
        "X-Micro-Endpoint": "E.F",
        "Foo": "spaced value",
        "Empty": "",
    }


def test_pipelined_frames_in_one_read() -> None:
    reqs = [Message({"Micro-Id": str(i)}, b"x" * i) for i in range(20)]
    client = ClientConnection()
    data = client.send_many(reqs)
    assert data == b"".join(client.send(m) for m in reqs)
    assert feed_all(ServerConnection(), data) == reqs
    server = ServerConnection()
    assert feed_all(ClientConnection(), server.send_many(reqs)) == reqs


def test_split_at_every_byte_boundary() -> None:
    data = GO_REQUEST + GO_REQUEST
    expected = [Message(GO_REQUEST_HEADER, b"\n\tsome name")] * 2
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1, 7):
            conn = ServerConnection()
            got = feed_all(conn, data[:i]) + feed_all(conn, data[i:j]) + feed_all(conn, data[j:])
            assert got == expected, (i, j)


def test_byte_at_a_time() -> None:
    conn = ClientConnection()
    got = []
    for b in GO_RESPONSE * 3:
        got += feed_all(conn, bytes([b]))
    assert len(got) == 3 and got[0].body == b"\n\x05hello"


def test_states() -> None:
    conn = ServerConnection()
    assert conn.state is FrameState.IDLE
    conn.receive_data(GO_REQUEST[:10])
    assert conn.next_message() is NEED_DATA and conn.state is FrameState.HEADERS
    conn.receive_data(GO_REQUEST[10:-3])
    assert conn.next_message() is NEED_DATA and conn.state is FrameState.BODY
    conn.receive_data(GO_REQUEST[-3:])
    assert isinstance(conn.next_message(), Message) and conn.state is FrameState.IDLE


def test_body_limit_raised_before_body_arrives() -> None:
    conn = ServerConnection(max_body_size=100)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n")
    with pytest.raises(ProtocolError) as info:
        conn.next_message()
    assert info.value.code == 413
    assert conn.state is FrameState.ERROR
    with pytest.raises(ProtocolError):  # sticky
        conn.next_message()
    # Still able to write the error reply.
    assert conn.send(Message({"Micro-Error": "too big"})).startswith(b"HTTP/1.1 200 OK\r\n")


def test_body_at_limit_ok() -> None:
    conn = ServerConnection(max_body_size=100)
    [msg] = feed_all(conn, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n" + b"x" * 100)
    assert msg.body == b"x" * 100


def test_header_limit_without_terminator() -> None:
    conn = ServerConnection(max_header_size=1024)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: h\r\n" + b"A: " + b"x" * 2000)
    with pytest.raises(ProtocolError) as info:
        conn.next_message()
    assert info.value.code == 431


def test_header_limit_with_terminator() -> None:
    conn = ServerConnection(max_header_size=1024)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: h\r\nA: " + b"x" * 1100 + b"\r\n\r\n")
    with pytest.raises(ProtocolError) as info:
        conn.next_message()
    assert info.value.code == 431


def test_header_limit_counts_only_headers() -> None:
    head = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n"
    conn = ServerConnection(max_header_size=len(head))
    [msg] = feed_all(conn, head + b"y" * 5000)
    assert len(msg.body) == 5000


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"POST / HTTP/1.1 extra\r\nHost: h\r\n\r\n", 400),
        (b"POST  / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"POST / HTTP/2.0\r\nHost: h\r\n\r\n", 400),
        (b"POST / http/1.1\r\nHost: h\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nNo colon\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nBad Name: x\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\n : x\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nA: b\r\n folded\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nA: b\rc\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nA: b\x00\r\n\r\n", 400),
        (b"POST / HTTP/1.1\nHost: h\n\n", 400),  # bare LF
        (b"\r\nPOST / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b" POST / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: " + b"9" * 21 + b"\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    ],
)
def test_malformed_requests(data: bytes, code: int) -> None:
    conn = ServerConnection()
    conn.receive_data(data)
    with pytest.raises(ProtocolError) as info:
        conn.next_message()
    assert info.value.code == code


def test_equal_repeated_content_length_merges() -> None:
    data = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2, 2\r\nContent-Length: 02\r\n\r\nab"
    with pytest.raises(ProtocolError):  # "02" != "2", as h11
        feed_all(ServerConnection(), data)
    data = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nab"
    assert feed_all(ServerConnection(), data)[0].body == b"ab"


def test_http10_request_without_host() -> None:
    [msg] = feed_all(ServerConnection(), b"GET /x HTTP/1.0\r\n\r\n")
    assert msg == Message({}, b"")


def test_eof_mid_headers_and_mid_body() -> None:
    conn = ServerConnection()
    conn.receive_data(GO_REQUEST[:20])
    conn.receive_data(b"")
    with pytest.raises(TransportError, match="unexpected EOF"):
        conn.next_message()
    conn = ServerConnection()
    conn.receive_data(GO_REQUEST[:-2])
    conn.receive_data(b"")
    with pytest.raises(TransportError, match="unexpected EOF"):
        conn.next_message()


def test_data_after_eof_is_a_bug() -> None:
    conn = ServerConnection()
    conn.receive_data(b"")
    with pytest.raises(RuntimeError):
        conn.receive_data(b"x")


def test_client_non_200_is_an_error_and_stream_continues() -> None:
    conn = ClientConnection()
    conn.receive_data(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops" + GO_RESPONSE)
    with pytest.raises(ProtocolError) as info:
        conn.next_message()
    assert info.value.code == 500 and "oops" in str(info.value)
    assert isinstance(conn.next_message(), Message)


def test_client_skips_informational_responses() -> None:
    conn = ClientConnection()
    msgs = feed_all(conn, b"HTTP/1.1 100 Continue\r\n\r\n" + GO_RESPONSE)
    assert len(msgs) == 1


def test_client_response_without_length_runs_to_eof() -> None:
    conn = ClientConnection()
    assert feed_all(conn, b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nsome") == []
    assert conn.state is FrameState.BODY
    conn.receive_data(b" more")
    conn.receive_data(b"")
    assert conn.next_message() == Message({"A": "b"}, b"some more")
    with pytest.raises(EndOfStream):
        conn.next_message()


def test_status_line_without_reason() -> None:
    assert feed_all(ClientConnection(), b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n") == [Message({}, b"")]


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 000 OK\r\nContent-Length: 0\r\n\r\n",  # found by the differential fuzz vs h11
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nnothex\r\n",
        b"POST / HTTP/1.1\r\nHost: h\r\n\r\n",
    ],
)
def test_malformed_responses(data: bytes) -> None:
    conn = ClientConnection()
    conn.receive_data(data)
    with pytest.raises(ProtocolError):
        conn.next_message()


GO_EMPTY_CHUNKED = (
    b"POST / HTTP/1.1\r\nHost: 127.0.0.1:1\r\nUser-Agent: Go-http-client/1.1\r\n"
    b"Transfer-Encoding: chunked\r\nContent-Type: application/protobuf\r\nMicro-Stream: 0\r\n"
    b"Micro-Endpoint: Greeter.Stream\r\n\r\n0\r\n\r\n"
)


def test_go_clients_empty_chunked_frames_are_accepted() -> None:
    """Go Micro's client sends empty stream frames (first frame, EOS) as chunked bodies."""
    data = GO_EMPTY_CHUNKED + b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok"
    for cut in range(len(data)):
        conn = ServerConnection()
        msgs = []
        for part in (data[:cut], data[cut:]):
            if not part:
                continue  # b"" would mean EOF
            conn.receive_data(part)
            while (m := conn.next_message()) is not NEED_DATA:
                msgs.append(m)
        assert [m.body for m in msgs] == [b"", b"ok"]
        assert msgs[0].header["Micro-Stream"] == "0"


def test_chunked_bodies_with_extensions_trailers_and_limits() -> None:
    conn = ServerConnection(max_body_size=8)
    conn.receive_data(
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n"
    )
    assert conn.next_message() == Message({}, b"abcde")
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n")
    with pytest.raises(ProtocolError) as info:
        conn.next_message()
    assert info.value.code == 413


def test_eof_inside_a_chunked_body_is_unexpected() -> None:
    conn = ServerConnection()
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab")
    assert conn.next_message() is NEED_DATA
    conn.receive_data(b"")
    with pytest.raises(TransportError):
        conn.next_message()


def test_per_call_header_lines_stay_out_of_the_parse_cache() -> None:
    # A traced call's Traceparent is new on every call: cached, it would fill the line cache and
    # empty it (and every steady line with it) every 1,024 calls.
    from trimicro.transport import mucp

    conn = ServerConnection()
    request = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nMicro-Id: %d\r\n"
        b"Traceparent: 00-%032x-%016x-01\r\n\r\n"
    )
    for n in range(1, 4):
        conn.receive_data(request % (n, n, n))
        msg = conn.next_message()
        assert isinstance(msg, Message) and msg.header["Traceparent"] == f"00-{n:032x}-{n:016x}-01"
    cached = {key for key, _ in mucp._LINES.values()}
    assert "Host" in cached and not cached & {"Traceparent", "Micro-Id"}
