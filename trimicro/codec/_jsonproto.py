"""Protobuf messages <-> JSON objects (ProtoJSON with proto field names), compiled per message class.

``json_format`` walks descriptors on every call; these converters look the descriptors up once per
class and keep a table keyed by field number, so a ``HelloRequest`` costs one ``ListFields`` and a dict.
The output matches ``json_format.MessageToDict(msg, preserving_proto_field_name=True)`` exactly
(checked by property tests); well-known types and anything unusual fall back to ``json_format``.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from ..errors import CodecError

__all__ = ["message_from_obj", "message_to_obj"]

_shortest_float: Callable[[float], float] = float
try:  # json_format's own float32 formatting, so our output stays identical to it
    from google.protobuf.internal.type_checkers import ToShortestFloat

    _shortest_float = ToShortestFloat
except ImportError:  # pragma: no cover - older protobuf
    pass


_ToObj = Callable[[Message], Any]
_Conv = Callable[[Any], Any] | None

_T = FieldDescriptor
_INT64 = frozenset({_T.CPPTYPE_INT64, _T.CPPTYPE_UINT64})
# Field kinds the decoder's fast path sets straight through the constructor: JSON type -> proto type.
_FAST_DECODE: dict[int, type] = {
    _T.TYPE_STRING: str,
    _T.TYPE_BOOL: bool,
    _T.TYPE_INT32: int,
    _T.TYPE_UINT32: int,
    _T.TYPE_SINT32: int,
    _T.TYPE_FIXED32: int,
    _T.TYPE_SFIXED32: int,
    _T.TYPE_INT64: int,
    _T.TYPE_UINT64: int,
    _T.TYPE_SINT64: int,
    _T.TYPE_FIXED64: int,
    _T.TYPE_SFIXED64: int,
}

_TO_OBJ: dict[type, _ToObj] = {}
# message class -> {json key: (field name, exact JSON type)} or None when the class needs json_format
_FROM_OBJ: dict[type, dict[str, tuple[str, type]] | None] = {}


def _is_map(fd: Any) -> bool:
    mt = fd.message_type
    return mt is not None and mt.GetOptions().map_entry


def _is_special(desc: Any) -> bool:
    """Well-known types have their own JSON mapping; leave those to json_format."""
    full: str = desc.full_name
    return full.startswith("google.protobuf.")


def _fallback_to_obj(msg: Message) -> Any:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def _float(value: float) -> Any:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


_FLT_MAX = 3.4028234663852886e38


def _float32(value: float) -> Any:
    if math.isfinite(value):
        short = _shortest_float(value)
        # Near FLT_MAX the shortest form rounds past the float32 range and json_format then refuses
        # to parse it back; the exact value round-trips.
        return short if abs(short) <= _FLT_MAX else value
    return _float(value)


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _enum_conv(fd: Any) -> _Conv:
    if fd.enum_type.full_name == "google.protobuf.NullValue":
        return lambda v: None
    names = {v.number: v.name for v in fd.enum_type.values}
    if fd.enum_type.is_closed:
        return lambda v: names[v]
    return lambda v: names.get(v, v)


def _scalar_conv(fd: Any) -> _Conv:
    """Converter for one (non-repeated) value of ``fd``; None means the value is already JSON."""
    cpp = fd.cpp_type
    if cpp == _T.CPPTYPE_MESSAGE:
        return message_to_obj
    if cpp == _T.CPPTYPE_ENUM:
        return _enum_conv(fd)
    if fd.type == _T.TYPE_BYTES:
        return _b64
    if cpp in _INT64:
        return str
    if cpp == _T.CPPTYPE_DOUBLE:
        return _float
    if cpp == _T.CPPTYPE_FLOAT:
        return _float32
    return None


def _map_key(key: Any) -> str:
    if key is True:
        return "true"
    if key is False:
        return "false"
    return str(key)


def _field_conv(fd: Any) -> _Conv:
    if _is_map(fd):
        vconv = _scalar_conv(fd.message_type.fields_by_name["value"])
        if vconv is None:
            return lambda m: {_map_key(k): v for k, v in m.items()}
        return lambda m: {_map_key(k): vconv(v) for k, v in m.items()}
    conv = _scalar_conv(fd)
    if fd.is_repeated:
        if conv is None:
            return list
        return lambda seq: [conv(v) for v in seq]
    return conv


def _compile_to_obj(cls: type[Message]) -> _ToObj:
    desc = cls.DESCRIPTOR
    if _is_special(desc):
        return _fallback_to_obj
    table: dict[int, tuple[str, _Conv]] = {fd.number: (fd.name, _field_conv(fd)) for fd in desc.fields}

    def to_obj(msg: Message) -> Any:
        out: dict[str, Any] = {}
        for fd, value in msg.ListFields():
            entry = table.get(fd.number)
            if entry is None or fd.is_extension:
                return _fallback_to_obj(msg)
            key, conv = entry
            out[key] = value if conv is None else conv(value)
        return out

    return to_obj


def message_to_obj(msg: Message) -> Any:
    """The ProtoJSON value of ``msg`` with proto field names; only populated fields, like Go."""
    try:
        fn = _TO_OBJ[type(msg)]
    except KeyError:
        fn = _TO_OBJ[type(msg)] = _compile_to_obj(type(msg))
    try:
        return fn(msg)
    except (KeyError, ValueError, json_format.Error) as exc:
        raise CodecError(f"cannot encode {msg.DESCRIPTOR.full_name} as JSON: {exc}") from exc


def _compile_from_obj(cls: type[Message]) -> dict[str, tuple[str, type]] | None:
    desc = cls.DESCRIPTOR
    if _is_special(desc):
        return None
    table: dict[str, tuple[str, type]] = {}
    for fd in desc.fields:
        jtype = _FAST_DECODE.get(fd.type)
        if jtype is None or fd.is_repeated or fd.containing_oneof is not None:
            continue  # left to json_format
        table[fd.name] = (fd.name, jtype)
        table[fd.json_name] = (fd.name, jtype)
    return table


def _slow_from_obj(obj: Any, cls: type[Message], strict: bool = False) -> Message:
    try:
        return json_format.ParseDict(obj, cls(), ignore_unknown_fields=not strict)  # type: ignore[no-any-return]
    except (
        json_format.Error,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        IndexError,
        RecursionError,
    ) as exc:
        raise CodecError(f"cannot decode JSON into {cls.DESCRIPTOR.full_name}: {exc}") from exc


def message_from_obj(obj: Any, cls: type[Message], *, strict: bool = False) -> Message:
    """Build ``cls`` from a parsed JSON object; accepts proto and lowerCamelCase names. Unknown fields
    (and enum names) are skipped, or with ``strict`` rejected with a CodecError naming them."""
    try:
        table = _FROM_OBJ[cls]
    except KeyError:
        table = _FROM_OBJ[cls] = _compile_from_obj(cls)
    if table is None:  # well-known types: a JSON string, number, list... may be right
        return _slow_from_obj(obj, cls, strict)
    if type(obj) is not dict:
        if obj is None:
            return cls()
        raise CodecError(
            f"cannot decode JSON into {cls.DESCRIPTOR.full_name}: expected an object, got {obj!r:.60}"
        )
    kwargs: dict[str, Any] = {}
    for key, value in obj.items():
        entry = table.get(key)
        # Anything but an exact JSON type for a plain scalar field (or a name we don't know: it may be
        # an unknown field to skip or a non-trivial one) goes the json_format way for its rules and errors.
        if entry is None or type(value) is not entry[1] or entry[0] in kwargs:
            return _slow_from_obj(obj, cls, strict)
        kwargs[entry[0]] = value
    try:
        return cls(**kwargs)
    except (ValueError, TypeError):  # e.g. int out of range: let json_format word the error
        return _slow_from_obj(obj, cls, strict)
