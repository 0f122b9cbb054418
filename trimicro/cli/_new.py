"""``trimicro new NAME [--template default|streaming|pubsub]``: scaffold a service package.

Go Micro's ``micro new``, for trimicro: a directory ``NAME/`` holding a proto, the code generated from
it by protoc-gen-trimicro (grpcio-tools' protoc, run with *this* trimicro's ``trimicro.codegen``), a
handler, ``setup(service)``, ``python -m NAME`` to serve, a client example, a pyproject depending on
trimicro, a README and tests that use :mod:`trimicro.testing`. ``cd NAME && pip install -e '.[test]'
&& pytest`` passes as generated.

The templates are files under ``trimicro/cli/templates/`` (package data): ``base/`` for every
template, then the chosen one on top; see the README there for the placeholders.
"""

from __future__ import annotations

import argparse
import importlib.util
import keyword
import re
import string
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from ..codegen import snake_case

__all__ = ["TEMPLATES", "main", "scaffold"]

TEMPLATES = ("default", "streaming", "pubsub")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_PROTOC_TIMEOUT = 120.0


class NewError(Exception):
    """A one-line failure of ``trimicro new`` (exit status 1, or 2 for a bad argument)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _variables(name: str, template: str) -> dict[str, str]:
    if not _NAME.match(name):
        raise NewError(
            f"{name!r} is not a service name: use letters, digits, '_' and '-', starting with a letter", 2
        )
    package = name.replace("-", "_").lower()
    if keyword.iskeyword(package) or package in sys.stdlib_module_names or package in ("trimicro", "tests"):
        raise NewError(f"{name!r} would make a package named {package!r}, which shadows another module", 2)
    service = "".join(part[:1].upper() + part[1:] for part in re.split(r"[_-]+", name) if part)
    return {
        "name": name,
        "package": package,
        "Service": service,
        "snake": snake_case(service),
        "topic": f"{package}.events",
        "template": template,
    }


def _walk(node: Traversable, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Traversable]]:
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.is_dir():
            yield from _walk(child, (*prefix, child.name))
        elif child.name.endswith(".tmpl"):
            yield (*prefix, child.name.removesuffix(".tmpl")), child


def render(name: str, template: str) -> dict[str, str]:
    """Relative path -> text of every file of the scaffold (before code generation)."""
    if template not in TEMPLATES:
        raise NewError(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)}", 2)
    variables = _variables(name, template)
    root = resources.files("trimicro.cli") / "templates"
    files: dict[str, str] = {}
    for layer in ("base", template):
        for parts, source in _walk(root / layer):
            path = "/".join(p.replace("__package__", variables["package"]) for p in parts)
            files[path] = string.Template(source.read_text(encoding="utf-8")).substitute(variables)
    return files


def _plugin_script(directory: Path) -> Path:
    """An executable running this trimicro's code generator, whatever protoc-gen-trimicro is on PATH."""
    here = Path(__file__).resolve().parents[2]  # the directory holding the trimicro package
    script = directory / "protoc-gen-trimicro"
    script.write_text(
        f'#!/bin/sh\nPYTHONPATH="{here}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" -m trimicro.codegen "$@"\n'
    )
    script.chmod(0o755)
    return script


def generate(proto_dir: Path, proto_file: str) -> None:
    """Run grpcio-tools' protoc with protoc-gen-trimicro on ``proto_dir/proto_file``."""
    if importlib.util.find_spec("grpc_tools") is None:
        raise NewError(
            f"grpcio-tools is not installed, so {proto_dir}/{proto_file} was not compiled: "
            "pip install 'trimicro[codegen]', then run sh gen.sh"
        )
    with tempfile.TemporaryDirectory(prefix="trimicro-new-") as tmp:
        cmd = [
            sys.executable, "-m", "grpc_tools.protoc", "-I", str(proto_dir),
            f"--python_out={proto_dir}", f"--pyi_out={proto_dir}",
            f"--plugin=protoc-gen-trimicro={_plugin_script(Path(tmp))}",
            f"--trimicro_out=relative_imports:{proto_dir}", str(proto_dir / proto_file),
        ]  # fmt: skip
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=_PROTOC_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise NewError(f"protoc did not finish within {_PROTOC_TIMEOUT:.0f}s") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise NewError(f"protoc failed on {proto_file}: {detail[-1] if detail else done.returncode}")


def scaffold(name: str, *, template: str = "default", directory: Path | None = None) -> Path:
    """Write the scaffold of service ``name`` into ``directory/name`` and generate its code; return it."""
    files = render(name, template)
    target = (directory or Path.cwd()) / name
    if target.exists() and any(target.iterdir()):
        raise NewError(f"{target} already exists and is not empty")
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if path.suffix == ".sh":
            path.chmod(0o755)
    package = _variables(name, template)["package"]
    generate(target / package / "proto", f"{package}.proto")
    return target


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="trimicro new",
        description="Scaffold a service package NAME/: proto, generated code, handler, tests, pyproject.",
    )
    p.add_argument("name", help="the service name (also the package: '-' becomes '_')")
    p.add_argument("--template", choices=TEMPLATES, default="default", help="default: one unary call")
    p.add_argument("--dir", type=Path, default=None, help="where to create NAME/ (default: here)")
    return p


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    try:
        target = scaffold(args.name, template=args.template, directory=args.dir)
    except NewError as err:
        print(f"trimicro new: {err}", file=sys.stderr)
        return err.status
    except OSError as err:
        print(f"trimicro new: {err}", file=sys.stderr)
        return 1
    package = args.name.replace("-", "_").lower()
    print(f"created {target} ({args.template} template)")
    print(f"  cd {target} && pip install -e '.[test]' && pytest")
    print(f"  python -m {package}   # then: trimicro call {args.name} ...")
    return 0
