"""protoc-gen-trimicro: Go Micro's protoc-gen-micro for trimicro.

A protoc plugin that writes ``<name>_micro.py`` next to ``<name>_pb2.py`` for every ``.proto`` with
services: a typed client, a handler ``Protocol``, a ``MethodSpec`` list and a register function. See
docs/codegen.md.
"""

from ._names import snake_case as snake_case
from .plugin import Options as Options
from .plugin import generate as generate
from .plugin import main as main
from .plugin import parse_options as parse_options

__all__ = [
    "Options",
    "generate",
    "main",
    "parse_options",
    "snake_case",
]
