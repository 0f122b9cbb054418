"""The mdns registry across simulated hosts (tests/cluster/netns.py): greeter nodes on three hosts
register by multicast DNS on their LAN interface (``MICRO_MDNS_INTERFACES=<eth0 address>``), and a
client on a fourth host discovers them with no registry server at all, over a bridge on 10.77.0.0/24
that exists only inside namespaces this test creates.

- All three nodes are listed and each answers; a load phase spreads over all three.
- One node is SIGKILLed mid-phase (no goodbye): no call fails (the retry goes elsewhere, the node is
  ejected), and once its records' TTL (3 s here) runs out the client's registry forgets it.
- One node with a 60 s TTL is SIGTERMed: it deregisters, its goodbye packets (TTL 0) reach the client,
  and the client forgets it long before the TTL could have.
- With the default configuration (no ``MICRO_MDNS_INTERFACES``) a node's mDNS stays on its own host's
  loopback: a client on that host finds it, a client on another host does not, and a passive listener
  on the LAN sees no packet from it at all.

Skips with the reason when namespaces cannot be made (not root, no ``unshare``/``nsenter``/``ip``).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from tests.cluster.netns import Cluster, ClusterUnavailable, Host, open_cluster
from tests.cluster.test_netns import Proc, spawn

pytestmark = [pytest.mark.netns, pytest.mark.timeout(60)]

PYTHON = sys.executable
NODE = [PYTHON, "-m", "tests._nodes.greeter_node"]
DRIVER = [PYTHON, "-m", "tests.cluster._driver"]


def lan_env(host: Host, *, ttl: str = "3s", interval: str = "1s") -> dict[str, str]:
    """mdns on ``host``'s LAN interface only (its eth0 address), serving on that address too."""
    return {
        "MICRO_REGISTRY": "mdns",
        "MICRO_MDNS_INTERFACES": host.address,
        "MICRO_SERVER_ADDRESS": f"{host.address}:0",
        "MICRO_REGISTER_TTL": ttl,
        "MICRO_REGISTER_INTERVAL": interval,
    }


def default_env(host: Host) -> dict[str, str]:
    """mdns with the default interfaces (loopback only); the server itself listens on the LAN."""
    return {
        "MICRO_REGISTRY": "mdns",
        "MICRO_SERVER_ADDRESS": f"{host.address}:0",
        "MICRO_MDNS_INTERFACES": "",
    }


async def command(driver: Proc, line: str, timeout: float = 30) -> dict[str, Any]:
    await driver.send(line)
    event = await driver.next_event(timeout)
    print(f"[mdns netns] {line}: {event}")
    return event


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    try:
        async with open_cluster(["client", "n1", "n2", "n3"]) as c:
            yield c
    except ClusterUnavailable as exc:
        pytest.skip(f"no network namespaces: {exc}")


async def test_mdns_discovery_across_hosts_sigkill_and_goodbye(cluster: Cluster) -> None:
    n1, n2, n3 = cluster["n1"], cluster["n2"], cluster["n3"]
    async with (
        spawn(n1, NODE, lan_env(n1)) as p1,
        spawn(n2, NODE, lan_env(n2)) as p2,
        spawn(n3, NODE, lan_env(n3, ttl="60s", interval="20s")) as p3,  # gone before 60 s: a goodbye
    ):
        infos = [await p.next_event() for p in (p1, p2, p3)]
        assert all(i["event"] == "started" for i in infos), infos
        assert [i["address"].rpartition(":")[0] for i in infos] == [n1.address, n2.address, n3.address]
        id1, id2, id3 = (i["id"] for i in infos)
        async with spawn(cluster["client"], DRIVER, lan_env(cluster["client"])) as driver:
            assert (await command(driver, "open"))["event"] == "open"
            listed = await command(driver, "nodes 3 10")
            assert listed["ids"] == sorted([id1, id2, id3])
            answers = (await command(driver, "each"))["answers"]
            assert answers == {i: f"Hello each from {i}" for i in (id1, id2, id3)}
            healthy = await command(driver, "run healthy 600")
            assert healthy["failures"] == 0 and set(healthy["by_node"]) == {id1, id2, id3}

            # SIGKILL: no goodbye; the registry forgets n1 when its records' 3 s TTL runs out.
            await driver.send("runfor sigkilled 2")
            await trio.sleep(0.5)  # the fault lands mid-phase (a moment, not a synchronisation)
            p1.signal(signal.SIGKILL)
            killed_at = trio.current_time()
            killed = await driver.next_event(30)
            print(f"[mdns netns] sigkilled: {killed}")
            assert killed["failures"] == 0, killed["failed"]
            assert set(killed["by_node"]) >= {id2, id3}
            after_kill = await command(driver, "nodes 2 10")
            assert after_kill["ids"] == sorted([id2, id3])
            print(
                f"[mdns netns] SIGKILLed node forgotten {trio.current_time() - killed_at:.1f}s after the kill"
            )
            steady = await command(driver, "run after-sigkill 600")
            assert steady["failures"] == 0 and id1 not in steady["by_node"]

            # SIGTERM: the node deregisters and sends goodbyes; its 60 s TTL plays no part.
            p3.signal(signal.SIGTERM)
            termed_at = trio.current_time()
            gone = await command(driver, "nodes 1 10")
            assert gone["ids"] == [id2]
            print(
                f"[mdns netns] SIGTERMed node forgotten {trio.current_time() - termed_at:.2f}s after the signal"
            )
            assert (await p3.next_event())["event"] == "stopped"
            assert gone["seconds"] < 10  # far inside the 60 s TTL: only the goodbye explains it
            last = await command(driver, "run after-sigterm 300")
            assert last["failures"] == 0 and set(last["by_node"]) == {id2}
            await driver.send("quit")


async def test_default_mdns_stays_on_its_host(cluster: Cluster) -> None:
    """n1 runs the default configuration; n2 opts its LAN interface in; the client is on the LAN."""
    n1, n2, client = cluster["n1"], cluster["n2"], cluster["client"]
    async with spawn(client, [PYTHON, "-m", "tests.cluster._mdns_listen", client.address], {}) as listener:
        assert (await listener.next_event())["event"] == "listening"
        async with spawn(n1, NODE, default_env(n1)) as quiet, spawn(n2, NODE, lan_env(n2)) as loud:
            quiet_id, loud_id = (await quiet.next_event())["id"], (await loud.next_event())["id"]
            async with (
                spawn(client, DRIVER, lan_env(client)) as remote,
                spawn(n1, DRIVER, default_env(n1)) as local,  # n1's own loopback: the node is there
            ):
                assert (await command(local, "open"))["event"] == "open"
                assert (await command(local, "nodes 1 10"))["ids"] == [quiet_id]
                assert (await command(remote, "open"))["event"] == "open"
                # Wait the full 3 s for a second node: the default one never shows up across the LAN.
                assert (await command(remote, "nodes 2 3"))["ids"] == [loud_id]
                await remote.send("quit")
                await local.send("quit")
        sources: set[str] = set()
        while True:  # everything heard so far (the drivers ran for seconds after the nodes started)
            try:
                sources.add(listener.inbox.receive_nowait()["source"])
            except trio.WouldBlock:
                break
        print(f"[mdns netns] mDNS sources seen on the LAN: {sorted(sources)}")
        assert n2.address in sources and client.address in sources  # the listener hears the LAN
        assert n1.address not in sources
