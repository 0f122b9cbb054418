"""The ``trimicro`` command against a live service found through mdns on loopback."""

from __future__ import annotations

import json
import os
import sys

import pytest
import trio

import trimicro

pytestmark = pytest.mark.loopback


class Greeter:
    async def Hello(self, req: dict, ctx: trimicro.Context) -> dict:
        return {"greeting": "Hello " + req.get("name", "")}


async def _cli(*args: str, registry: str = "mdns") -> tuple[int, str, str]:
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    with trio.fail_after(30):
        r = await trio.run_process(
            [sys.executable, "-m", "trimicro.cli", *args, "--registry", registry],
            capture_stdout=True, capture_stderr=True, check=False, env=env,
        )  # fmt: skip
    return r.returncode, r.stdout.decode(), r.stderr.decode()


async def test_cli_lists_describes_calls_and_reports_errors():
    async with trimicro.open_service("cli-greeter", registry="mdns", handlers=[Greeter()]):
        rc, out, _ = await _cli("services")
        assert rc == 0 and "cli-greeter" in out.split()
        rc, out, _ = await _cli("describe", "cli-greeter")
        assert rc == 0 and json.loads(out)[0]["endpoints"][0]["name"] == "Greeter.Hello"
        rc, out, _ = await _cli("call", "cli-greeter", "Greeter.Hello", '{"name": "John"}')
        assert rc == 0 and json.loads(out) == {"greeting": "Hello John"}
        rc, out, _ = await _cli("health", "cli-greeter")
        assert rc == 0 and json.loads(out) == {"status": "ok"}
        rc, _, err = await _cli("call", "cli-greeter", "Greeter.Nope")
        assert rc == 1 and json.loads(err.strip().splitlines()[-1])["code"] == 404


class Chat:
    async def Shout(self, stream: trimicro.Stream[dict, dict], ctx: trimicro.Context) -> None:
        async for msg in stream:
            await stream.send({"text": msg["text"].upper()})

    async def Count(self, req: dict, stream: trimicro.Stream[dict, dict], ctx: trimicro.Context) -> None:
        for i in range(req["n"]):
            await stream.send({"i": i})


async def _cli_in(stdin: bytes, *args: str) -> tuple[int, str, str]:
    with trio.fail_after(30):
        r = await trio.run_process(
            [sys.executable, "-m", "trimicro.cli", *args, "--registry", "mdns"],
            stdin=stdin, capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    return r.returncode, r.stdout.decode(), r.stderr.decode()


async def test_stream_stats_and_json_output():
    async with trimicro.open_service("cli-chat", registry="mdns", handlers=[Chat(), Greeter()]):
        rc, out, err = await _cli_in(b'{"text": "a"}\n\n{"text": "b"}', "stream", "cli-chat", "Chat.Shout")
        assert (rc, err) == (0, "") and [json.loads(x) for x in out.splitlines()] == [
            {"text": "A"},
            {"text": "B"},
        ]
        rc, out, _ = await _cli_in(b"", "stream", "cli-chat", "Chat.Count", '{"n": 3}')
        assert rc == 0 and [json.loads(x) for x in out.splitlines()] == [{"i": 0}, {"i": 1}, {"i": 2}]
        rc, out, _ = await _cli("services", "--output", "json")
        assert rc == 0 and "cli-chat" in json.loads(out)
        rc, out, _ = await _cli("stats", "cli-chat", "--output", "json")
        (node,) = json.loads(out)
        assert rc == 0 and node["requests"] >= 2 and node["address"].startswith("127.0.0.1:")
        rc, out, _ = await _cli("stats", "cli-chat")  # not a TTY: tab-separated rows, no header
        assert rc == 0 and out.count("\t") == 9 and out.startswith(node["node"])  # 10 columns
        rc, out, err = await _cli("describe", "cli-chat", "--output", "json")
        assert rc == 0 and json.loads(out)[0]["name"] == "cli-chat"


async def _one_line_error(rc: int, out: str, err: str, status: int, *needles: str) -> None:
    assert rc == status, (rc, out, err)
    assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


async def test_errors_are_one_line_without_traceback():
    with trio.fail_after(60):
        r = await trio.run_process(
            [sys.executable, "-m", "trimicro.cli", "services"], capture_stdout=True, capture_stderr=True,
            check=False, env=dict(os.environ, MICRO_REGISTRY="etcdd"),
        )  # fmt: skip
        await _one_line_error(
            r.returncode, r.stdout.decode(), r.stderr.decode(), 2, "unknown registry 'etcdd'", "mdns"
        )
        await _one_line_error(*await _cli("call", "x", "Y.Z", "not json"), 2, "request is not valid JSON")
        await _one_line_error(*await _cli("publish", "t", "{"), 2, "message is not valid JSON")
        await _one_line_error(*await _cli("call", "x", "Y.Z", "--metadata", "novalue"), 2, "k=v")
        await _one_line_error(
            *await _cli("services", "--registry_address", "127.0.0.1:1", registry="etcd"),
            1,
            "etcd unreachable",
        )
        await _one_line_error(*await _cli("stats", "no-such-service"), 1, "not found")
        await _one_line_error(*await _cli("describe", "no-such-service"), 1, "not found")


async def test_empty_listing_says_so():
    env = dict(os.environ, MICRO_REGISTRY="memory")
    with trio.fail_after(30):
        r = await trio.run_process(
            [sys.executable, "-m", "trimicro.cli", "services"],
            capture_stdout=True,
            capture_stderr=True,
            env=env,
        )
    assert r.stdout == b"" and b"no services registered (registry memory)" in r.stderr
    r = await trio.run_process(
        [sys.executable, "-m", "trimicro.cli", "services", "--output", "json"], capture_stdout=True, env=env
    )
    assert json.loads(r.stdout) == []


async def test_help_lists_the_global_flags_everywhere():
    for args in ([], ["call"], ["services"], ["api"]):
        r = await trio.run_process(
            [sys.executable, "-m", "trimicro.cli", *args, "--help"], capture_stdout=True
        )
        out = r.stdout.decode()
        assert "--registry_address" in out and "MICRO_" in out and "--client_request_timeout" in out


async def test_api_without_the_gateway_extra_names_it():
    code = "import sys; sys.modules['hypercorn'] = None; from trimicro.cli import main; sys.exit(main())"
    with trio.fail_after(30):
        r = await trio.run_process(
            [sys.executable, "-c", code, "api", "--registry", "memory", "--address", "127.0.0.1:0"],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    await _one_line_error(
        r.returncode, r.stdout.decode(), r.stderr.decode(), 1, "pip install 'trimicro[gateway]'"
    )


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--allow", "greeter:"], {}, "--allow: allow pattern 'greeter:'"),
        (["--allow", "ok,a:b:c"], {}, "allow pattern 'a:b:c'"),
        ([], {"MICRO_API_ALLOW": "gree ter"}, "allow pattern 'gree ter'"),
        (["--miss_ttl", "-1"], {}, "--miss_ttl must be >= 0"),
        ([], {"MICRO_API_MISS_TTL": "soon"}, "MICRO_API_MISS_TTL must be seconds"),
    ],
)
async def test_api_policy_flags_are_checked_before_starting(args, env, needle):
    with trio.fail_after(30):
        r = await trio.run_process(
            [sys.executable, "-m", "trimicro.cli", "api", "--registry", "memory", "--address", "127.0.0.1:0", *args],
            capture_stdout=True, capture_stderr=True, check=False, env=dict(os.environ, **env),
        )  # fmt: skip
    await _one_line_error(r.returncode, r.stdout.decode(), r.stderr.decode(), 2, needle)
