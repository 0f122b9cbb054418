"""Plugins by name (trimicro/_plugins.py, codec/_registry.py): the typed tables, the one-line error for
an unknown name, and implementations found through installed packages' entry points.

Entry points are real install metadata here: a ``.dist-info`` directory on ``sys.path`` for the quick
tests, and for the end-to-end one, plugins/trimicro-registry-file built and installed by pip into a
temporary ``--target`` directory (never the shared site-packages), then used by fresh interpreters --
one registers a node, the ``trimicro`` CLI lists it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trimicro import _plugins
from trimicro.broker import MemoryBroker
from trimicro.codec import BytesCodec, _registry, get_codec
from trimicro.config import Options
from trimicro.errors import CodecError, UnknownPlugin
from trimicro.registry import MemoryRegistry
from trimicro.transport import MemoryTransport

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "plugins" / "trimicro-registry-file"


def _dist_info(site: Path, name: str, entry_points: str) -> None:
    """An installed distribution as importlib.metadata reads it: METADATA and entry_points.txt."""
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


def test_typed_tables_create_builtins() -> None:
    opts = Options()
    registry = _plugins.create("registry", "memory", opts)
    assert isinstance(registry, MemoryRegistry)
    assert isinstance(_plugins.REGISTRIES.create("memory", opts), MemoryRegistry)
    assert isinstance(_plugins.table("transport").create("memory", opts), MemoryTransport)
    assert isinstance(_plugins.BROKERS.create("memory", opts), MemoryBroker)
    assert {"memory", "mdns", "etcd"} <= set(_plugins.plugin_names("registry"))
    assert {"random", "roundrobin", "p2c"} <= set(_plugins.SELECTORS.names())


def test_unknown_name_is_one_line_listing_installed() -> None:
    with pytest.raises(UnknownPlugin) as info:
        _plugins.create("registry", "nope", Options())
    assert isinstance(info.value, ValueError)  # the CLI prints ValueError as one line
    message = str(info.value)
    assert "\n" not in message and "'nope'" in message
    assert all(name in message for name in ("etcd", "gossip", "mdns", "memory", "nats", "zookeeper"))
    with pytest.raises(ValueError, match="unknown plugin kind"):
        _plugins.table("database")  # type: ignore[call-overload]


def test_register_plugin_in_code_and_lazy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_plugins.REGISTRIES, "_table", dict(_plugins.REGISTRIES._table))
    mine = MemoryRegistry(name="mine")
    _plugins.register_plugin("registry", "mine", lambda options: mine)
    _plugins.register_plugin("registry", "lazy", "trimicro.registry.memory:from_options")
    assert _plugins.create("registry", "mine", Options()) is mine
    assert isinstance(_plugins.create("registry", "lazy", Options()), MemoryRegistry)
    assert {"mine", "lazy"} <= set(_plugins.plugin_names("registry"))


def test_entry_point_resolves_and_is_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fake_registry_plugin.py").write_text(
        "from trimicro.registry import MemoryRegistry\n"
        "def from_options(options):\n"
        "    return MemoryRegistry(name='fake')\n"
        "NOT_A_FACTORY = 3\n"
    )
    _dist_info(
        tmp_path,
        "fake_registry_plugin",
        """
        [trimicro.registry]
        fake = fake_registry_plugin:from_options
        broken = fake_registry_plugin:NOT_A_FACTORY
        memory = fake_registry_plugin:from_options
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    got = _plugins.create("registry", "fake", Options())
    assert isinstance(got, MemoryRegistry) and got.name == "fake"
    assert {"fake", "broken", "memory"} <= set(_plugins.plugin_names("registry"))
    # A built-in wins over an installed entry point of the same name.
    assert _plugins.create("registry", "memory", Options()).name == "memory"
    with pytest.raises(TypeError, match="not a factory"):
        _plugins.create("registry", "broken", Options())
    with pytest.raises(UnknownPlugin, match="installed: broken, etcd, fake"):
        _plugins.create("registry", "still-nope", Options())


def test_codec_entry_point_maps_a_content_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "_CODECS", dict(_registry._CODECS))
    monkeypatch.setattr(_registry, "_SEEN", dict(_registry._SEEN))
    monkeypatch.setattr(_registry, "_ENTRY_POINTS", None)
    _dist_info(
        tmp_path,
        "fake_codec_plugin",
        """
        [trimicro.codec]
        application/x-fake-bytes = trimicro.codec.bytes:BytesCodec
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    codec = get_codec("Application/X-Fake-Bytes; charset=utf-8")
    assert isinstance(codec, BytesCodec)
    assert get_codec("application/x-fake-bytes") is codec  # loaded once, then in the table
    with pytest.raises(CodecError):
        get_codec("application/x-nobody")


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.slow
def test_installed_plugin_package_resolves_by_name(tmp_path: Path) -> None:
    """``pip install`` of the plugin's own distribution makes ``MICRO_REGISTRY=file`` work."""
    source = tmp_path / "src"
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    # Offline on purpose: no index, no build isolation (the installed setuptools builds it), no deps.
    pip = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
    ]
    build = _run([*pip, "--target", str(target), str(source)], dict(os.environ), tmp_path)
    assert build.returncode == 0, build.stderr
    assert list(target.glob("trimicro_registry_file-*.dist-info"))

    directory = tmp_path / "registry"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)]),  # the plugin, and this checkout's trimicro
        "MICRO_REGISTRY": "file",
        "MICRO_REGISTRY_ADDRESS": str(directory),
    }
    register = textwrap.dedent(
        """
        import trio
        from trimicro import _plugins
        from trimicro.config import load_options
        from trimicro.registry import Node, Service

        async def main():
            options = load_options()
            registry = _plugins.create("registry", options.registry, options)
            print(type(registry).__module__)
            async with registry:
                await registry.register(Service("greeter", "1.0", nodes=[Node("greeter-1", "127.0.0.1:1")]))

        trio.run(main)
        """
    )
    done = _run([sys.executable, "-c", register], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "trimicro_registry_file._registry"
    assert (directory / "greeter" / "greeter-1.json").is_file()

    listed = _run([sys.executable, "-m", "trimicro.cli", "services"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "greeter" in listed.stdout

    unknown = _run(
        [sys.executable, "-m", "trimicro.cli", "services"], {**env, "MICRO_REGISTRY": "nope"}, tmp_path
    )
    assert unknown.returncode == 2
    assert unknown.stderr.count("\n") == 1 and "Traceback" not in unknown.stderr
    assert "unknown registry 'nope'" in unknown.stderr and "file" in unknown.stderr


async def test_a_selector_plugin_is_used_by_services_and_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--selector NAME`` naming an installed selector plugin (not a strategy) builds that plugin."""
    import trimicro
    from trimicro.selector import CachingSelector

    built: list[CachingSelector] = []

    def factory(options: Options) -> CachingSelector:
        sel = CachingSelector(MemoryRegistry(), owns_registry=True)
        built.append(sel)
        return sel

    monkeypatch.setattr(_plugins.SELECTORS, "_table", dict(_plugins.SELECTORS._table))
    _plugins.register_plugin("selector", "mine", factory)
    async with trimicro.open_client(selector="mine") as client:
        assert client.selector is built[0]
