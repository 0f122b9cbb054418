"""``application/json``: protobuf messages as ProtoJSON, plus attrs classes, dataclasses and plain values.

Matches Go Micro's JSON codec: proto field names out (snake_case), both snake_case and lowerCamelCase
in, only populated fields emitted (an empty message is ``{}``), ``<>&`` escaped
and a closing ``\\n``, byte for byte as Go's ``json.Encoder`` writes it.

Unknown fields: a *request* decoded into a protobuf message by a server rejects them (400 naming the
field), as protobuf's JSON parser does by default and Go's ``jsonpb`` does: a misspelt ``{"nam": "x"}``
is a caller's bug that would otherwise run the handler with an empty field. Responses and plain
``decode`` skip them, so a server can add fields without breaking older clients. Register
``JsonCodec(strict_requests=False)`` to accept unknown request fields too.
"""

from __future__ import annotations

import json
from json import encoder as _jencoder
from json import scanner as _jscanner
from typing import Any

from google.protobuf.message import Message

from ..errors import CodecError
from ._base import Codec
from ._jsonproto import message_from_obj, message_to_obj
from ._jsontypes import decoder_for, to_obj
from ._util import is_message_class, preview, type_name
from .bytes import Frame, raw_bytes

__all__ = ["JsonCodec", "dumps", "from_obj", "loads"]


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unserializable(obj: Any) -> Any:
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_DECODER = json.JSONDecoder(parse_constant=_no_constants)
_WS = " \t\n\r"

# JSONEncoder.encode builds a new C encoder on every call; on the hot path we build it once.
# Values come from to_obj (acyclic, JSON types only), so no circular-reference markers are needed.
_c_make_encoder = getattr(_jencoder, "c_make_encoder", None)
if _c_make_encoder is not None:  # pragma: no branch - CPython
    _iterencode = _c_make_encoder(
        None, _unserializable, _jencoder.encode_basestring, None, ":", ",", False, False, False
    )

    def _encode(obj: Any) -> str:
        return "".join(_iterencode(obj, 0))

else:  # pragma: no cover - interpreters without the C accelerator
    _encode = _ENCODER.encode  # type: ignore[assignment]

# Go's json.Encoder escapes these inside strings (SetEscapeHTML defaults to true); they can only occur
# inside JSON strings, so a translate over the whole text gives Go's exact bytes.
_GO_ESCAPES = {ord(c): f"\\u{ord(c):04x}" for c in "<>&\u2028\u2029"}


def _go_text(text: str) -> str:
    if "<" in text or ">" in text or "&" in text or "\u2028" in text or "\u2029" in text:
        return text.translate(_GO_ESCAPES)
    return text


_scan = _jscanner.make_scanner(_DECODER)  # type: ignore[arg-type]


def dumps(msg: Any) -> str:
    """JSON text of ``msg`` (no trailing newline); raises CodecError for what JSON can't hold."""
    try:
        return _go_text(_encode(to_obj(msg)))
    except CodecError:
        raise
    except (TypeError, ValueError, RecursionError) as exc:
        raise CodecError(f"cannot encode {type_name(type(msg))} as JSON: {exc}") from exc


def _parse(text: str) -> Any:
    start = 0
    if text[0] in _WS:
        start = len(text) - len(text.lstrip(_WS))
    try:
        obj, end = _scan(text, start)
    except StopIteration as exc:
        raise json.JSONDecodeError("Expecting value", text, exc.value) from None
    if end != len(text) and text[end:].strip(_WS):
        raise json.JSONDecodeError("Extra data", text, end)
    return obj


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse one JSON document (UTF-8); an empty or blank body parses as None."""
    try:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
        if not text.strip(_WS):
            return None
        return _parse(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        shown = preview(data.encode("utf-8", "replace") if isinstance(data, str) else data)
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

    def __init__(self, *, strict_requests: bool = True) -> None:
        #: Reject unknown fields in requests decoded into protobuf messages (see the module doc).
        self.strict_requests = strict_requests

    def encode(self, msg: Any) -> bytes:
        if isinstance(msg, Message):  # the RPC hot path: skip the generic dispatch
            text = _go_text(_encode(message_to_obj(msg)))
        else:
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

    def decode_request(self, data: bytes, into: Any = None) -> tuple[str | None, int, Any]:
        if self.strict_requests and is_message_class(into):
            obj = loads(data)
            return None, 0, into() if obj is None else message_from_obj(obj, into, strict=True)
        return None, 0, self.decode(data, into)
