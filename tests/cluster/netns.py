"""Simulated hosts for cluster tests: network namespaces joined by a bridge, 10.77.0.x inside only.

``async with open_cluster(["client", "etcd", "n1", "n2", "n3"]) as cluster:`` creates, as root:

- a *switch*: a process in a new network namespace (``unshare --net sleep``) holding bridge ``br0``;
- per host, a process in its own new network namespace with ``eth0`` (a veth pair whose other end is
  a port of the bridge, created directly inside the switch) addressed ``10.77.0.<i>/24``, and ``lo``.

No interface or address is ever added to the namespace the tests run in: the 10.77.0.0/24 network
exists only between these namespaces, so nothing can leak onto a real network. A host runs commands
with ``host.command(argv)`` (``nsenter -t <pid> -n argv``: the command's own PID, since nsenter execs
it). Leaving the block kills the holder processes, and the namespaces and links go with them.

:class:`ClusterUnavailable` (tests skip on it) says why it cannot be built: not root, no ``unshare``,
``nsenter`` or ``ip``, or the kernel refusing namespaces (unprivileged containers).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import attrs
import trio

__all__ = ["Cluster", "ClusterUnavailable", "Host", "open_cluster"]

SUBNET = "10.77.0"
_TOOLS = ("unshare", "nsenter", "ip")


class ClusterUnavailable(RuntimeError):
    """Network namespaces cannot be made here; the message says why."""


@attrs.define(eq=False)
class Host:
    name: str
    address: str  # 10.77.0.x
    pid: int

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` to run inside this host's network namespace."""
        return ["nsenter", "-t", str(self.pid), "-n", *argv]


@attrs.define(eq=False)
class Cluster:
    hosts: dict[str, Host]
    switch_pid: int

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]


def check_available() -> None:
    if os.geteuid() != 0:
        raise ClusterUnavailable("network namespaces need root")
    missing = [t for t in _TOOLS if shutil.which(t) is None]
    if missing:
        raise ClusterUnavailable(f"missing tools: {', '.join(missing)}")


async def _run(argv: Sequence[str]) -> None:
    with trio.fail_after(10):
        result = await trio.run_process(list(argv), capture_stdout=True, capture_stderr=True, check=False)
    if result.returncode:
        raise ClusterUnavailable(f"{' '.join(argv)} failed: {result.stderr.decode(errors='replace').strip()}")


async def _holder(holders: list[trio.Process]) -> int:
    """A process alone in a new network namespace (it only sleeps): the namespace lives as it lives."""
    proc = await trio.lowlevel.open_process(
        ["unshare", "--net", "sleep", "infinity"], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    holders.append(proc)
    # unshare execs sleep once the namespace exists; wait until /proc shows the new namespace.
    own = os.readlink("/proc/self/ns/net")
    with trio.fail_after(5):
        while True:
            if proc.returncode is not None or proc.poll() is not None:
                err = b""
                if proc.stderr is not None:
                    err = await proc.stderr.receive_some(4096)
                raise ClusterUnavailable(f"unshare --net failed: {err.decode(errors='replace').strip()}")
            try:
                if os.readlink(f"/proc/{proc.pid}/ns/net") != own:
                    return proc.pid
            except OSError:
                pass
            await trio.sleep(0.01)  # polling /proc: an external process gives no event to wait on


@asynccontextmanager
async def open_cluster(names: Sequence[str]) -> AsyncIterator[Cluster]:
    """Hosts ``names[i]`` at ``10.77.0.<i+1>``; see the module docstring."""
    check_available()
    if len(names) > 250:
        raise ValueError("at most 250 hosts")
    holders: list[trio.Process] = []
    try:
        switch = await _holder(holders)
        sw = ["nsenter", "-t", str(switch), "-n"]
        await _run([*sw, "ip", "link", "add", "br0", "type", "bridge"])
        await _run([*sw, "ip", "link", "set", "br0", "up"])
        hosts: dict[str, Host] = {}
        for i, name in enumerate(names, start=1):
            pid = await _holder(holders)
            port = f"p{i}"
            await _run([*sw, *f"ip link add {port} type veth peer name eth0 netns {pid}".split()])
            await _run([*sw, "ip", "link", "set", port, "master", "br0", "up"])
            inside = ["nsenter", "-t", str(pid), "-n"]
            await _run([*inside, "ip", "addr", "add", f"{SUBNET}.{i}/24", "dev", "eth0"])
            await _run([*inside, "ip", "link", "set", "eth0", "up"])
            await _run([*inside, "ip", "link", "set", "lo", "up"])
            hosts[name] = Host(name, f"{SUBNET}.{i}", pid)
        yield Cluster(hosts, switch)
    finally:
        with trio.CancelScope(shield=True):
            for proc in holders:
                if proc.returncode is None:
                    proc.kill()
                await proc.wait()
