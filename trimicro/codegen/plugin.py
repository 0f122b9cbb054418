"""``protoc-gen-trimicro``: protoc's plugin protocol around :func:`generate`.

protoc writes a ``CodeGeneratorRequest`` to our stdin and reads a ``CodeGeneratorResponse`` from our
stdout. Every failure, expected or not, becomes ``response.error`` (``"<file>: <message>"``), which
protoc prints as ``--trimicro_out: <file>: <message>`` and exits non-zero: users see a message that
names the file, never a Python traceback.
"""

from __future__ import annotations

import sys

import attrs
from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from google.protobuf.message import DecodeError

from ._model import GenerationError, build_files
from ._names import micro_file
from ._render import RESERVED, render

__all__ = ["Options", "generate", "main", "parse_options"]

_Response = plugin_pb2.CodeGeneratorResponse


@attrs.frozen
class Options:
    """``--trimicro_opt=relative_imports`` (comma-separated, like every protoc plugin parameter)."""

    #: import the ``_pb2`` modules relatively (``from . import x_pb2``), for output inside a package
    relative_imports: bool = False


def parse_options(parameter: str, file: str) -> Options:
    relative = False
    for raw in parameter.split(","):
        item = raw.strip()
        if not item:
            continue
        key, _, value = item.partition("=")
        if key == "relative_imports" and value in ("", "true", "1"):
            relative = True
        elif key == "relative_imports" and value in ("false", "0"):
            relative = False
        else:
            raise GenerationError(file, f"unknown option {item!r} (supported: relative_imports)")
    return Options(relative_imports=relative)


def generate(request: plugin_pb2.CodeGeneratorRequest) -> plugin_pb2.CodeGeneratorResponse:
    """Build the response for ``request``; never raises."""
    response = _Response()
    response.supported_features = _Response.FEATURE_PROTO3_OPTIONAL | _Response.FEATURE_SUPPORTS_EDITIONS
    # Services do not depend on field semantics, so every edition protoc knows is fine.
    response.minimum_edition = descriptor_pb2.EDITION_PROTO2
    response.maximum_edition = descriptor_pb2.EDITION_2024
    first = request.file_to_generate[0] if request.file_to_generate else "<no input>"
    current = first
    try:
        options = parse_options(request.parameter, first)
        for model in build_files(request.proto_file, request.file_to_generate, set(RESERVED)):
            current = model.proto_file
            out = response.file.add()
            out.name = micro_file(model.proto_file)
            out.content = render(model, relative_imports=options.relative_imports)
    except GenerationError as exc:
        del response.file[:]
        response.error = str(exc)
    except Exception as exc:  # a bug of ours: still report it the protoc way, naming the file
        del response.file[:]
        response.error = f"{current}: protoc-gen-trimicro failed: {type(exc).__name__}: {exc}"
    return response


def main() -> None:
    """Console script entry point (``protoc-gen-trimicro``)."""
    data = sys.stdin.buffer.read()
    request = plugin_pb2.CodeGeneratorRequest()
    try:
        request.ParseFromString(data)
    except DecodeError as exc:
        response = _Response(error=f"<stdin>: not a CodeGeneratorRequest ({exc}); run me through protoc")
    else:
        response = generate(request)
    sys.stdout.buffer.write(response.SerializeToString())
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
