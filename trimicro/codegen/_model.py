"""From protoc's descriptors to a small model of what to generate: services, methods, message refs.

Pure functions over ``FileDescriptorProto`` objects, so tests can feed descriptors without protoc.
"""

from __future__ import annotations

import keyword
from collections.abc import Iterable, Sequence

import attrs
from google.protobuf import descriptor_pb2

from ._names import module_alias, module_name, safe_identifier

__all__ = ["FileModel", "GenerationError", "MessageRef", "MethodModel", "ServiceModel", "build_files"]

# Field numbers inside FileDescriptorProto / ServiceDescriptorProto, for source_code_info paths.
_FILE_SERVICE = 6
_SERVICE_METHOD = 2


class GenerationError(Exception):
    """Input the plugin cannot turn into valid Python; protoc shows ``file: message``."""

    def __init__(self, file: str, message: str) -> None:
        super().__init__(f"{file}: {message}")
        self.file = file
        self.message = message


@attrs.frozen
class MessageRef:
    """A message class: ``alias.Outer.Inner`` once ``module`` is imported as ``alias``."""

    proto_file: str
    path: str  # "Outer.Inner"

    @property
    def module(self) -> str:
        return module_name(self.proto_file)

    @property
    def alias(self) -> str:
        return module_alias(self.proto_file)

    @property
    def expr(self) -> str:
        return f"{self.alias}.{self.path}"


@attrs.frozen
class MethodModel:
    name: str  # proto name, the endpoint's method part
    attr: str  # Python method name (differs for keywords/builtins)
    request: MessageRef
    response: MessageRef
    client_streaming: bool
    server_streaming: bool
    doc: str

    @property
    def kind(self) -> str:
        if self.client_streaming and self.server_streaming:
            return "bidi"
        if self.client_streaming:
            return "client"
        if self.server_streaming:
            return "server"
        return "unary"


@attrs.frozen
class ServiceModel:
    name: str
    full_name: str  # "pkg.Greeter": the gRPC service name
    doc: str
    methods: tuple[MethodModel, ...]


@attrs.frozen
class FileModel:
    proto_file: str
    package: str
    services: tuple[ServiceModel, ...]


def _index(files: Iterable[descriptor_pb2.FileDescriptorProto]) -> dict[str, MessageRef]:
    """Every message by fully-qualified name (``.pkg.Outer.Inner``)."""
    out: dict[str, MessageRef] = {}

    def walk(prefix: str, path: str, messages: Sequence[descriptor_pb2.DescriptorProto], file: str) -> None:
        for msg in messages:
            full = f"{prefix}.{msg.name}"
            py = f"{path}.{msg.name}" if path else msg.name
            out[full] = MessageRef(file, py)
            walk(full, py, msg.nested_type, file)

    for fd in files:
        walk(f".{fd.package}" if fd.package else "", "", fd.message_type, fd.name)
    return out


def _comments(fd: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    out: dict[tuple[int, ...], str] = {}
    for loc in fd.source_code_info.location:
        text = "\n".join(
            part for part in (_clean(loc.leading_comments), _clean(loc.trailing_comments)) if part
        )
        if text:
            out[tuple(loc.path)] = text
    return out


def _clean(comment: str) -> str:
    """protoc keeps the space after ``//`` and trailing blanks; docstrings want neither."""
    lines = [line.rstrip() for line in comment.splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    indents = [len(line) - len(line.lstrip()) for line in lines if line]
    cut = min(indents, default=0)
    return "\n".join(line[cut:] for line in lines)


def _message(index: dict[str, MessageRef], type_name: str, where: str, file: str) -> MessageRef:
    ref = index.get(type_name)
    if ref is None:
        raise GenerationError(file, f"{where}: unknown message type {type_name.lstrip('.')!r}")
    for part in ref.path.split("."):
        if keyword.iskeyword(part):
            raise GenerationError(
                file, f"{where}: message {type_name.lstrip('.')!r} is a Python keyword and cannot be named"
            )
    return ref


def _service(
    fd: descriptor_pb2.FileDescriptorProto,
    i: int,
    svc: descriptor_pb2.ServiceDescriptorProto,
    index: dict[str, MessageRef],
    comments: dict[tuple[int, ...], str],
    reserved: set[str],
) -> ServiceModel:
    full = f"{fd.package}.{svc.name}" if fd.package else svc.name
    methods: list[MethodModel] = []
    taken = set(reserved)
    seen: set[str] = set()
    for j, m in enumerate(svc.method):
        if m.name in seen:
            raise GenerationError(fd.name, f"service {svc.name}: duplicate method {m.name}")
        seen.add(m.name)
        where = f"{svc.name}.{m.name}"
        if m.name.startswith("__"):
            raise GenerationError(fd.name, f"{where}: Python would mangle a method name starting with '__'")
        attr = safe_identifier(m.name, taken)
        taken.add(attr)
        methods.append(
            MethodModel(
                name=m.name,
                attr=attr,
                request=_message(index, m.input_type, where, fd.name),
                response=_message(index, m.output_type, where, fd.name),
                client_streaming=m.client_streaming,
                server_streaming=m.server_streaming,
                doc=comments.get((_FILE_SERVICE, i, _SERVICE_METHOD, j), ""),
            )
        )
    return ServiceModel(svc.name, full, comments.get((_FILE_SERVICE, i), ""), tuple(methods))


def build_files(
    all_files: Sequence[descriptor_pb2.FileDescriptorProto], to_generate: Iterable[str], reserved: set[str]
) -> list[FileModel]:
    """Models for the requested files that declare services (others get no ``_micro.py``).

    ``reserved``: module-level names the generated code uses; methods are renamed around them.
    """
    by_name = {fd.name: fd for fd in all_files}
    index = _index(all_files)
    reserved = reserved | {ref.alias for ref in index.values()}
    out = []
    for name in to_generate:
        fd = by_name.get(name)
        if fd is None:
            raise GenerationError(name, "file to generate is missing from the request")
        if not fd.service:
            continue
        comments = _comments(fd)
        services = tuple(_service(fd, i, svc, index, comments, reserved) for i, svc in enumerate(fd.service))
        out.append(FileModel(fd.name, fd.package, services))
    return out
