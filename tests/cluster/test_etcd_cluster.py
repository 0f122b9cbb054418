"""trimicro.testing.etcd.open_etcd_cluster: a 3-member etcd cluster on loopback. The registry is given
all three endpoints; losing the member it talks to moves it to another one, and what was registered
is still there (the cluster keeps its quorum with two of three)."""

from __future__ import annotations

import pytest
import trio

from trimicro.registry import Node, Service
from trimicro.registry.etcd import EtcdRegistry
from trimicro.testing.etcd import EtcdNotFound, find_etcd, open_etcd_cluster

pytestmark = [pytest.mark.loopback, pytest.mark.timeout(60)]


async def test_losing_one_of_three_members_keeps_the_registry_working() -> None:
    try:
        find_etcd()
    except EtcdNotFound as exc:
        pytest.skip(str(exc))
    async with open_etcd_cluster(3) as members:
        async with EtcdRegistry(addresses=[m.endpoint for m in members], timeout=2.0) as registry:
            await registry.register(Service("greeter", nodes=[Node("g-1", "127.0.0.1:1")]), ttl=30)
            await members[0].stop()  # the endpoint the registry uses first
            with trio.fail_after(20):
                [svc] = await registry.get_service("greeter")
            assert [n.id for n in svc.nodes] == ["g-1"]
            await registry.register(Service("greeter", nodes=[Node("g-2", "127.0.0.1:2")]), ttl=30)
            [svc] = await registry.get_service("greeter")
            assert {n.id for n in svc.nodes} == {"g-1", "g-2"}
            await members[0].start()  # it rejoins with its data dir
            assert members[0].running
