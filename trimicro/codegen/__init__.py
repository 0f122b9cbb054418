"""protoc-gen-trimicro: Go Micro's protoc-gen-micro for trimicro.

A protoc plugin that writes ``<name>_micro.py`` next to ``<name>_pb2.py`` for every ``.proto`` with
services: a typed client, a handler ``Protocol``, a ``MethodSpec`` list and a register function. See
docs/codegen.md.
"""

from .plugin import generate as generate
from .plugin import main as main
