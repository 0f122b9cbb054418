"""The api gateway against a real service on loopback: an h11 client for HTTP, trio-websocket for streams."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from contextlib import asynccontextmanager

import h11
import pytest
import trio
import trio_websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio_websocket import ConnectionClosed

import trimicro
from tests.protos.greeter_pb2 import EchoMessage, HelloRequest, HelloResponse, StreamRequest, StreamResponse
from trimicro.api import DEFAULT_MAX_BODY, Gateway, Route, request_metadata, rpc_resolver

pytestmark = pytest.mark.loopback


class Greeter:
    """Endpoints for each gateway path: unary, errors, a gate for in-flight calls, streams."""

    def __init__(self) -> None:
        self.started = trio.Event()
        self.release = trio.Event()
        self.cancelled = trio.Event()
        self.started_flood = trio.Event()
        self.calls = 0

    async def Hello(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
        self.calls += 1
        return HelloResponse(greeting=f"Hello {req.name}")

    async def Meta(self, req: dict, ctx: trimicro.Context) -> dict:
        return dict(ctx.metadata)

    async def Fail(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
        if req.name == "crash":
            raise ZeroDivisionError("boom")
        raise trimicro.MicroError("greeter", int(req.name), f"failed with {req.name}")

    async def Gate(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
        self.started.set()
        try:
            await self.release.wait()
        except trio.Cancelled:
            self.cancelled.set()
            raise
        return HelloResponse(greeting=f"Hello {req.name}")

    async def Stream(
        self,
        req: StreamRequest,
        stream: trimicro.Stream[StreamRequest, StreamResponse],
        ctx: trimicro.Context,
    ) -> None:
        for i in range(req.count):
            await stream.send(StreamResponse(count=i, message=f"m{i}"))

    async def Flood(
        self,
        req: StreamRequest,
        stream: trimicro.Stream[StreamRequest, StreamResponse],
        ctx: trimicro.Context,
    ) -> None:
        """64 KiB messages, as fast as the consumer takes them."""
        self.started_flood.set()
        for i in range(req.count):
            await stream.send(StreamResponse(count=i, message="x" * 65536))

    async def Echo(self, stream: trimicro.Stream[EchoMessage, EchoMessage], ctx: trimicro.Context) -> None:
        self.started.set()
        try:
            async for msg in stream:
                if msg.text == "fail":
                    raise trimicro.errors.conflict("greeter", "fail requested at %d", msg.seq)
                await stream.send(EchoMessage(text=msg.text.upper(), seq=msg.seq))
        except trio.Cancelled:
            self.cancelled.set()
            raise


@asynccontextmanager
async def gateway_stack(**gateway_kw):
    """A greeter service and a gateway on 127.0.0.1:0 sharing a memory registry; yields (port, greeter, gw)."""
    registry = trimicro.registry.MemoryRegistry()
    greeter = Greeter()
    async with trimicro.open_service("greeter", registry=registry, handlers=[greeter]):
        async with trimicro.open_client(registry=registry, client_retries=0) as client:
            gateway = Gateway(client, **gateway_kw)
            async with trio.open_nursery() as nursery:
                address = await nursery.start(gateway.serve, "127.0.0.1:0")
                host, _, port = address.rpartition(":")
                assert host == "127.0.0.1"
                yield int(port), greeter, gateway
                gateway.stop()


async def http(port, method, path, body=b"", headers=(), *, length=None):
    """One HTTP/1.1 request over a fresh connection; returns (status, headers, body)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        hdrs = [("host", f"127.0.0.1:{port}"), *headers]
        if method in ("POST", "PUT"):
            hdrs.append(("content-length", str(len(body) if length is None else length)))
        await stream.send_all(conn.send(h11.Request(method=method, target=path, headers=hdrs)))
        if length is None:
            if body:
                await stream.send_all(conn.send(h11.Data(data=body)))
            await stream.send_all(conn.send(h11.EndOfMessage()))
        return await _response(conn, stream)


async def _response(conn, stream):
    status, headers, data = 0, {}, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
            headers = {k.decode(): v.decode() for k, v in event.headers}
        elif isinstance(event, h11.Data):
            data += event.data
        else:
            assert isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)), event
            return status, headers, data


async def post(port, path, obj=None, headers=()):
    body = b"" if obj is None else json.dumps(obj).encode()
    return await http(port, "POST", path, body, [("content-type", "application/json"), *headers])


# -- the resolver, without sockets --


@pytest.mark.parametrize(
    ("path", "namespace", "route"),
    [
        ("/greeter", "", Route("greeter", "Greeter.Call")),
        ("/greeter/hello", "", Route("greeter", "Greeter.Hello")),
        ("/greeter/Greeter/Hello", "", Route("greeter", "Greeter.Hello")),
        ("/greeter/greeter/say-hello/", "", Route("greeter", "Greeter.SayHello")),
        ("/v1/greeter/hello", "", Route("v1.greeter", "Greeter.Hello")),
        ("/foo/bar/baz/qux", "", Route("foo.bar", "Baz.Qux")),
        ("//greeter/./x/../hello", "", Route("greeter", "Greeter.Hello")),
        ("/greeter/hello", "go.micro.api", Route("go.micro.api.greeter", "Greeter.Hello")),
        ("/", "", Route("", "")),
        ("/foo/hello_world.x", "", Route("foo", "Foo.Hello_world.X")),
    ],
)
def test_rpc_resolver_follows_go_micro(path, namespace, route):
    assert rpc_resolver(path, namespace) == route


fuzz = settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)


@fuzz
@given(st.text(), st.text(max_size=20))
def test_rpc_resolver_takes_any_path(path, namespace):
    route = rpc_resolver(path, namespace)
    assert isinstance(route.service, str) and isinstance(route.endpoint, str)


@fuzz
@given(st.lists(st.tuples(st.binary(max_size=20), st.binary(max_size=40)), max_size=8))
def test_request_metadata_takes_any_headers(headers):
    md = request_metadata(headers)
    assert all(k[:1] != ":" and not k.startswith("Micro-") for k in md)


def test_request_metadata_keeps_caller_headers_only():
    md = request_metadata(
        [
            (b"x-user", b"alice"),
            (b"x-user", b"bob"),
            (b"authorization", b"Bearer t"),
            (b"host", b"h"),
            (b"connection", b"keep-alive"),
            (b"content-length", b"2"),
            (b"timeout", b"1"),
            (b"micro-stream", b"1"),
            (b"micro-endpoint", b"Evil.X"),
            (b"micro-anything", b"x"),
            (b"sec-websocket-key", b"k"),
            (b":authority", b"h"),
        ]
    )
    assert md == {"X-User": "alice,bob", "Authorization": "Bearer t"}


# -- HTTP --


async def test_both_path_forms_and_raw_json_passthrough():
    async with gateway_stack() as (port, greeter, _):
        status, headers, body = await post(port, "/greeter/Greeter/Hello", {"name": "John"})
        assert status == 200 and headers["content-type"] == "application/json"
        assert json.loads(body) == {"greeting": "Hello John"}
        status, _, body = await post(port, "/greeter/hello", {"name": "Jane"})
        assert status == 200 and json.loads(body) == {"greeting": "Hello Jane"}
        status, _, body = await post(port, "/greeter/hello")  # empty body: an empty request
        assert status == 200 and json.loads(body) == {"greeting": "Hello "}
        assert greeter.calls == 3


async def test_headers_become_metadata():
    async with gateway_stack() as (port, _, _gw):
        status, _, body = await post(
            port,
            "/greeter/Greeter/Meta",
            {},
            [("x-user", "alice"), ("X-Trace-Id", "t1"), ("micro-stream", "x")],
        )
        assert status == 200
        md = json.loads(body)
        assert md["X-User"] == "alice" and md["X-Trace-Id"] == "t1"
        assert "Micro-Stream" not in md and "Host" not in md and "Content-Length" not in md


@pytest.mark.parametrize("code", [404, 408, 500, 409])
async def test_handler_errors_map_to_status_and_go_error_json(code):
    async with gateway_stack() as (port, _, _gw):
        status, headers, body = await post(port, "/greeter/Greeter/Fail", {"name": str(code)})
        assert status == code and headers["content-type"] == "application/json"
        assert json.loads(body) == {
            "id": "greeter",
            "code": code,
            "detail": f"failed with {code}",
            "status": trimicro.MicroError("", code).status,
        }


async def test_odd_error_codes_and_crashes_are_500():
    async with gateway_stack() as (port, _, _gw):
        status, _, body = await post(port, "/greeter/Greeter/Fail", {"name": "999"})
        assert status == 500 and json.loads(body)["code"] == 999
        status, _, body = await post(port, "/greeter/Greeter/Fail", {"name": "crash"})
        assert status == 500 and json.loads(body)["id"] == "go.micro.server"
        status, _, body = await post(port, "/greeter/Greeter/Nope", {})
        assert status == 404


async def test_unknown_service_is_go_micro_service_not_found():
    async with gateway_stack() as (port, _, _gw):
        for path in ("/nobody/Nobody/Hello", "/"):
            status, _, body = await post(port, path, {})
            assert status == 500
            assert json.loads(body) == {
                "id": "go.micro.api",
                "code": 500,
                "detail": "service not found",
                "status": "Internal Server Error",
            }


async def test_wrong_method_bad_json_and_too_large():
    async with gateway_stack() as (port, greeter, _):
        status, headers, body = await http(port, "GET", "/greeter/Greeter/Hello")
        assert status == 405 and headers["allow"] == "POST" and json.loads(body)["code"] == 405
        status, _, body = await http(port, "POST", "/greeter/Greeter/Hello", b'{"name": ')
        assert status == 400 and json.loads(body)["id"] == "go.micro.api"
        status, _, body = await http(port, "POST", "/greeter/Greeter/Hello", b"\xff\xfe")
        assert status == 400
        # declared too large: answered before the body is read
        status, _, body = await http(port, "POST", "/greeter/Greeter/Hello", length=DEFAULT_MAX_BODY + 1)
        assert status == 413 and json.loads(body)["code"] == 413
        assert greeter.calls == 0


async def test_chunked_body_over_the_limit_is_413():
    async with gateway_stack(max_body=1024) as (port, greeter, _):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            conn = h11.Connection(h11.CLIENT)
            req = h11.Request(
                method="POST",
                target="/greeter/hello",
                headers=[("host", "x"), ("transfer-encoding", "chunked")],
            )
            await stream.send_all(conn.send(req))
            await stream.send_all(conn.send(h11.Data(data=b'{"name": "' + b"x" * 2000)))
            status, _, body = await _response(conn, stream)
        assert status == 413 and json.loads(body)["code"] == 413 and greeter.calls == 0
        status, _, _ = await post(port, "/greeter/hello", {"name": "ok"})  # still serving
        assert status == 200


async def test_client_going_away_cancels_the_call():
    async with gateway_stack() as (port, greeter, _):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        conn = h11.Connection(h11.CLIENT)
        body = b'{"name": "x"}'
        hdrs = [("host", "x"), ("content-length", str(len(body)))]
        await stream.send_all(
            conn.send(h11.Request(method="POST", target="/greeter/Greeter/Gate", headers=hdrs))
        )
        await stream.send_all(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
        with trio.fail_after(5):
            await greeter.started.wait()
            await stream.aclose()
            await greeter.cancelled.wait()


# -- websockets --


def ws_url(port, path):
    return f"ws://127.0.0.1:{port}{path}"


async def test_websocket_bidi_echo_and_clean_end_on_browser_close():
    async with gateway_stack() as (port, greeter, _):
        with trio.fail_after(5):
            async with trio_websocket.open_websocket_url(
                ws_url(port, "/greeter/Greeter/Echo"), extra_headers=[(b"x-user", b"ws")]
            ) as ws:
                for i in range(3):
                    await ws.send_message(json.dumps({"text": f"hi{i}", "seq": i}))
                    reply = json.loads(await ws.get_message())
                    assert reply["text"] == f"HI{i}" and int(reply.get("seq", 0)) == i
                await ws.send_message(b'{"text": "bin", "seq": 9}')  # binary frames are requests too
                assert json.loads(await ws.get_message())["text"] == "BIN"
            # closing the websocket cancels the stream, and so the handler
            await greeter.cancelled.wait()


async def test_websocket_server_streaming_ends_with_1000():
    async with gateway_stack() as (port, _, _gw):
        with trio.fail_after(5):
            async with trio_websocket.open_websocket_url(ws_url(port, "/greeter/Greeter/Stream")) as ws:
                await ws.send_message('{"count": 3}')
                raw = [await ws.get_message() for _ in range(3)]
                assert raw[0] == '{"message":"m0"}'  # the service's JSON as it came, minus the newline
                got = [json.loads(m) for m in raw]
                assert [m["message"] for m in got] == ["m0", "m1", "m2"]
                with pytest.raises(ConnectionClosed) as info:
                    await ws.get_message()
                assert info.value.reason.code == 1000


async def test_websocket_errors_send_error_json_then_1011():
    async with gateway_stack() as (port, _, _gw):
        with trio.fail_after(5):
            async with trio_websocket.open_websocket_url(ws_url(port, "/greeter/Greeter/Echo")) as ws:
                await ws.send_message('{"text": "fail", "seq": 7}')
                err = json.loads(await ws.get_message())
                assert err["code"] == 409 and err["detail"] == "fail requested at 7"
                with pytest.raises(ConnectionClosed) as info:
                    await ws.get_message()
                assert info.value.reason.code == 1011
            async with trio_websocket.open_websocket_url(ws_url(port, "/nobody/x")) as ws:
                assert json.loads(await ws.get_message())["detail"] == "service not found"
                with pytest.raises(ConnectionClosed) as info:
                    await ws.get_message()
                assert info.value.reason.code == 1011
            async with trio_websocket.open_websocket_url(ws_url(port, "/greeter/Greeter/Echo")) as ws:
                await ws.send_message("not json")
                assert json.loads(await ws.get_message())["code"] == 400
                with pytest.raises(ConnectionClosed) as info:
                    await ws.get_message()
                assert info.value.reason.code == 1007


async def test_websocket_to_unary_endpoint_and_oversized_messages():
    async with gateway_stack(max_body=1024) as (port, _, _gw):
        with trio.fail_after(5):
            async with trio_websocket.open_websocket_url(ws_url(port, "/greeter/Greeter/Hello")) as ws:
                await ws.send_message('{"name": "x"}')
                err = json.loads(await ws.get_message())
                assert err["code"] == 400 and "not streaming" in err["detail"]
                with pytest.raises(ConnectionClosed) as info:
                    await ws.get_message()
                assert info.value.reason.code == 1011
            async with trio_websocket.open_websocket_url(ws_url(port, "/greeter/Greeter/Echo")) as ws:
                await ws.send_message('{"text": "' + "x" * 2000 + '"}')
                with pytest.raises(ConnectionClosed) as info:
                    await ws.get_message()
                assert info.value.reason.code == 1009


# -- shutdown --


async def test_stop_closes_websockets_1001_and_drains_in_flight_calls():
    async with gateway_stack(grace=5) as (port, greeter, gateway):  # the drain ends when the call does
        results = []

        async def call(path):
            results.append(await post(port, path, {"name": "late"}))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                # A call that finishes within the grace period gets its answer.
                nursery.start_soon(call, "/greeter/Greeter/Gate")
                await greeter.started.wait()
                async with trio_websocket.open_websocket_url(ws_url(port, "/greeter/Greeter/Echo")) as ws:
                    gateway.stop()
                    with pytest.raises(ConnectionClosed) as info:
                        await ws.get_message()
                    assert info.value.reason.code == 1001
                greeter.release.set()
            assert results[0][0] == 200 and json.loads(results[0][2]) == {"greeting": "Hello late"}


async def test_cancelling_serve_answers_503_and_cancels_the_handler():
    registry = trimicro.registry.MemoryRegistry()
    greeter = Greeter()
    async with trimicro.open_service("greeter", registry=registry, handlers=[greeter]):
        async with trimicro.open_client(registry=registry, client_retries=0) as client:
            gateway = Gateway(client, grace=0.2)
            results = []
            with trio.fail_after(10):
                async with trio.open_nursery() as outer:
                    serving = trio.CancelScope()

                    async def serve(task_status=trio.TASK_STATUS_IGNORED):
                        with serving:
                            await gateway.serve("127.0.0.1:0", task_status=task_status)

                    address = await outer.start(serve)
                    port = int(address.rpartition(":")[2])

                    async def call():
                        results.append(await post(port, "/greeter/Greeter/Gate", {"name": "x"}))

                    outer.start_soon(call)
                    await greeter.started.wait()
                    serving.cancel()  # cancellation = stop accepting, drain 0.2 s, then cancel the call
                await greeter.cancelled.wait()
            status, _, body = results[0]
            assert status == 503 and json.loads(body)["detail"] == "gateway shutting down"


async def test_empty_host_binds_loopback():
    async with trimicro.open_client(registry=trimicro.registry.MemoryRegistry()) as client:
        gateway = Gateway(client)
        async with trio.open_nursery() as nursery:
            address = await nursery.start(gateway.serve, ":0")
            assert address.startswith("127.0.0.1:")
            gateway.stop()


# -- the CLI --


async def test_cli_api_serves_until_sigterm():
    # the allow-list from the environment, as a deployment would set it
    env = dict(os.environ, PYTHONPATH=os.getcwd(), MICRO_API_ALLOW="cli-api-greeter:Greeter.*")
    argv = [sys.executable, "-m", "trimicro.cli", "api", "--address", "127.0.0.1:0", "--registry", "mdns"]
    async with trimicro.open_service("cli-api-greeter", registry="mdns", handlers=[Greeter()]):
        with trio.fail_after(30):
            proc = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE, env=env)
            try:
                line = b""
                while not line.endswith(b"\n"):
                    chunk = await proc.stdout.receive_some(1024)
                    assert chunk, "trimicro api exited before listening"
                    line += chunk
                assert line.startswith(b"api gateway listening on http://127.0.0.1:")
                port = int(line.rpartition(b":")[2])
                status, _, body = await post(port, "/cli-api-greeter/Greeter/Hello", {"name": "cli"})
                assert status == 200 and json.loads(body) == {"greeting": "Hello cli"}
                for path in ("/cli-api-greeter/Debug/Stats", "/elsewhere/Greeter/Hello"):
                    status, _, body = await post(port, path, {})
                    assert status == 403 and json.loads(body)["id"] == "go.micro.api", path
                proc.send_signal(signal.SIGTERM)
                assert await proc.wait() == 0
            finally:
                if proc.returncode is None:
                    proc.kill()
                    with trio.CancelScope(shield=True):
                        await proc.wait()


async def test_control_characters_in_the_path_are_400_and_leave_the_node_alone():
    """A decoded path may hold %00 or CR/LF: refused by the gateway (400), never sent, so the
    service's node is not marked bad for everyone else."""
    async with gateway_stack() as (port, _greeter, _gw):
        for path in ("/greeter/Greeter/Hello%00", "/greeter/Greeter/Hel%0d%0alo", "/gree%7fter/hello"):
            status, _, body = await post(port, path, {"name": "x"})
            assert status == 400, (path, body)
            assert json.loads(body)["id"] == "go.micro.api"
        status, _, body = await post(port, "/greeter/Greeter/Hello", {"name": "ok"})
        assert (status, json.loads(body)) == (200, {"greeting": "Hello ok"})


async def test_non_ascii_header_values_reach_the_handler_unchanged():
    async with gateway_stack() as (port, _, _gw):
        status, _, body = await post(port, "/greeter/Greeter/Meta", {}, [("x-name", "é 名".encode())])
        assert status == 200 and json.loads(body)["X-Name"] == "é 名"


async def test_stop_is_bounded_by_write_timeout_for_a_browser_that_never_reads():
    """hypercorn's writes cannot be cancelled; TCP_USER_TIMEOUT (``write_timeout``) lets the kernel
    drop a connection whose replies sit unread, so a drain cannot hang on it."""
    import socket

    import trio.testing
    import wsproto
    from wsproto.events import AcceptConnection, Request, TextMessage

    streams = []
    with trio.fail_after(20):
        async with gateway_stack(grace=0.5, write_timeout=1.0) as (port, greeter, gateway):
            sock = trio.socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await sock.connect(("127.0.0.1", port))
            stream = trio.SocketStream(sock)
            streams.append(stream)
            ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
            await stream.send_all(ws.send(Request(host="127.0.0.1", target="/greeter/Greeter/Flood")))
            while not any(isinstance(e, AcceptConnection) for e in ws.events()):
                ws.receive_data(await stream.receive_some(4096))
            await stream.send_all(ws.send(TextMessage(data='{"count": 100000}')))  # never read again
            await greeter.started_flood.wait()
            await trio.testing.wait_all_tasks_blocked(0.01)  # every buffer full: the writes block
            gateway.stop()
        # leaving gateway_stack waited for serve() to return, with the browser still connected
    await streams[0].aclose()
