"""Python values <-> JSON objects: attrs classes, dataclasses, typed containers, protobuf messages.

Encoding dispatches on the runtime type of each value; decoding is driven by the target type (its
type hints), compiled once per type and cached, so the RPC hot path does no reflection.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import enum
import math
import re
import types
import typing
import uuid
from collections.abc import Callable
from typing import Any

import attrs
from google.protobuf.message import Message

from ..errors import CodecError
from ._jsonproto import message_from_obj, message_to_obj
from ._util import type_name

__all__ = ["decoder_for", "to_obj"]

_Dec = Callable[[Any], Any]
_Enc = Callable[[Any], Any]


# --------------------------------------------------------------------------- encoding


def _identity(v: Any) -> Any:
    return v


def _enc_float(v: float) -> float:
    if not math.isfinite(v):
        raise CodecError(f"cannot encode {v!r} as JSON (Go's encoding/json refuses it too)")
    return v


def _enc_dict(d: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if type(k) is not str:
            if isinstance(k, enum.Enum):
                k = k.value
            if isinstance(k, bool) or not isinstance(k, str | int):
                raise CodecError(f"cannot encode a dict key of type {type_name(type(k))} as JSON")
            k = str(k)
        out[k] = to_obj(v)
    return out


def _enc_list(seq: Any) -> list[Any]:
    return [to_obj(v) for v in seq]


def _enc_bytes(b: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(b).decode("ascii")


def _fields_encoder(names: tuple[str, ...]) -> _Enc:
    def enc(obj: Any) -> dict[str, Any]:
        return {name: to_obj(getattr(obj, name)) for name in names}

    return enc


def _compile_encoder(tp: type) -> _Enc:
    if issubclass(tp, Message):
        return message_to_obj
    if attrs.has(tp):
        return _fields_encoder(tuple(f.name for f in attrs.fields(tp)))
    if dataclasses.is_dataclass(tp):
        return _fields_encoder(tuple(f.name for f in dataclasses.fields(tp)))
    if issubclass(tp, enum.Enum):
        return lambda v: to_obj(v.value)
    if issubclass(tp, bool | str | int):  # subclasses of builtins (IntEnum is handled above)
        return _identity
    if issubclass(tp, float):
        return _enc_float
    if issubclass(tp, dict):
        return _enc_dict
    if issubclass(tp, list | tuple | set | frozenset):
        return _enc_list
    if issubclass(tp, bytes | bytearray | memoryview):
        return _enc_bytes
    if issubclass(tp, datetime.date | datetime.time):
        return lambda v: v.isoformat()
    if issubclass(tp, uuid.UUID):
        return str
    raise CodecError(f"cannot encode {type_name(tp)} as JSON")


_ENCODERS: dict[type, _Enc] = {
    str: _identity,
    int: _identity,
    bool: _identity,
    type(None): _identity,
    float: _enc_float,
    dict: _enc_dict,
    list: _enc_list,
    tuple: _enc_list,
}


def to_obj(value: Any) -> Any:
    """A JSON-ready value (dicts, lists, str, numbers, bool, None) for ``value``."""
    tp = type(value)
    try:
        enc = _ENCODERS[tp]
    except KeyError:
        enc = _ENCODERS[tp] = _compile_encoder(tp)
    return enc(value)


# --------------------------------------------------------------------------- decoding


def _fail(tp: Any, value: Any, why: str = "") -> CodecError:
    detail = f": {why}" if why else ""
    return CodecError(f"cannot decode JSON {value!r:.60} into {type_name(tp)}{detail}")


def _exact(*types_: type, tp: Any) -> _Dec:
    def dec(v: Any) -> Any:
        if type(v) in types_:
            return v
        raise _fail(tp, v)

    return dec


def _dec_float(v: Any) -> float:
    if type(v) is float or type(v) is int:
        return float(v)
    raise _fail(float, v)


def _dec_bytes(v: Any) -> bytes:
    if type(v) is not str:
        raise _fail(bytes, v, "expected a base64 string")
    try:
        text = v.replace("-", "+").replace("_", "/")
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _fail(bytes, v, f"bad base64: {exc}") from exc


def _dec_any(v: Any) -> Any:
    return v


_CAMEL = re.compile(r"_([a-z0-9])")


def _camel(name: str) -> str:
    return _CAMEL.sub(lambda m: m.group(1).upper(), name)


class _ClassDecoder:
    """Decodes a JSON object into an attrs class or dataclass; field table built on first use so
    self-referential classes compile."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.table: dict[str, tuple[str, _Dec]] | None = None

    def _build(self) -> dict[str, tuple[str, _Dec]]:
        cls = self.cls
        try:
            hints = typing.get_type_hints(cls)
        except Exception as exc:  # unresolvable forward references
            raise CodecError(f"cannot decode into {type_name(cls)}: type hints unresolvable: {exc}") from exc
        table: dict[str, tuple[str, _Dec]] = {}
        if attrs.has(cls):
            fields = [(f.name, f.alias or f.name) for f in attrs.fields(cls) if f.init]
        else:
            fields = [(f.name, f.name) for f in dataclasses.fields(cls) if f.init]
        for name, arg in fields:
            dec = decoder_for(hints.get(name, Any))
            table[name] = (arg, dec)
            table.setdefault(_camel(name), (arg, dec))
        return table

    def __call__(self, obj: Any) -> Any:
        table = self.table
        if table is None:
            table = self.table = self._build()
        if type(obj) is not dict:
            raise _fail(self.cls, obj, "expected an object")
        kwargs: dict[str, Any] = {}
        for key, value in obj.items():
            entry = table.get(key)
            if entry is not None and entry[0] not in kwargs:  # unknown keys are skipped, as Go does
                kwargs[entry[0]] = entry[1](value)
        try:
            return self.cls(**kwargs)
        except (TypeError, ValueError) as exc:  # missing field without default, validator failure
            raise CodecError(f"cannot decode JSON into {type_name(self.cls)}: {exc}") from exc


def _union(tp: Any, args: tuple[Any, ...]) -> _Dec:
    optional = type(None) in args
    decs = [decoder_for(a) for a in args if a is not type(None)]

    def dec(v: Any) -> Any:
        if v is None and optional:
            return None
        for d in decs:
            try:
                return d(v)
            except CodecError:
                continue
        raise _fail(tp, v)

    return dec


def _list(tp: Any, item: _Dec, factory: Callable[[Any], Any]) -> _Dec:
    def dec(v: Any) -> Any:
        if type(v) is not list:
            raise _fail(tp, v, "expected an array")
        return factory([item(x) for x in v])

    return dec


def _fixed_tuple(tp: Any, items: list[_Dec]) -> _Dec:
    def dec(v: Any) -> Any:
        if type(v) is not list or len(v) != len(items):
            raise _fail(tp, v, f"expected an array of {len(items)}")
        return tuple(d(x) for d, x in zip(items, v, strict=True))

    return dec


def _mapping(tp: Any, key: Any, value: _Dec) -> _Dec:
    if key in (str, Any):
        kdec: _Dec = _identity
    else:
        inner = decoder_for(key)

        def kdec(k: str) -> Any:
            if key is int:
                try:
                    return int(k)
                except ValueError:
                    raise _fail(tp, k, "map key is not an integer") from None
            return inner(k)

    def dec(v: Any) -> Any:
        if type(v) is not dict:
            raise _fail(tp, v, "expected an object")
        return {kdec(k): value(x) for k, x in v.items()}

    return dec


def _enum(tp: type[enum.Enum]) -> _Dec:
    def dec(v: Any) -> Any:
        try:
            return tp(v)
        except ValueError:
            try:
                return tp[v] if type(v) is str else tp(v)
            except (KeyError, ValueError):
                raise _fail(tp, v) from None

    return dec


def _parser(tp: Any, parse: Callable[[str], Any]) -> _Dec:
    def dec(v: Any) -> Any:
        if type(v) is not str:
            raise _fail(tp, v, "expected a string")
        try:
            return parse(v)
        except ValueError as exc:
            raise _fail(tp, v, str(exc)) from exc

    return dec


def _message(cls: type[Message]) -> _Dec:
    return lambda v: message_from_obj(v, cls)


def _compile_decoder(tp: Any) -> _Dec:
    if tp is Any or tp is object or tp is None:
        return _dec_any
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        return _union(tp, args)
    if origin is typing.Literal:

        def literal(v: Any) -> Any:
            if v in args:
                return v
            raise _fail(tp, v)

        return literal
    if origin is typing.Annotated:
        return decoder_for(args[0])
    if origin in (list, set, frozenset) or (
        origin is not None and origin.__name__ in ("Sequence", "Iterable")
    ):
        factory: Callable[[Any], Any] = origin if origin in (set, frozenset) else list
        return _list(tp, decoder_for(args[0] if args else Any), factory)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _list(tp, decoder_for(args[0]), tuple)
        return _fixed_tuple(tp, [decoder_for(a) for a in args])
    if origin is dict or (origin is not None and origin.__name__ in ("Mapping", "MutableMapping")):
        k, v = args if args else (str, Any)
        return _mapping(tp, k, decoder_for(v))
    if origin is not None:
        raise CodecError(f"cannot decode JSON into {tp!r}: unsupported type form")
    if not isinstance(tp, type):
        raise CodecError(f"cannot decode JSON into {tp!r}: not a type")
    if issubclass(tp, Message):
        return _message(tp)
    if attrs.has(tp) or dataclasses.is_dataclass(tp):
        return _ClassDecoder(tp)
    if issubclass(tp, enum.Enum):
        return _enum(tp)
    if tp is bool:
        return _exact(bool, tp=bool)
    if tp is int:
        return _exact(int, tp=int)
    if tp is float:
        return _dec_float
    if tp is str:
        return _exact(str, tp=str)
    if tp is bytes:
        return _dec_bytes
    if tp is dict:
        return _exact(dict, tp=dict)
    if tp is list:
        return _exact(list, tp=list)
    if tp is tuple:
        return _list(tp, _dec_any, tuple)
    if tp is datetime.datetime:
        return _parser(tp, datetime.datetime.fromisoformat)
    if tp is datetime.date:
        return _parser(tp, datetime.date.fromisoformat)
    if tp is uuid.UUID:
        return _parser(tp, uuid.UUID)
    if typing.is_typeddict(tp):
        return _exact(dict, tp=tp)
    raise CodecError(f"cannot decode JSON into {type_name(tp)}: unsupported type")


_DECODERS: dict[Any, _Dec] = {}


def decoder_for(tp: Any) -> _Dec:
    """A cached function turning a parsed JSON value into ``tp``; raises CodecError on mismatch."""
    try:
        return _DECODERS[tp]
    except KeyError:
        pass
    except TypeError:  # unhashable type expression
        return _compile_decoder(tp)
    dec = _DECODERS[tp] = _compile_decoder(tp)
    return dec
