"""The trio http transport on loopback: echo, pipelining, limits, timeouts, drops, TLS, the h2 hook."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from trimicro.config import Options
from trimicro.errors import ProtocolError, TransportError
from trimicro.transport import Message
from trimicro.transport.http import (
    NOT_SENT,
    SENT,
    HttpListener,
    HttpSocket,
    HttpTransport,
    from_options,
    split_address,
)
from trimicro.transport.mucp import H2_PREFACE

pytestmark = pytest.mark.loopback

Handler = Callable[[HttpSocket], Awaitable[None]]


async def echo(sock: HttpSocket) -> None:
    """Reply to each frame with its Micro-Id and body."""
    while True:
        try:
            msg = await sock.receive()
        except trio.EndOfChannel:
            return
        except ProtocolError as exc:
            await sock.send(Message({"Micro-Error": f"{exc.code}"}))
            return
        await sock.send(Message({"Micro-Id": msg.header.get("Micro-Id", "")}, msg.body))


@asynccontextmanager
async def serving(
    handler: Handler = echo, transport: HttpTransport | None = None, **listen: object
) -> AsyncIterator[HttpListener]:
    transport = transport or HttpTransport()
    listener = await transport.listen("127.0.0.1:0", **listen)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(listener.serve, handler)
        yield listener
        nursery.cancel_scope.cancel()
    await listener.aclose()


async def read_until_eof(stream: trio.SocketStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def raw(listener: HttpListener) -> trio.SocketStream:
    host, port = split_address(listener.address)
    return await trio.open_tcp_stream(host, port)


REQ = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nMicro-Id: %s\r\n\r\n%s"


def rsp(id: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nMicro-Id: %s\r\n\r\n%s" % (len(body), id, body)


async def test_echo_round_trip() -> None:
    async with serving() as listener:
        assert listener.address.startswith("127.0.0.1:") and not listener.address.endswith(":0")
        async with await HttpTransport().dial(listener.address, timeout=5) as sock:
            assert sock.remote_address == listener.address
            assert sock.local_address.startswith("127.0.0.1:")
            for i in range(5):
                await sock.send(Message({"Micro-Id": str(i)}, b"x" * i))
                assert await sock.receive() == Message({"Micro-Id": str(i)}, b"x" * i)
            await sock.send_many([Message({"Micro-Id": str(i)}) for i in range(3)])
            assert [(await sock.receive()).header["Micro-Id"] for _ in range(3)] == ["0", "1", "2"]
            assert listener.open_connections == 1
        assert sock.closed
        await sock.aclose()  # closing twice is fine


async def test_pipelined_frames_exact_bytes() -> None:
    async with serving() as listener:
        stream = await raw(listener)
        await stream.send_all(REQ % (1, b"a", b"1") + REQ % (0, b"b", b"") + REQ % (3, b"c", b"333"))
        await stream.send_eof()
        assert await read_until_eof(stream) == rsp(b"a", b"1") + rsp(b"b", b"") + rsp(b"c", b"333")
        await stream.aclose()


async def test_large_body_round_trip() -> None:
    body = bytes(range(256)) * 8192  # 2 MiB
    async with serving() as listener:
        async with await HttpTransport().dial(listener.address) as sock:
            await sock.send(Message({"Micro-Id": "big"}, body))
            assert (await sock.receive()).body == body


async def test_oversized_body_is_413_and_reply_still_possible() -> None:
    errors: list[ProtocolError] = []

    async def handler(sock: HttpSocket) -> None:
        try:
            await sock.receive()
        except ProtocolError as exc:
            errors.append(exc)
            assert sock.errored
            await sock.send(Message({"Micro-Error": "too large"}))
            with pytest.raises(ProtocolError):  # the input stays unreadable
                await sock.receive()

    async with serving(handler, HttpTransport(max_body_size=1000)) as listener:
        stream = await raw(listener)
        await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"z" * 3000)
        reply = await read_until_eof(stream)
        assert reply == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nMicro-Error: too large\r\n\r\n"
        assert [e.code for e in errors] == [413]
        await stream.aclose()


async def test_malformed_http_is_400() -> None:
    async with serving() as listener:
        stream = await raw(listener)
        await stream.send_all(b"HELLO THERE\r\n\r\n")
        assert await read_until_eof(stream) == rsp(b"", b"").replace(b"Micro-Id: ", b"Micro-Error: 400")
        await stream.aclose()


async def test_connection_dropped_mid_body_is_transport_error() -> None:
    seen: list[BaseException] = []
    done = trio.Event()

    async def handler(sock: HttpSocket) -> None:
        try:
            await sock.receive()
        except (TransportError, trio.EndOfChannel) as exc:
            seen.append(exc)
        done.set()

    async with serving(handler) as listener:
        stream = await raw(listener)
        await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        await stream.aclose()
        await done.wait()
    assert len(seen) == 1 and isinstance(seen[0], TransportError)
    assert "unexpected EOF" in str(seen[0])


async def test_clean_close_between_frames_is_end_of_channel() -> None:
    seen: list[object] = []
    done = trio.Event()

    async def handler(sock: HttpSocket) -> None:
        seen.append(await sock.receive())
        with pytest.raises(trio.EndOfChannel):
            await sock.receive()
        done.set()

    async with serving(handler) as listener:
        stream = await raw(listener)
        await stream.send_all(REQ % (0, b"1", b""))
        await stream.aclose()
        await done.wait()
    assert len(seen) == 1


async def test_slow_headers_time_out_while_others_keep_working(autojump_clock: trio.abc.Clock) -> None:
    errors: list[int] = []

    async def handler(sock: HttpSocket) -> None:
        try:
            await echo_strict(sock)
        except ProtocolError as exc:
            errors.append(exc.code)
            await sock.send(Message({"Micro-Error": str(exc.code)}))

    async def echo_strict(sock: HttpSocket) -> None:
        while True:
            try:
                msg = await sock.receive()
            except trio.EndOfChannel:
                return
            await sock.send(Message({"Micro-Id": msg.header["Micro-Id"]}, msg.body))

    transport = HttpTransport(header_timeout=5.0, idle_timeout=60.0)
    async with serving(handler, transport) as listener:
        start = trio.current_time()
        slow = await raw(listener)
        await slow.send_all(b"POST / HTTP/1.1\r\nHo")
        # Another client is served meanwhile, without waiting for the slow one.
        async with await transport.dial(listener.address) as fast:
            await fast.send(Message({"Micro-Id": "f"}, b"ok"))
            assert (await fast.receive()).body == b"ok"
        assert trio.current_time() - start < 5.0
        reply = await read_until_eof(slow)
        assert reply == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nMicro-Error: 408\r\n\r\n"
        assert 5.0 <= trio.current_time() - start < 6.0
        assert errors == [408]
        await slow.aclose()


async def test_idle_connection_closes_cleanly(autojump_clock: trio.abc.Clock) -> None:
    """After a first frame, a keep-alive connection idles up to idle_timeout (a fresh one gets only
    header_timeout: tests/transport/test_http_hardening.py)."""
    ended = []

    async def handler(sock: HttpSocket) -> None:
        await sock.receive()
        await sock.send(Message({"Micro-Id": "1"}))
        with pytest.raises(trio.EndOfChannel):
            await sock.receive()
        ended.append(trio.current_time())

    async with serving(handler, HttpTransport(idle_timeout=30.0)) as listener:
        stream = await raw(listener)
        await stream.send_all(REQ % (0, b"1", b""))
        start = trio.current_time()
        assert await read_until_eof(stream) == rsp(b"1", b"")
        assert ended and 30.0 <= ended[0] - start < 31.0
        await stream.aclose()


async def test_dial_refused_names_address() -> None:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(TransportError, match=f"127.0.0.1:{port}"):
        await HttpTransport().dial(f"127.0.0.1:{port}", timeout=5)
    with pytest.raises(TransportError, match="invalid address"):
        await HttpTransport().dial("nonsense")


async def test_client_sees_end_of_channel_and_mid_frame_eof() -> None:
    async def handler(sock: HttpSocket) -> None:
        msg = await sock.receive()
        if msg.header["Micro-Id"] == "cut":
            await sock._stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        # returning closes the connection

    async with serving(handler) as listener:
        transport = HttpTransport()
        async with await transport.dial(listener.address) as sock:
            await sock.send(Message({"Micro-Id": "clean"}))
            with pytest.raises(trio.EndOfChannel):
                await sock.receive()
        async with await transport.dial(listener.address) as sock:
            await sock.send(Message({"Micro-Id": "cut"}))
            with pytest.raises(TransportError, match="unexpected EOF"):
                await sock.receive()


@asynccontextmanager
async def closed_peer() -> AsyncIterator[HttpSocket]:
    """A dialled socket whose peer has closed the connection (its end of file already read)."""

    async def handler(sock: HttpSocket) -> None:
        return

    async with serving(handler) as listener:
        async with await HttpTransport().dial(listener.address) as sock:
            with pytest.raises(trio.EndOfChannel):
                await sock.receive()
            yield sock


async def test_send_to_closed_peer_is_transport_error() -> None:
    async with closed_peer() as sock:
        with pytest.raises(TransportError):
            for _ in range(100):  # the first writes may still be buffered by the kernel
                await sock.send(Message({}, b"x" * 65536))
        assert sock.closed


async def test_try_send_writes_now_or_leaves_the_frame_to_the_usual_path() -> None:
    async with serving() as listener:
        async with await HttpTransport().dial(listener.address) as sock:
            assert sock.try_send(Message({"Micro-Id": "1"}, b"now")) == SENT
            assert await sock.receive() == Message({"Micro-Id": "1"}, b"now")
            # Someone else is writing: nothing is written in between.
            async with sock._send_lock:
                assert sock.try_send(Message({"Micro-Id": "2"}, b"no")) == NOT_SENT
            await sock.send(Message({"Micro-Id": "3"}, b"usual"))
            assert await sock.receive() == Message({"Micro-Id": "3"}, b"usual")
            assert sock.try_send(Message({"Micro-Id": "4"}, b"after")) == SENT
            assert await sock.receive() == Message({"Micro-Id": "4"}, b"after")
            await sock.flush()  # nothing left over: nothing to do


async def test_try_send_to_a_closed_peer_leaves_the_error_to_the_usual_path() -> None:
    async with closed_peer() as sock:
        with pytest.raises(TransportError):
            for _ in range(100):  # the first writes may still be buffered by the kernel
                if sock.try_send(Message({}, b"x" * 65536)) == NOT_SENT:
                    await sock.send(Message({}, b"x"))
                else:
                    await sock.flush()
        assert sock.closed
        assert sock.try_send(Message({}, b"x")) == NOT_SENT


class _Steps(trio.abc.Instrument):
    """Steps of one task: a send that yields adds one."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task, self.count = task, 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.count += 1


async def test_a_frame_the_socket_takes_whole_is_sent_without_a_yield() -> None:
    async with serving() as listener:
        async with await HttpTransport().dial(listener.address) as sock:
            steps = _Steps(trio.lowlevel.current_task())
            trio.lowlevel.add_instrument(steps)
            try:
                for i in range(5):
                    await sock.send(Message({"Micro-Id": str(i)}, b"ping"))
                assert steps.count == 0  # one non-blocking write each, no trip through the scheduler
            finally:
                trio.lowlevel.remove_instrument(steps)
            assert [(await sock.receive()).header["Micro-Id"] for _ in range(5)] == ["0", "1", "2", "3", "4"]
            with trio.CancelScope() as scope:  # still a cancellation point, before a byte is written
                scope.cancel()
                await sock.send(Message({"Micro-Id": "never"}, b"x"))
            assert scope.cancelled_caught and not sock.closed
            await sock.send(Message({"Micro-Id": "after"}, b"x"))
            assert (await sock.receive()).header["Micro-Id"] == "after"


async def test_with_the_peers_frames_buffered_a_send_still_yields() -> None:
    """A server answering pipelined requests yields per reply, so one connection sending many
    requests at once cannot keep the scheduler to itself."""
    got: list[int] = []
    done = trio.Event()

    async def answer_counting_yields(sock: HttpSocket) -> None:
        steps = _Steps(trio.lowlevel.current_task())
        trio.lowlevel.add_instrument(steps)
        try:
            for _ in range(3):
                msg = await sock.receive()
                before = steps.count
                await sock.send(Message({"Micro-Id": msg.header["Micro-Id"]}, b"ok"))
                got.append(steps.count - before)
        finally:
            trio.lowlevel.remove_instrument(steps)
            done.set()

    async with serving(answer_counting_yields) as listener:
        async with await HttpTransport().dial(listener.address) as sock:
            await sock.send_many([Message({"Micro-Id": str(i)}, b"q") for i in range(3)])  # one write
            for _ in range(3):
                await sock.receive()
            await done.wait()
    # The first two replies had the next request already buffered behind them; the last had none.
    assert got == [1, 1, 0]


async def test_a_frame_the_socket_takes_in_part_is_finished_by_send_all() -> None:
    big = bytes(range(256)) * 4096  # 1 MiB, over the 32 KiB buffers below
    received: list[bytes] = []
    done = trio.Event()

    async def slow_reader(sock: HttpSocket) -> None:
        stream = sock.stream
        assert isinstance(stream, trio.SocketStream)
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        received.append((await sock.receive()).body)
        received.append((await sock.receive()).body)
        done.set()

    async with serving(slow_reader) as listener:
        async with await HttpTransport().dial(listener.address) as sock:
            stream = sock.stream
            assert isinstance(stream, trio.SocketStream)
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
            with trio.fail_after(10):
                await sock.send(Message({}, big))
                await sock.send(Message({}, b"tail"))
                await done.wait()
    assert received == [big, b"tail"]


async def test_cancelling_serve_cancels_connections_and_counts_them() -> None:
    transport = HttpTransport()
    listener = await transport.listen("127.0.0.1:0")
    started = trio.Event()
    cancelled = []

    async def handler(sock: HttpSocket) -> None:
        started.set()
        try:
            await sock.receive()
        except trio.Cancelled:
            cancelled.append(True)
            raise

    async with trio.open_nursery() as nursery:
        await nursery.start(listener.serve, handler)
        client = await transport.dial(listener.address)
        await started.wait()
        assert listener.open_connections == 1 and listener.accepted == 1
        nursery.cancel_scope.cancel()
    assert cancelled == [True]
    assert listener.open_connections == 0
    await client.aclose()
    await listener.aclose()


async def test_closing_listener_drains_then_serve_returns() -> None:
    transport = HttpTransport()
    listener = await transport.listen("127.0.0.1:0")
    async with trio.open_nursery() as nursery:
        await nursery.start(listener.serve, echo)
        sock = await transport.dial(listener.address)
        await sock.send(Message({"Micro-Id": "1"}))
        await sock.receive()
        await listener.aclose()  # stop accepting; the live connection keeps working
        with pytest.raises(TransportError):
            await transport.dial(listener.address, timeout=5)
        await sock.send(Message({"Micro-Id": "2"}))
        assert (await sock.receive()).header["Micro-Id"] == "2"
        await sock.aclose()  # serve returns once this connection ends
    assert listener.open_connections == 0


async def test_handler_crash_does_not_stop_the_listener(caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    async def handler(sock: HttpSocket) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("handler bug")
        await echo(sock)

    async with serving(handler) as listener:
        transport = HttpTransport()
        async with await transport.dial(listener.address) as sock:
            await sock.send(Message({"Micro-Id": "1"}))
            with pytest.raises(trio.EndOfChannel):
                await sock.receive()
        async with await transport.dial(listener.address) as sock:
            await sock.send(Message({"Micro-Id": "2"}))
            assert (await sock.receive()).header["Micro-Id"] == "2"
    assert "handler bug" in caplog.text


# -- the HTTP/2 hook --------------------------------------------------------------------------------


async def test_h2_preface_goes_to_h2_handler_and_mucp_still_works() -> None:
    got: list[bytes] = []

    async def h2_handler(stream: trio.abc.Stream, initial: bytes) -> None:
        while len(initial) < len(H2_PREFACE) + 5:
            initial += await stream.receive_some(1024)
        got.append(initial)
        await stream.send_all(b"h2 here")

    async with serving(echo, h2_handler=h2_handler) as listener:
        stream = await raw(listener)
        await stream.send_all(H2_PREFACE[:7])  # the preface split across writes
        await trio.testing.wait_all_tasks_blocked()
        await stream.send_all(H2_PREFACE[7:] + b"extra")
        assert await read_until_eof(stream) == b"h2 here"
        assert got == [H2_PREFACE + b"extra"]
        await stream.aclose()

        async with await HttpTransport().dial(listener.address) as sock:
            await sock.send(Message({"Micro-Id": "m"}, b"mucp"))
            assert (await sock.receive()).body == b"mucp"

        stream = await raw(listener)  # starts like the preface, then is not
        await stream.send_all(b"PRI / HTTP/1.1\r\nHost: x\r\nMicro-Id: p\r\n\r\n")
        await stream.send_eof()
        assert await read_until_eof(stream) == rsp(b"p", b"")
        await stream.aclose()


# -- TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trimicro test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    tmp = tmp_path_factory.mktemp("tls")
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def test_tls_round_trip_via_options(cert_files: tuple[Path, Path]) -> None:
    cert, key = cert_files
    transport = from_options(
        Options(server_tls_cert=str(cert), server_tls_key=str(key), client_tls_ca=str(cert))
    )
    assert transport.ssl_context is not None and transport.client_ssl_context is not None
    async with serving(echo, transport) as listener:
        async with await transport.dial(listener.address, timeout=5) as sock:
            await sock.send(Message({"Micro-Id": "tls"}, b"secret"))
            assert await sock.receive() == Message({"Micro-Id": "tls"}, b"secret")
            assert isinstance(sock.stream, trio.SSLStream)
            assert sock.stream.selected_alpn_protocol() == "http/1.1"
            # TLS records are the SSL stream's to write: never a direct write to the descriptor.
            assert sock.try_send(Message({"Micro-Id": "tls"}, b"direct")) == NOT_SENT
        # A client that does not trust the certificate fails to dial, with a TransportError.
        with pytest.raises(TransportError):
            await transport.dial(listener.address, ssl_context=ssl.create_default_context())
        # The listener keeps serving after a failed handshake.
        async with await transport.dial(listener.address, timeout=5) as sock:
            await sock.send(Message({"Micro-Id": "again"}))
            assert (await sock.receive()).header["Micro-Id"] == "again"


async def test_tls_alpn_h2_goes_to_h2_handler(cert_files: tuple[Path, Path]) -> None:
    cert, key = cert_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    got: list[bytes] = []

    async def h2_handler(stream: trio.abc.Stream, initial: bytes) -> None:
        got.append(initial)
        await stream.send_all(b"h2 over tls")

    async with serving(echo, HttpTransport(ssl_context=server_ctx), h2_handler=h2_handler) as listener:
        client_ctx = ssl.create_default_context(cafile=str(cert))
        client_ctx.set_alpn_protocols(["h2"])
        host, port = split_address(listener.address)
        stream = trio.SSLStream(await trio.open_tcp_stream(host, port), client_ctx, server_hostname=host)
        await stream.do_handshake()
        assert stream.selected_alpn_protocol() == "h2"
        assert await stream.receive_some(100) == b"h2 over tls"
        assert got == [b""]
        await stream.aclose()


def test_from_options_limits_and_timeouts() -> None:
    t = from_options(
        Options(
            server_max_header_size=1000,
            server_max_body_size=2000,
            server_header_timeout="3s",
            server_idle_timeout="1m",
        )
    )
    assert (t.max_header_size, t.max_body_size, t.header_timeout, t.idle_timeout) == (1000, 2000, 3.0, 60.0)
    assert t.name == "http" and t.ssl_context is None and t.client_ssl_context is None


def test_split_address() -> None:
    assert split_address("127.0.0.1:80") == ("127.0.0.1", 80)
    assert split_address("[::1]:8080") == ("::1", 8080)
    assert split_address(":0") == ("127.0.0.1", 0)  # an empty host is loopback: all interfaces is opt-in
    with pytest.raises(ValueError):
        split_address("127.0.0.1")
