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


async def _cli(*args: str) -> tuple[int, str, str]:
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    with trio.fail_after(30):
        r = await trio.run_process(
            [sys.executable, "-m", "trimicro.cli", *args, "--registry", "mdns"],
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
