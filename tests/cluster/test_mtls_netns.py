"""Mutual TLS across simulated hosts (tests/cluster/netns.py): two greeter nodes on their own hosts
serve with a server certificate naming their 10.77.0.x addresses and require a client certificate from
the test's CA (``MICRO_SERVER_TLS_*``); they register by mdns on the LAN. Over mucp/HTTP and then gRPC
(the same nodes: one port serves both), a client with the CA's client certificate finds both by mdns
and calls each, then makes a bounded load phase while two other clients on another host hammer the
same nodes, one presenting a rogue CA's certificate and one none.

Every trusted call succeeds (0 failed); every untrusted call fails, with an error naming TLS and the
certificate; after the hammering the nodes still serve. Certificates are made in the test
(tests/_tls.py, as tests/test_mtls.py on loopback). Skips when namespaces cannot be made.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests._tls import Pki, make_pki
from tests.cluster.netns import Cluster, ClusterUnavailable, open_cluster
from tests.cluster.test_mdns_netns import NODE, command, lan_env
from tests.cluster.test_netns import spawn

pytestmark = [pytest.mark.netns, pytest.mark.timeout(60)]

DRIVER = [sys.executable, "-m", "tests.cluster._driver"]
GOOD_CALLS, ROGUE_CALLS = 1500, 400  # per transport; the rogue clients make no retries


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    try:
        async with open_cluster(["client", "rogue", "n1", "n2"]) as c:
            yield c
    except ClusterUnavailable as exc:
        pytest.skip(f"no network namespaces: {exc}")


async def test_mtls_nodes_serve_trusted_clients_and_refuse_others(cluster: Cluster, tmp_path: Path) -> None:
    n1, n2, client, rogue = cluster["n1"], cluster["n2"], cluster["client"], cluster["rogue"]
    pki: Pki = make_pki(tmp_path, server_ips=[n1.address, n2.address])
    async with (
        spawn(n1, NODE, {**lan_env(n1), **pki.server_env()}) as p1,
        spawn(n2, NODE, {**lan_env(n2), **pki.server_env()}) as p2,
    ):
        ids = sorted([(await p1.next_event())["id"], (await p2.next_event())["id"]])
        for transport in ("http", "grpc"):
            base = {"MICRO_TRANSPORT": transport}
            async with (
                spawn(client, DRIVER, {**lan_env(client), **base, **pki.client_env("trusted")}) as good,
                spawn(rogue, DRIVER, {**lan_env(rogue), **base, **pki.client_env("rogue"),
                                      "MICRO_CLIENT_RETRIES": "0"}) as rogue_ca,
                spawn(rogue, DRIVER, {**lan_env(rogue), **base, **pki.client_env("none"),
                                      "MICRO_CLIENT_RETRIES": "0"}) as no_cert,
            ):  # fmt: skip
                for driver in (good, rogue_ca, no_cert):
                    assert (await command(driver, "open"))["event"] == "open"
                    assert (await command(driver, "nodes 2 10"))["ids"] == ids  # mdns works for all
                answers = (await command(good, "each"))["answers"]
                assert answers == {i: f"Hello each from {i}" for i in ids}, transport

                await good.send(f"run {transport}-trusted {GOOD_CALLS}")
                await rogue_ca.send(f"run {transport}-rogue-ca {ROGUE_CALLS}")
                await no_cert.send(f"run {transport}-no-cert {ROGUE_CALLS}")
                trusted, *refused = [await d.next_event(40) for d in (good, rogue_ca, no_cert)]
                print(f"[mtls netns {transport}] trusted: ok={trusted['ok']} failed={trusted['failures']} "
                      f"by_node={trusted['by_node']}")  # fmt: skip
                assert trusted["failures"] == 0, trusted["failed"]
                assert set(trusted["by_node"]) == set(ids)
                for result in refused:
                    print(f"[mtls netns {transport}] {result['name']}: ok={result['ok']} failed={result['failures']} "
                          f"in {result['seconds']:.2f}s, first errors={result['failed'][:2]}")  # fmt: skip
                    assert result["ok"] == 0 and result["failures"] == ROGUE_CALLS
                    first = result["failed"][0].lower()
                    assert "tls" in first and "certificate" in first, result["failed"][0]
                after = await command(good, f"run {transport}-after 300")
                assert after["failures"] == 0 and set(after["by_node"]) == set(ids)
                for driver in (good, rogue_ca, no_cert):
                    await driver.send("quit")
