"""The file registry against the Registry contract: register/get/list/deregister, TTL by mtime,
watch by polling, and two instances on one directory seeing each other (as two processes would).

Time: expiry reads an injected wall clock (so no test waits for a TTL); the watch polls with
``trio.sleep``, which ``autojump_clock`` skips through.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
import trio.testing
from trimicro_registry_file import FileRegistry, from_options

from trimicro.config import Options
from trimicro.errors import RegistryError
from trimicro.registry import Node, Registry, Result, Service


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def svc(node: str = "n1", name: str = "greeter", version: str = "1.0", **meta: str) -> Service:
    return Service(name, version, metadata={"m": "1"}, nodes=[Node(node, f"127.0.0.1:{len(node)}", meta)])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def reg(tmp_path: Path, clock: Clock) -> FileRegistry:
    async with FileRegistry(tmp_path / "registry", clock=clock) as r:
        return r


async def test_is_a_registry_from_options(tmp_path: Path) -> None:
    r = from_options(Options(registry_address=[str(tmp_path / "x")]))
    async with r:
        assert isinstance(r, Registry)
        assert r.directory == tmp_path / "x" and (tmp_path / "x").is_dir()
    assert r.name == "file"


async def test_register_get_list_merges_nodes_per_version(reg: FileRegistry) -> None:
    await reg.register(svc("n1"))
    await reg.register(svc("n2"))
    await reg.register(svc("v2", version="2.0"))
    await reg.register(svc("o1", name="other"))
    got = {s.version: sorted(n.id for n in s.nodes) for s in await reg.get_service("greeter")}
    assert got == {"1.0": ["n1", "n2"], "2.0": ["v2"]}
    assert sorted(s.name for s in await reg.list_services()) == ["greeter", "greeter", "other"]
    assert await reg.get_service("nobody") == []
    [one] = [s for s in await reg.get_service("greeter") if s.version == "2.0"]
    assert one == svc("v2", version="2.0")  # the whole record round-trips, metadata included


async def test_records_are_go_micro_json_one_file_per_node(reg: FileRegistry) -> None:
    await reg.register(svc("n1"))
    path = reg.directory / "greeter" / "n1.json"
    assert Service.from_json(path.read_text()) == svc("n1")
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary left


async def test_deregister_removes_node_then_service(reg: FileRegistry) -> None:
    await reg.register(svc("n1"))
    await reg.register(svc("n2"))
    await reg.deregister(svc("n1"))
    assert [n.id for s in await reg.get_service("greeter") for n in s.nodes] == ["n2"]
    await reg.deregister(svc("n2"))
    assert await reg.get_service("greeter") == []
    assert not (reg.directory / "greeter").exists()
    await reg.deregister(svc("n2"))  # again: nothing to do


async def test_ttl_is_the_mtime(reg: FileRegistry, clock: Clock) -> None:
    await reg.register(svc("n1"), ttl=10)
    await reg.register(svc("forever"))
    assert os.stat(reg.directory / "greeter" / "n1.json").st_mtime == clock.now + 10
    clock.now += 9
    assert len((await reg.get_service("greeter"))[0].nodes) == 2
    await reg.register(svc("n1"), ttl=10)  # the heartbeat pushes the expiry forward
    clock.now += 9
    assert len((await reg.get_service("greeter"))[0].nodes) == 2
    clock.now += 2
    assert [n.id for s in await reg.get_service("greeter") for n in s.nodes] == ["forever"]
    await reg.register(svc("forever"))  # a later registration sweeps the expired file
    assert sorted(p.name for p in (reg.directory / "greeter").iterdir()) == ["forever.json"]


async def test_default_ttl(tmp_path: Path, clock: Clock) -> None:
    async with FileRegistry(tmp_path, default_ttl=5, clock=clock) as r:
        await r.register(svc())
        clock.now += 6
        assert await r.get_service("greeter") == []


async def test_two_registries_on_one_directory_see_each_other(tmp_path: Path) -> None:
    async with FileRegistry(tmp_path) as a, FileRegistry(tmp_path) as b:
        await a.register(svc("from-a"))
        await b.register(svc("from-b"))
        for r in (a, b):
            assert sorted(n.id for s in await r.get_service("greeter") for n in s.nodes) == [
                "from-a",
                "from-b",
            ]


async def test_names_cannot_escape_the_directory(reg: FileRegistry) -> None:
    await reg.register(svc("../../etc/passwd", name=".."))
    assert [p.name for p in reg.directory.iterdir()] == ["%2E."]
    [got] = await reg.get_service("..")
    assert got.nodes[0].id == "../../etc/passwd"
    with pytest.raises(RegistryError):
        await reg.register(svc("", name="x"))


async def test_stray_and_broken_files_are_skipped(reg: FileRegistry) -> None:
    await reg.register(svc("n1"))
    (reg.directory / "greeter" / "junk.json").write_text("{not json")
    os.utime(reg.directory / "greeter" / "junk.json", (4e9, 4e9))
    (reg.directory / "greeter" / "notes.txt").write_text("hello")
    assert [n.id for s in await reg.get_service("greeter") for n in s.nodes] == ["n1"]


async def test_unusable_directory_is_a_registry_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(RegistryError):
        async with FileRegistry(tmp_path / "file" / "sub"):
            pass


async def test_watch_sees_create_update_delete(
    reg: FileRegistry, clock: Clock, autojump_clock: trio.testing.MockClock
) -> None:
    await reg.register(svc("before"))
    async with reg.watch() as watcher:
        with trio.fail_after(5):
            await reg.register(svc("n1"))
            first: Result = await watcher.__anext__()
            assert (first.action, first.service.nodes[0].id) == ("create", "n1")
            await reg.register(svc("n1", color="red"))
            second = await watcher.__anext__()
            assert second.action == "update" and second.service.nodes[0].metadata == {"color": "red"}
            await reg.deregister(svc("n1"))
            third = await watcher.__anext__()
            assert (third.action, third.service.nodes[0].id) == ("delete", "n1")
            await reg.register(svc("short"), ttl=1)
            assert (await watcher.__anext__()).action == "create"
            clock.now += 2  # expiry is a delete too
            gone = await watcher.__anext__()
            assert (gone.action, gone.service.nodes[0].id) == ("delete", "short")


async def test_watch_one_service(reg: FileRegistry, autojump_clock: trio.testing.MockClock) -> None:
    async with reg.watch("greeter") as watcher:
        with trio.fail_after(5):
            await reg.register(svc("o1", name="other"))
            await reg.register(svc("g1"))
            got = await watcher.__anext__()
            assert (got.service.name, got.action) == ("greeter", "create")


async def test_watch_ends_when_closed(reg: FileRegistry, autojump_clock: trio.testing.MockClock) -> None:
    async with reg.watch() as watcher:
        pass
    assert [r async for r in watcher] == []
