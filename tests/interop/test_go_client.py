"""A real Go Micro v5 client calling a trimicro greeter found through the shared etcd: unary and streams."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import trio

import trimicro
from tests.interop._go import PyGreeter, go_flags, open_go, py_service, run_go, wait_idle

pytestmark = pytest.mark.loopback


def client_args(etcd: str, service: str, *extra: str) -> list[str]:
    return ["client", *go_flags(etcd), "--service", service, *extra]


@pytest.mark.parametrize("content_type", ["application/json", "application/protobuf"])
async def test_go_client_unary(go_interop: Path, shared_etcd: str, uniq: str, content_type: str) -> None:
    name = f"greeter-py-{uniq}"
    greeter = PyGreeter(name)
    async with trimicro.open_service(service=py_service(name, shared_etcd, greeter)):
        go = await run_go(
            go_interop,
            client_args(
                shared_etcd, name, "--request", '{"name":"Ann"}', "--content_type", content_type,
                "--metadata", "X-Trace=t1,Team=blue",
            ),
        )  # fmt: skip
    assert go.returncode == 0, go.describe()
    [result] = go.events
    assert result["ok"] is True
    assert result["response"] == {"greeting": "Hello Ann"}
    [md] = greeter.hello_metadata
    assert md.get("X-Trace") == "t1" and md.get("Team") == "blue"


async def test_go_client_gets_python_error_verbatim(go_interop: Path, shared_etcd: str, uniq: str) -> None:
    name = f"greeter-py-{uniq}"
    async with trimicro.open_service(service=py_service(name, shared_etcd, PyGreeter(name))):
        go = await run_go(
            go_interop,
            client_args(shared_etcd, name, "--endpoint", "Greeter.Fail", "--request", '{"name":"Eve"}'),
        )
    assert go.returncode == 3, go.describe()
    [result] = go.events
    expected = {"id": name, "code": 400, "detail": "bad name Eve", "status": "Bad Request"}
    assert result["ok"] is False
    assert result["error"] == expected
    assert json.loads(result["error_text"]) == expected  # errors.Parse saw our JSON as a *errors.Error


async def test_go_client_unknown_endpoint_is_a_typed_error(
    go_interop: Path, shared_etcd: str, uniq: str
) -> None:
    name = f"greeter-py-{uniq}"
    async with trimicro.open_service(service=py_service(name, shared_etcd, PyGreeter(name))):
        go = await run_go(go_interop, client_args(shared_etcd, name, "--endpoint", "Greeter.Nope", "--raw"))
    assert go.returncode == 3, go.describe()
    [result] = go.events
    assert result["error"]["code"] == 404
    assert "Greeter.Nope" in result["error"]["detail"] or "Nope" in result["error"]["detail"]


async def test_go_deadline_cancels_python_handler(go_interop: Path, shared_etcd: str, uniq: str) -> None:
    """Go sends only its dial timeout in ``Timeout`` (5 s) but closes the connection when its context
    expires; the trimicro server must take that as the end of the call and cancel the handler."""
    name = f"greeter-py-{uniq}"
    greeter = PyGreeter(name)
    async with trimicro.open_service(service=py_service(name, shared_etcd, greeter)) as svc:
        go = await run_go(
            go_interop,
            client_args(
                shared_etcd, name, "--endpoint", "Greeter.Slow", "--request", '{"sleep_ms":10000}',
                "--timeout", "300ms",
            ),
        )  # fmt: skip
        assert go.returncode == 3, go.describe()
        [result] = go.events
        assert result["error"]["code"] == 408
        assert result["elapsed_ms"] < 3000
        with trio.fail_after(3):
            await greeter.slow_cancelled.wait()
        assert not greeter.slow_finished.is_set()
        assert svc.server.stats.in_flight == 0
        # The server keeps serving.
        again = await run_go(go_interop, client_args(shared_etcd, name, "--request", '{"name":"after"}'))
        assert again.events[0]["response"] == {"greeting": "Hello after"}


# ---------------------------------------------------------------- streams, Go client -> trimicro server


@pytest.mark.parametrize("content_type", ["application/json", "application/protobuf"])
async def test_go_client_server_stream(
    go_interop: Path, shared_etcd: str, uniq: str, content_type: str
) -> None:
    name = f"greeter-py-{uniq}"
    async with trimicro.open_service(service=py_service(name, shared_etcd, PyGreeter(name))):
        go = await run_go(
            go_interop,
            client_args(
                shared_etcd, name, "--endpoint", "Greeter.Stream", "--request", '{"count":3}',
                "--content_type", content_type,
            ),
        )  # fmt: skip
    assert go.returncode == 0, go.describe()
    got = [ev["message"] for ev in go.all("recv")]
    # printed by the Go program as protojson (int64 as strings)
    assert got == [{"count": str(i), "message": f"msg {i}"} for i in range(3)]
    assert go.all("done")[0]["ok"] is True


async def test_go_client_server_stream_error_after_data(
    go_interop: Path, shared_etcd: str, uniq: str
) -> None:
    name = f"greeter-py-{uniq}"
    async with trimicro.open_service(service=py_service(name, shared_etcd, PyGreeter(name))):
        go = await run_go(
            go_interop,
            client_args(shared_etcd, name, "--endpoint", "Greeter.Stream", "--request", '{"count":-1}'),
        )
    assert [ev["message"] for ev in go.all("recv")] == [{"count": "-1", "message": "before error"}]
    [done] = go.all("done")
    assert done["ok"] is False
    assert done["error"] == {"id": name, "code": 400, "detail": "negative count -1", "status": "Bad Request"}


async def test_go_client_stream_reaches_python_eos(go_interop: Path, shared_etcd: str, uniq: str) -> None:
    """Go v5 cannot half-close: it sends EOS and drops the connection. The handler still sees a clean
    end of its input (EOS), not an error, and the service keeps serving."""
    name = f"greeter-py-{uniq}"
    greeter = PyGreeter(name)
    async with trimicro.open_service(service=py_service(name, shared_etcd, greeter)) as svc:
        go = await run_go(
            go_interop, client_args(shared_etcd, name, "--endpoint", "Greeter.Sum", "--count", "4")
        )
        assert go.returncode == 0, go.describe()
        assert len(go.all("sent")) == 4
        with trio.fail_after(5):
            await greeter.sum_done.wait()
        assert greeter.sums == [(1 + 2 + 3 + 4, 4)]
        await wait_idle(svc)
        again = await run_go(go_interop, client_args(shared_etcd, name, "--request", '{"name":"x"}'))
        assert again.events[0]["ok"] is True


@pytest.mark.parametrize("content_type", ["application/json", "application/protobuf"])
async def test_go_client_bidi_stream(
    go_interop: Path, shared_etcd: str, uniq: str, content_type: str
) -> None:
    name = f"greeter-py-{uniq}"
    greeter = PyGreeter(name)
    async with trimicro.open_service(service=py_service(name, shared_etcd, greeter)):
        go = await run_go(
            go_interop,
            client_args(
                shared_etcd,
                name,
                "--endpoint",
                "Greeter.Echo",
                "--count",
                "3",
                "--content_type",
                content_type,
            ),
        )
        assert go.returncode == 0, go.describe()
        assert [ev["message"] for ev in go.all("recv")] == [
            {"text": f"echo {i}", "seq": str(i)} for i in range(3)
        ]
        with trio.fail_after(5):
            await greeter.echo_done.wait()  # the handler saw EOS, not a cancellation
    assert greeter.echo_count == 3
    assert not greeter.echo_cancelled.is_set()


async def test_go_client_killed_mid_stream_cancels_python_handler(
    go_interop: Path, shared_etcd: str, uniq: str
) -> None:
    name = f"greeter-py-{uniq}"
    greeter = PyGreeter(name)
    greeter.echo_stall = True
    async with trimicro.open_service(service=py_service(name, shared_etcd, greeter)) as svc:
        async with open_go(
            go_interop, client_args(shared_etcd, name, "--endpoint", "Greeter.Echo", "--count", "5")
        ) as go:
            await go.expect("recv")
            with trio.fail_after(5):
                await greeter.echo_first.wait()
            go.signal(signal.SIGKILL)
            with trio.fail_after(5):
                await greeter.echo_cancelled.wait()
        await wait_idle(svc)
        again = await run_go(go_interop, client_args(shared_etcd, name, "--request", '{"name":"y"}'))
        assert again.events[0]["response"] == {"greeting": "Hello y"}


async def test_python_server_gone_mid_stream_go_client_gets_error(
    go_interop: Path, shared_etcd: str, uniq: str
) -> None:
    """The trimicro service stops (short grace) with a Go bidi stream stalled: Go's client ends with an
    error, promptly, instead of hanging."""
    name = f"greeter-py-{uniq}"
    greeter = PyGreeter(name)
    greeter.echo_stall = True
    service = py_service(name, shared_etcd, greeter, server_grace_period=0.2)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        async with open_go(
            go_interop, client_args(shared_etcd, name, "--endpoint", "Greeter.Echo", "--count", "5")
        ) as go:
            await go.expect("recv")
            with trio.fail_after(5):
                await greeter.echo_first.wait()
            service.stop()
            with trio.fail_after(5):
                await greeter.echo_cancelled.wait()
            done = await go.expect("done", timeout=10)
    assert done["ok"] is False
    # Go's transport error for a connection that ended mid-stream
    assert (done["error"]["id"], done["error"]["code"]) == ("go.micro.client.transport", 500), done
