"""``application/json``: protobuf messages as ProtoJSON, plus attrs classes, dataclasses and plain values.

Matches Go Micro's JSON codec: proto field names out (snake_case), both snake_case and lowerCamelCase
in, unknown fields ignored, only populated fields emitted (an empty message is ``{}``), and the body
ends with ``\\n`` as Go's ``json.Encoder`` writes it.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import CodecError
from ._base import Codec
from ._jsontypes import decoder_for, to_obj
from ._util import is_message_class, preview, type_name
from .bytes import Frame, raw_bytes

__all__ = ["JsonCodec", "dumps", "from_obj", "loads"]


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def dumps(msg: Any) -> str:
    """JSON text of ``msg`` (no trailing newline); raises CodecError for what JSON can't hold."""
    try:
        return _ENCODER.encode(to_obj(msg))
    except CodecError:
        raise
    except (TypeError, ValueError, RecursionError) as exc:
        raise CodecError(f"cannot encode {type_name(type(msg))} as JSON: {exc}") from exc


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse one JSON document (UTF-8); an empty or blank body parses as None."""
    try:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
        if not text or text.isspace():
            return None
        return _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        shown = preview(data.encode() if isinstance(data, str) else data)
        raise CodecError(f"invalid JSON body: {exc} ({shown})") from exc


def from_obj(obj: Any, into: Any) -> Any:
    """Turn a parsed JSON value into ``into`` (a message class, attrs class, dataclass, type hint...)."""
    if into is None or into is Any or into is object:
        return obj
    if obj is None and not is_message_class(into):
        # A missing body decodes to an empty object for classes that can be built from one.
        if into is dict:
            return {}
        return decoder_for(into)({})
    return decoder_for(into)(obj)


class JsonCodec(Codec):
    """JSON bodies; ``into=None``/``dict`` give the parsed value, ``bytes`` the raw body."""

    content_type = "application/json"
    #: Go's json.Encoder ends each value with a newline; gRPC's +json bodies do not.
    newline: bool = True

    def encode(self, msg: Any) -> bytes:
        data = raw_bytes(msg)
        if data is not None:  # already-encoded JSON passes through untouched
            return data
        text = dumps(msg)
        try:
            return (text + "\n").encode() if self.newline else text.encode()
        except UnicodeEncodeError as exc:
            raise CodecError(f"cannot encode {type_name(type(msg))} as JSON: {exc}") from exc

    def decode(self, data: bytes, into: Any = None) -> Any:
        if into is bytes:
            return bytes(data)
        if into is Frame:
            return Frame(bytes(data))
        return from_obj(loads(data), into)
