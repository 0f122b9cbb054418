"""Python names for proto things: modules as protoc's python generator names them, safe identifiers."""

from __future__ import annotations

import builtins
import keyword
import re

__all__ = [
    "micro_file",
    "module_alias",
    "module_name",
    "safe_identifier",
    "snake_case",
]

_BUILTINS = frozenset(dir(builtins))


def _strip_proto(filename: str) -> str:
    for suffix in (".protodevel", ".proto"):
        if filename.endswith(suffix):
            return filename[: -len(suffix)]
    return filename


def module_name(proto_file: str, suffix: str = "_pb2") -> str:
    """``a/b/c-d.proto`` -> ``a.b.c_d_pb2``, exactly as protoc's python generator names the module."""
    return _strip_proto(proto_file).replace("-", "_").replace("/", ".") + suffix


def module_alias(proto_file: str) -> str:
    """The alias protoc uses when one pb2 imports another: ``a.b.c_pb2`` -> ``a_dot_b_dot_c__pb2``."""
    return module_name(proto_file).replace("_", "__").replace(".", "_dot_")


def micro_file(proto_file: str) -> str:
    """Output path next to the ``_pb2.py`` that ``--python_out`` writes: ``a/b/c.proto`` -> ``a/b/c_micro.py``."""
    return module_name(proto_file, "_micro").replace(".", "/") + ".py"


def safe_identifier(name: str, taken: set[str]) -> str:
    """``name`` usable as a method: keywords, builtins and ``taken`` names get a trailing ``_``.

    Builtins are renamed too because method names share the class scope with the annotations that
    mypy resolves there (a method called ``str`` would shadow ``str`` in its siblings' signatures).
    """
    out = name
    while keyword.iskeyword(out) or keyword.issoftkeyword(out) or out in _BUILTINS or out in taken:
        out += "_"
    return out


_SNAKE_1 = re.compile(r"([A-Z]+)([A-Z][a-z])")
_SNAKE_2 = re.compile(r"([a-z0-9])([A-Z])")


def snake_case(name: str) -> str:
    """``HTTPGateway`` -> ``http_gateway``, ``Greeter`` -> ``greeter``."""
    return _SNAKE_2.sub(r"\1_\2", _SNAKE_1.sub(r"\1_\2", name)).lower()
