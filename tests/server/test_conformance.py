"""Raw-bytes mucp conformance (wire/mucp.md): exact requests in, exact replies out."""

from __future__ import annotations

import functools
import json

import pytest
import trio

import trimicro
from tests.conftest import Greeter


async def _open(service: trimicro.Service) -> trio.SocketStream:
    host, port = service.address.rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def _read_response(stream: trio.SocketStream, buf: bytearray) -> tuple[bytes, dict[str, str], bytes]:
    """Read one HTTP/1.1 response (Content-Length body) from ``stream``; return raw head, headers, body."""
    with trio.fail_after(5):
        while b"\r\n\r\n" not in buf:
            chunk = await stream.receive_some()
            assert chunk, "connection closed"
            buf += chunk
        end = buf.index(b"\r\n\r\n") + 4
        head = bytes(buf[:end])
        lines = head.decode().split("\r\n")
        assert lines[0] == "HTTP/1.1 200 OK"
        headers = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        length = int(headers["content-length"])
        while len(buf) < end + length:
            buf += await stream.receive_some()
        body = bytes(buf[end : end + length])
        del buf[: end + length]
        return head, headers, body


def _request(headers: dict[str, str], body: bytes) -> bytes:
    lines = ["POST / HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.fixture
async def service(registry, nursery):
    svc = trimicro.Service("greeter", registry=registry, handlers=[Greeter()], argv=[], handle_signals=False)
    await nursery.start(svc.run)
    yield svc
    svc.stop()


async def test_json_request_exact_reply(service):
    stream = await _open(service)
    await stream.send_all(
        _request(
            {
                "Content-Type": "application/json",
                "Micro-Service": "greeter",
                "Micro-Endpoint": "Greeter.Hello",
                "Micro-Id": "42",
            },
            b'{"name":"John"}',
        )
    )
    _, headers, body = await _read_response(stream, bytearray())
    assert body == b'{"greeting":"Hello John"}\n'
    assert headers["content-type"] == "application/json"
    assert headers["micro-id"] == "42"
    assert headers["micro-endpoint"] == headers["micro-method"] == "Greeter.Hello"
    assert "micro-error" not in headers
    await stream.aclose()


async def test_protobuf_default_content_type_and_micro_method_only(service):
    from tests.protos.greeter_pb2 import HelloRequest, HelloResponse

    stream = await _open(service)
    # No Content-Type (-> protobuf) and only Micro-Method (Micro-Endpoint is filled from it).
    await stream.send_all(
        _request(
            {"Micro-Service": "greeter", "Micro-Method": "Greeter.Hello"},
            HelloRequest(name="Jo").SerializeToString(),
        )
    )
    _, headers, body = await _read_response(stream, bytearray())
    assert HelloResponse.FromString(body).greeting == "Hello Jo"
    assert headers["micro-endpoint"] == "Greeter.Hello"
    await stream.aclose()


async def test_x_micro_headers_lowercase_names_and_metadata(service):
    stream = await _open(service)
    raw = (
        b"POST /any/path HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ncontent-type: application/json\r\n"
        b"x-micro-service: greeter\r\nx-micro-endpoint: Greeter.Meta\r\nx-user: alice\r\n\r\n{}"
    )
    await stream.send_all(raw)
    _, _, body = await _read_response(stream, bytearray())
    assert json.loads(body) == {"greeting": "X-User=alice"}
    await stream.aclose()


async def test_pipelined_frames_answered_in_order(service):
    stream = await _open(service)
    frames = b"".join(
        _request(
            {"Content-Type": "application/json", "Micro-Endpoint": "Greeter.Hello", "Micro-Id": str(i)},
            json.dumps({"name": f"n{i}"}).encode(),
        )
        for i in range(20)
    )
    await stream.send_all(frames)
    buf = bytearray()
    for i in range(20):
        _, headers, body = await _read_response(stream, buf)
        assert headers["micro-id"] == str(i)
        assert json.loads(body) == {"greeting": f"Hello n{i}"}
    await stream.aclose()


async def test_error_reply_shape(service):
    stream = await _open(service)
    await stream.send_all(
        _request({"Content-Type": "application/json", "Micro-Endpoint": "Greeter.Fail"}, b'{"name":"x"}')
    )
    _, headers, body = await _read_response(stream, bytearray())
    assert body == b""
    assert json.loads(headers["micro-error"]) == {
        "id": "greeter",
        "code": 400,
        "detail": "bad name x",
        "status": "Bad Request",
    }
    await stream.aclose()


@pytest.mark.parametrize(
    ("endpoint", "code", "detail"),
    [
        ("Foo", 400, "rpc: endpoint ill-formed: Foo"),
        ("Foo.Bar.Baz", 400, "rpc: endpoint ill-formed: Foo.Bar.Baz"),
        ("Foo.Bar", 404, "unknown service Foo"),
        ("Greeter.Nope", 404, "unknown service Greeter.Nope: handler Greeter has no method Nope"),
    ],
)
async def test_unknown_endpoints(service, endpoint, code, detail):
    stream = await _open(service)
    await stream.send_all(_request({"Content-Type": "application/json", "Micro-Endpoint": endpoint}, b"{}"))
    _, headers, _ = await _read_response(stream, bytearray())
    err = json.loads(headers["micro-error"])
    assert (err["id"], err["code"], err["detail"]) == ("go.micro.server", code, detail)
    # The connection keeps serving.
    await stream.send_all(
        _request({"Content-Type": "application/json", "Micro-Endpoint": "Greeter.Hello"}, b"{}")
    )
    _, headers, body = await _read_response(stream, bytearray())
    assert json.loads(body) == {"greeting": "Hello "}
    await stream.aclose()


async def test_json_rpc_and_proto_rpc_envelopes(service):
    stream = await _open(service)
    body = b'{"method":"Greeter.Hello","params":[{"name":"rpc"}],"id":7}'
    await stream.send_all(
        _request({"Content-Type": "application/json-rpc", "Micro-Endpoint": "Greeter.Hello"}, body)
    )
    _, _, rsp = await _read_response(stream, bytearray())
    assert json.loads(rsp) == {"id": 7, "result": {"greeting": "Hello rpc"}, "error": None}
    await stream.aclose()


async def test_raw_bytes_server_called_by_trimicro_client(nursery):
    """A hand-written mucp server: the trimicro client's request bytes and reply parsing."""
    seen: list[bytes] = []

    async def handler(stream: trio.SocketStream) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += await stream.receive_some()
        head, _, body = buf.partition(b"\r\n\r\n")
        length = int(
            next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
        )
        while len(body) < length:
            body += await stream.receive_some()
        seen.append(head)
        reply = b'{"greeting":"raw"}\n'
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nMicro-Id: 1\r\nContent-Length: %d\r\n\r\n%s"
            % (len(reply), reply)
        )
        err = b'{"id":"raw","code":409,"detail":"taken","status":"Conflict"}'
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += await stream.receive_some()
        await stream.send_all(b"HTTP/1.1 200 OK\r\nMicro-Error: " + err + b"\r\nContent-Length: 0\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += await stream.receive_some()
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\nMicro-Error: rpc: can't find service raw\r\nContent-Length: 0\r\n\r\n"
        )

    listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    async with trimicro.open_client(registry=trimicro.registry.MemoryRegistry()) as client:
        rsp = await client.call(
            "raw",
            "Raw.Call",
            {"a": 1},
            content_type="application/json",
            address=f"127.0.0.1:{port}",
            metadata={"user": "u"},
        )
        assert rsp == {"greeting": "raw"}
        head = seen[0].decode()
        assert head.startswith("POST / HTTP/1.1\r\n")
        for needed in (
            "Micro-Service: raw",
            "Micro-Endpoint: Raw.Call",
            "Micro-Method: Raw.Call",
            "Content-Type: application/json",
            "User: u",
            "Timeout: ",
        ):
            assert needed in head
        with pytest.raises(trimicro.MicroError) as info:
            await client.call(
                "raw", "Raw.Call", {}, content_type="application/json", address=f"127.0.0.1:{port}", retries=0
            )
        assert info.value == trimicro.MicroError("raw", 409, "taken", "Conflict")
        with pytest.raises(trimicro.MicroError) as info:
            await client.call(
                "raw", "Raw.Call", {}, content_type="application/json", address=f"127.0.0.1:{port}", retries=0
            )
        assert info.value.code == 500 and info.value.detail == "rpc: can't find service raw"
