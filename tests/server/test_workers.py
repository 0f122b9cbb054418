"""``server_workers``: N processes on one port (SO_REUSEPORT), registered as N nodes, restarted when
they crash, stopped together by SIGTERM. Real processes, mdns on loopback."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from pathlib import Path

import pytest
import trio

import trimicro

pytestmark = [pytest.mark.loopback, pytest.mark.slow]

SCRIPT = """
import os, trio, trimicro

class Who:
    async def Pid(self, req: dict, ctx: trimicro.Context) -> dict:
        return {"pid": os.getpid(), "worker": os.environ.get("TRIMICRO_WORKER")}

trio.run(trimicro.Service(os.environ["SVC_NAME"], handlers=[Who()]).run)
"""


async def _pids(client: trimicro.Client, name: str, address: str, want: int) -> set[int]:
    """Call through fresh connections until ``want`` distinct worker pids answered (bounded)."""
    seen: set[int] = set()
    for _ in range(200):
        async with trimicro.open_client(registry="memory") as fresh:  # a new connection each time
            rsp = await fresh.call(name, "Who.Pid", {}, address=address, content_type="application/json")
        seen.add(rsp["pid"])
        if len(seen) >= want:
            break
    return seen


async def test_two_workers_share_a_port_restart_and_stop_together(tmp_path: Path) -> None:
    name = f"who-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "svc.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, SVC_NAME=name, MICRO_REGISTRY="mdns", MICRO_SERVER_WORKERS="2")
    with trio.fail_after(90):
        proc = await trio.lowlevel.open_process([sys.executable, str(script)], env=env)
        try:
            async with trimicro.open_client(registry="mdns", client_content_type="application/json") as client:
                registry = client.selector.registry  # type: ignore[attr-defined]
                nodes: list[trimicro.Node] = []
                while len(nodes) < 2:
                    await trio.sleep(0.2)
                    nodes = [n for s in await registry.get_service(name) for n in s.nodes]
                assert len({n.address for n in nodes}) == 1, nodes  # one port, two nodes
                address = nodes[0].address
                first = await _pids(client, name, address, 2)
                assert len(first) == 2

                victim = sorted(first)[0]
                os.kill(victim, signal.SIGKILL)
                while True:  # the supervisor starts a replacement on the same port
                    await trio.sleep(0.2)
                    try:
                        now = await _pids(client, name, address, 2)
                    except trimicro.MicroError:
                        continue
                    if victim not in now and len(now) == 2:
                        break
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    for pid in first | now:  # every worker stopped with the supervisor
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_server_workers_is_validated() -> None:
    with pytest.raises(ValueError, match="server_workers must be at least 1"):
        trimicro.load_options({"server_workers": 0})
    with pytest.raises(ValueError, match="server_workers must be a whole number"):
        trimicro.load_options({"server_workers": "two"})
