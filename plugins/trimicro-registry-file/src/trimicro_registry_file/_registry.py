"""The file registry: one Go Micro JSON record per node in a directory shared by local processes.

Why these choices:

* **TTL by mtime.** Every process on the machine agrees on the wall clock and on a file's mtime, so
  the mtime *is* the expiry instant: register writes the record with ``mtime = now + ttl``; readers
  skip files whose time has passed. No lease daemon, no extra field in Go Micro's record.
* **Atomic writes.** The record is written to a hidden temporary file, its mtime set, then renamed over
  the old one, so a reader sees the old record or the new one, never half of one, and never a fresh
  record with a stale mtime.
* **Watch by polling.** Directory change notification differs per OS (and is a thread or a C
  library away); a snapshot every ``poll_interval`` seconds, compared with the last, is portable and
  cheap for the tens of files a development machine holds.
* **Synchronous file calls.** Each is a few microseconds on a local directory, less than a thread hop
  (``trio.to_thread``) would cost; every method still checkpoints, so it is cancellable.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote, unquote

import attrs
import trio

from trimicro.errors import RegistryError
from trimicro.registry import Node, Result, Service, Watcher

if TYPE_CHECKING:
    from trimicro.config import Options

__all__ = ["DEFAULT_DIRECTORY", "FileRegistry", "FileWatcher", "from_options"]

#: Where records live when no ``--registry_address`` is given.
DEFAULT_DIRECTORY = Path(tempfile.gettempdir()) / "trimicro-registry"

#: The expiry of a record registered without a TTL: far ahead, but a valid mtime everywhere.
_NEVER = 4_000_000_000.0  # 2096

#: (service name, node id) -> (mtime in ns, record text): what a poll of the directory sees.
_Snapshot = dict[tuple[str, str], tuple[int, str]]


def _safe(part: str) -> str:
    """A name as one path component: no separators, no ``.``/``..``, reversible with ``unquote``."""
    if not part:
        raise RegistryError("a service name and node id must not be empty")
    quoted = quote(part, safe="")
    return "%2E" + quoted[1:] if quoted.startswith(".") else quoted


@attrs.define(eq=False)
class FileWatcher:
    """Watch events of a :class:`FileRegistry`, found by polling; an async iterator of :class:`Result`."""

    _receive: trio.MemoryReceiveChannel[Result]

    def __aiter__(self) -> AsyncIterator[Result]:
        return self

    async def __anext__(self) -> Result:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None


@attrs.define(eq=False)
class FileRegistry:
    """A registry in ``directory``; every process pointing at the same directory sees the same services."""

    directory: Path = attrs.field(default=DEFAULT_DIRECTORY, converter=Path)
    default_ttl: float | None = None
    poll_interval: float = 0.25
    #: Wall-clock seconds; shared by processes, so it is ``time.time`` and not trio's clock.
    clock: Callable[[], float] = time.time
    name: str = "file"

    async def __aenter__(self) -> FileRegistry:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryError(f"file registry: cannot use {self.directory}: {exc}") from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    # -- writing --
    async def register(self, service: Service, *, ttl: float | None = None) -> None:
        await trio.lowlevel.checkpoint()
        ttl = ttl if ttl is not None else self.default_ttl
        expires = self.clock() + ttl if ttl else _NEVER
        folder = self.directory / _safe(service.name)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for node in service.nodes:
                self._write(folder / f"{_safe(node.id)}.json", attrs.evolve(service, nodes=(node,)), expires)
            self._sweep(folder)
        except OSError as exc:
            raise RegistryError(f"file registry: cannot register {service.name}: {exc}") from None

    def _write(self, path: Path, record: Service, expires: float) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(record.to_json())
            os.utime(tmp, (expires, expires))  # before the rename: a reader never sees it stale
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _sweep(self, folder: Path) -> None:
        """Remove records that expired; each one's mtime is read again right before it goes."""
        now = self.clock()
        for path in folder.glob("*.json"):
            try:
                if path.stat().st_mtime <= now:
                    path.unlink()
            except FileNotFoundError:
                pass

    async def deregister(self, service: Service) -> None:
        await trio.lowlevel.checkpoint()
        folder = self.directory / _safe(service.name)
        for node in service.nodes:
            try:
                (folder / f"{_safe(node.id)}.json").unlink(missing_ok=True)
            except OSError as exc:
                raise RegistryError(f"file registry: cannot deregister {node.id}: {exc}") from None
        try:
            folder.rmdir()  # only if that was the last node; a concurrent register recreates it
        except OSError:
            pass

    # -- reading --
    def _scan(self, service: str | None = None) -> _Snapshot:
        """Every live record (of ``service``, or all), as (mtime, text); unreadable files are skipped."""
        now = self.clock()
        found: _Snapshot = {}
        try:
            folders = [self.directory / _safe(service)] if service else list(self.directory.iterdir())
        except FileNotFoundError:
            return found
        for folder in folders:
            if folder.name.startswith("."):
                continue
            try:
                paths = list(folder.glob("*.json"))
            except OSError:
                continue
            for path in paths:
                try:
                    mtime = path.stat().st_mtime_ns
                    if mtime / 1e9 <= now:
                        continue
                    text = path.read_text()
                except OSError:
                    continue  # removed between listing and reading
                found[(unquote(folder.name), unquote(path.name[: -len(".json")]))] = (mtime, text)
        return found

    @staticmethod
    def _parse(text: str) -> Service | None:
        try:
            record = Service.from_json(text)
        except (ValueError, TypeError, AttributeError):
            return None  # not a record (a stray file): the registry keeps serving the rest
        return record if record.nodes else None

    def _services(self, snapshot: _Snapshot) -> list[Service]:
        merged: dict[tuple[str, str], tuple[Service, list[Node]]] = {}
        for _, text in sorted(snapshot.values()):
            record = self._parse(text)
            if record is None:
                continue
            key = (record.name, record.version)
            nodes = merged[key][1] if key in merged else []
            nodes.extend(record.nodes)
            merged[key] = (record, nodes)
        return [attrs.evolve(record, nodes=tuple(nodes)) for record, nodes in merged.values()]

    async def get_service(self, name: str) -> list[Service]:
        await trio.lowlevel.checkpoint()
        return [s for s in self._services(self._scan(name)) if s.name == name]

    async def list_services(self) -> list[Service]:
        await trio.lowlevel.checkpoint()
        return self._services(self._scan())

    @asynccontextmanager
    async def watch(self, service: str | None = None) -> AsyncIterator[Watcher]:
        """Events for changes after the watch starts (the snapshot at entry is the baseline)."""
        send, receive = trio.open_memory_channel[Result](1000)
        baseline = self._scan(service)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._poll, service, baseline, send)
            try:
                yield FileWatcher(receive)
            finally:
                nursery.cancel_scope.cancel()
                receive.close()

    async def _poll(self, service: str | None, last: _Snapshot, send: trio.MemorySendChannel[Result]) -> None:
        async with send:
            while True:
                await trio.sleep(self.poll_interval)
                now = self._scan(service)
                events: list[tuple[Literal["create", "update", "delete"], str]] = []
                for key, (mtime, text) in now.items():
                    if key not in last:
                        events.append(("create", text))
                    elif last[key] != (mtime, text):
                        events.append(("update", text))
                events += [("delete", text) for key, (_, text) in last.items() if key not in now]
                last = now
                for action, text in events:
                    record = self._parse(text)
                    if record is None:
                        continue
                    try:
                        send.send_nowait(Result(action=action, service=record))
                    except trio.WouldBlock:
                        return  # a watcher that does not keep up loses its stream, as in memory's
                    except trio.BrokenResourceError:
                        return


def from_options(options: Options) -> FileRegistry:
    """The plugin factory: ``--registry_address`` (or ``MICRO_REGISTRY_ADDRESS``) is the directory."""
    address = options.registry_address
    return FileRegistry(Path(address[0]) if address else DEFAULT_DIRECTORY)
