"""The public/private rule of docs/architecture.md ("Public and private"), checked on the source.

The rule, in short:

* A module is *private* when a part of its dotted name starts with one underscore
  (``trimicro.registry._model``, ``trimicro.transport._http2.frames``). Its *owner* is the package
  holding the first such part (``trimicro.registry``, ``trimicro.transport``); it may be imported only
  by the owner and the owner's subpackages. So ``trimicro/_util.py``, ``_metadata.py``,
  ``_lifecycle.py`` and ``_plugins.py``, owned by ``trimicro`` itself, are the package-wide helpers.
  A private *name* (``from .x import _y``) follows the same rule as a private module.
* Everything else reaches a package through its face (``__init__.py``), which re-exports the public
  names of the package's public modules. ``from_options`` is the exception: every implementation
  module has one (the factory its entry point names), and a face could hold only one of them.
* Every module of trimicro/, private ones too, has an ``__all__`` naming exactly what it defines for
  others, and each of those names exists.
* A module that needs an optional extra (``OPTIONAL``: the kafka broker) is left out of its face, so
  importing trimicro never needs the extra.
* tests/ may import private modules: tests test internals. Only trimicro/ is checked.

Why a test: the rule is what lets a package change its insides without breaking its neighbours,
and a reach past a face (``from ..transport._h2server import ...``) compiles, runs and passes every
other test. Imports are read with ``ast``, including the ones under ``if TYPE_CHECKING:`` and
inside functions, since those are reaches too.
"""

from __future__ import annotations

import ast
import importlib
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

from .test_import_graph import ROOT, _modules

#: The plugin factory every implementation module defines; named by its entry point, not re-exported.
FACTORY = "from_options"

#: Modules that need an optional extra (``pip install 'trimicro[kafka]'``): their faces do not import
#: them, so ``import trimicro`` never needs the extra; they are imported by full name or by plugin name.
OPTIONAL = {"trimicro.broker.kafka": "confluent_kafka"}

MODULES = _modules()


def _is_private(name: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in name.split("."))


def owner(module: str) -> str | None:
    """The package a private module belongs to (None for a public module)."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def may_import(importer: str, module: str) -> bool:
    home = owner(module)
    return home is None or importer == home or importer.startswith(home + ".")


def _static_all(path: Path) -> list[str] | None:
    for node in ast.parse(path.read_text(), str(path)).body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            assert isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None
            value = ast.literal_eval(node.value)
            assert isinstance(value, list | tuple), f"{path}: __all__ is not a literal list"
            return list(value)
    return None


def _package_of(name: str) -> str:
    return name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]


def _import_targets(name: str) -> list[tuple[int, str]]:
    """(line, what) for every import in module ``name``: a module, or ``module:_private_name``."""
    path = MODULES[name]
    package = _package_of(name)
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: -(node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in MODULES:
                    found.append((node.lineno, sub))
                elif alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append((node.lineno, f"{base}.{alias.name}"))  # a private name: same rule
                else:
                    found.append((node.lineno, base))
    return [(line, target) for line, target in found if target.split(".")[0] == "trimicro"]


def _load(name: str) -> ModuleType:
    return importlib.import_module(name)


def _public_modules_of(package: str) -> list[str]:
    return [
        name
        for name, path in MODULES.items()
        if name.rpartition(".")[0] == package
        and path.name != "__init__.py"
        and not _is_private(name)
        and not name.endswith(".__main__")
    ]


def test_the_rule_on_examples() -> None:
    assert owner("trimicro.registry._model") == "trimicro.registry"
    assert owner("trimicro.transport._http2.frames") == "trimicro.transport"
    assert owner("trimicro._util") == "trimicro"
    assert owner("trimicro.registry.etcd") is None
    assert may_import("trimicro.transport.grpc", "trimicro.transport._http2.frames")
    assert may_import("trimicro.transport._http2.frames", "trimicro.transport._h2conn")
    assert may_import("trimicro.broker.http", "trimicro._plugins")
    assert not may_import("trimicro.server._grpc", "trimicro.transport._h2server")
    assert not may_import("trimicro.service", "trimicro.server._grpc")
    assert not may_import("trimicro.transporting", "trimicro.transport._base")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_has_all(name: str) -> None:
    names = _static_all(MODULES[name])
    assert names is not None, f"{MODULES[name].relative_to(ROOT.parent)} has no __all__"
    assert len(names) == len(set(names)), f"{name}.__all__ lists a name twice"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.endswith(".__main__")))
def test_every_name_in_all_exists(name: str) -> None:
    module = _load(name)
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it lacks: {missing}"


def test_main_modules_export_nothing() -> None:
    """``__main__`` runs on import, so it is checked from source: it is a script, not an API."""
    for name, path in MODULES.items():
        if name.endswith(".__main__"):
            assert _static_all(path) == [], name


FACES = sorted(
    name
    for name, path in MODULES.items()
    if path.name == "__init__.py" and not _is_private(name) and name != "trimicro"
)


@pytest.mark.parametrize("face", FACES)
def test_face_reexports_its_public_modules(face: str) -> None:
    """``from trimicro.registry import EtcdRegistry`` works for every public name of every public module.

    The top-level ``trimicro`` is left out on purpose: its modules (errors, config, context, service,
    stream) are faces of their own, and it re-exports only the names a first program needs.
    """
    package = _load(face)
    missing: list[str] = []
    for name in _public_modules_of(face):
        if name in OPTIONAL:
            continue
        module = _load(name)
        for attr in module.__all__:
            if attr == FACTORY:
                continue
            if attr not in package.__all__ or getattr(package, attr, None) is not getattr(module, attr):
                missing.append(f"{name}.{attr}")
    assert not missing, f"{face}/__init__.py should re-export (and list in __all__): {missing}"


def test_no_private_import_crosses_its_package() -> None:
    crossings = [
        f"{MODULES[name].relative_to(ROOT.parent)}:{line}: {target} (private to {owner(target)})"
        for name in sorted(MODULES)
        for line, target in _import_targets(name)
        if not may_import(name, target)
    ]
    assert not crossings, "private modules imported past their package:\n" + "\n".join(crossings)


def test_entry_points_name_public_modules() -> None:
    """trimicro's own entry points (pyproject) point at public modules, like a third party's would."""
    pyproject = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())
    groups = pyproject["project"].get("entry-points", {})
    for group, entries in groups.items():
        for entry, value in entries.items():
            module = value.partition(":")[0].strip()
            assert module in MODULES, f"{group} {entry}: {module} is not a trimicro module"
            assert not _is_private(module), f"{group} {entry}: {module} is private"


def test_top_level_all() -> None:
    import trimicro

    assert {"Service", "Client", "Options", "register_plugin", "errors"} <= set(trimicro.__all__)
    namespace: dict[str, object] = {}
    exec("from trimicro import *", namespace)
    assert set(trimicro.__all__) <= set(namespace)
