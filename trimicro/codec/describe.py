"""Request/response type descriptions for the registry, in Go Micro's ``registry.Value`` shape.

Go Micro's ``server/extractor.go`` walks a handler's Go types: the top value is named after the type,
each field is named by its JSON name and typed by its Go type name (``string``, ``int32``, ``[]string``,
``HelloRequest``), nested structs carry their fields, and the walk stops three levels down. We produce
the same tree from protobuf descriptors (with the type names protoc-gen-go would generate) and from
attrs classes / dataclasses via their type hints. The depth limit also ends self-referential types.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import types
import typing
import uuid
from typing import Any

import attrs
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from ..registry import Value

__all__ = ["describe"]

_MAX_DEPTH = 3  # as extractor.go: values at depth 3 are dropped

_T = FieldDescriptor
_PROTO_GO_TYPES: dict[int, str] = {
    _T.TYPE_DOUBLE: "float64",
    _T.TYPE_FLOAT: "float32",
    _T.TYPE_INT32: "int32",
    _T.TYPE_INT64: "int64",
    _T.TYPE_UINT32: "uint32",
    _T.TYPE_UINT64: "uint64",
    _T.TYPE_SINT32: "int32",
    _T.TYPE_SINT64: "int64",
    _T.TYPE_FIXED32: "uint32",
    _T.TYPE_FIXED64: "uint64",
    _T.TYPE_SFIXED32: "int32",
    _T.TYPE_SFIXED64: "int64",
    _T.TYPE_BOOL: "bool",
    _T.TYPE_STRING: "string",
    _T.TYPE_BYTES: "[]uint8",
}

_PY_GO_TYPES: dict[Any, str] = {
    str: "string",
    int: "int64",
    float: "float64",
    bool: "bool",
    bytes: "[]uint8",
    bytearray: "[]uint8",
    dict: "map[string]interface {}",
    list: "[]interface {}",
    tuple: "[]interface {}",
    Any: "interface {}",
    object: "interface {}",
    datetime.datetime: "Time",
    datetime.date: "Time",
    uuid.UUID: "string",
}


def _value(name: str, type: str, values: Any = ()) -> Value:
    return Value(name=name, type=type, values=values)


def _go_name(desc: Any) -> str:
    """protoc-gen-go's name for a message or enum: nested names joined by ``_``."""
    package: str = desc.file.package
    full: str = desc.full_name
    name = full[len(package) + 1 :] if package else full
    return name.replace(".", "_")


def _proto_elem_type(fd: Any) -> str:
    if fd.type in (_T.TYPE_MESSAGE, _T.TYPE_GROUP):
        return _go_name(fd.message_type)
    if fd.type == _T.TYPE_ENUM:
        return _go_name(fd.enum_type)
    return _PROTO_GO_TYPES.get(fd.type, "interface {}")


def _proto_field(fd: Any, depth: int) -> Value:
    mt = fd.message_type
    if mt is not None and mt.GetOptions().map_entry:
        key = _proto_elem_type(mt.fields_by_name["key"])
        val = _proto_elem_type(mt.fields_by_name["value"])
        return _value(name=fd.name, type=f"map[{key}]{val}")
    elem = _proto_elem_type(fd)
    if fd.is_repeated:
        return _value(name=fd.name, type="[]" + elem)
    if mt is not None:
        return _value(name=fd.name, type=elem, values=_proto_fields(mt, depth + 1))
    return _value(name=fd.name, type=elem)


def _proto_fields(desc: Any, depth: int) -> tuple[Value, ...]:
    if depth >= _MAX_DEPTH:
        return ()
    return tuple(_proto_field(fd, depth) for fd in desc.fields)


def _py_type(tp: Any) -> str:
    if tp in _PY_GO_TYPES:
        return _PY_GO_TYPES[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        rest = [a for a in args if a is not type(None)]
        return _py_type(rest[0]) if len(rest) == 1 else "interface {}"
    if origin is typing.Annotated:
        return _py_type(args[0])
    if origin is typing.Literal:
        return _py_type(type(args[0])) if args else "interface {}"
    if origin in (list, set, frozenset, tuple) or (origin is not None and origin.__name__ == "Sequence"):
        return "[]" + (_py_type(args[0]) if args else "interface {}")
    if origin is dict or (origin is not None and origin.__name__ == "Mapping"):
        k, v = args if args else (str, Any)
        return f"map[{_py_type(k)}]{_py_type(v)}"
    if isinstance(tp, type):
        if issubclass(tp, Message):
            return _go_name(tp.DESCRIPTOR)
        return tp.__name__
    return "interface {}"


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and (attrs.has(tp) or dataclasses.is_dataclass(tp) or issubclass(tp, Message))


def _py_fields(cls: type, depth: int) -> tuple[Value, ...]:
    if depth >= _MAX_DEPTH:
        return ()
    if issubclass(cls, Message):
        return _proto_fields(cls.DESCRIPTOR, depth)
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable forward references: describe what we can
        hints = {}
    names = (
        [f.name for f in attrs.fields(cls)] if attrs.has(cls) else [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    )
    out = []
    for name in names:
        tp = hints.get(name, Any)
        inner = _unwrap_optional(tp)
        values = _py_fields(inner, depth + 1) if _is_struct(inner) else ()
        out.append(_value(name=name, type=_py_type(tp), values=values))
    return tuple(out)


def _unwrap_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return tp


def describe(cls: Any) -> Value | None:
    """The registry ``Value`` tree for a request/response type, or None when there is none."""
    if cls is None or cls is type(None):
        return None
    if isinstance(cls, type) and issubclass(cls, Message):
        name = _go_name(cls.DESCRIPTOR)
        return _value(name=name, type=name, values=_proto_fields(cls.DESCRIPTOR, 1))
    if _is_struct(cls):
        return _value(name=cls.__name__, type=cls.__name__, values=_py_fields(cls, 1))
    if isinstance(cls, type) and issubclass(cls, enum.Enum):
        return _value(name=cls.__name__, type=cls.__name__)
    name = cls.__name__ if isinstance(cls, type) else _py_type(cls)
    return _value(name=name, type=_py_type(cls))
