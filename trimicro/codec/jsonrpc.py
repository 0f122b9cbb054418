"""``application/json-rpc``: Go's net/rpc JSON-RPC 1.0 envelope, which Go Micro clients fall back to.

Request ``{"method":"Greeter.Hello","params":[<req>],"id":<n>}``; response
``{"id":<n>,"result":<rsp>,"error":null|"<text>"}``; each followed by ``\\n`` like Go's encoder.
The message inside is the :mod:`~trimicro.codec.json` encoding.
"""

from __future__ import annotations

import json
from typing import Any

from .. import errors
from ..errors import CodecError
from ._base import Codec
from ._util import type_name
from .bytes import Frame, raw_bytes
from .json import dumps, from_obj, loads

__all__ = ["JsonRpcCodec"]


def _json(value: Any) -> bytes:
    try:
        return dumps(value).encode()
    except UnicodeEncodeError as exc:
        raise CodecError(f"cannot encode {type_name(type(value))} as JSON: {exc}") from exc


def _body(msg: Any) -> bytes:
    data = raw_bytes(msg)
    if data is not None:
        return data.strip() or b"null"
    return _json(msg)


def _id(seq: int) -> bytes:
    if type(seq) is not int:
        raise CodecError(f"json-rpc id must be an int, not {type_name(type(seq))}")
    return b"%d" % seq


def _seq(value: Any) -> int:
    """The envelope id as an int: Go Micro sends ids as strings ("1"), net/rpc as numbers."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    if type(value) is str:
        try:
            return int(value)
        except ValueError:
            try:
                as_float = float(value)  # Go formats large float ids as "1e+06"
            except ValueError:
                return 0
            return int(as_float) if as_float.is_integer() else 0
    return 0


def _object(data: bytes, what: str) -> dict[str, Any]:
    obj = loads(data)
    if type(obj) is not dict:
        raise CodecError(f"invalid json-rpc {what}: expected a JSON object, got {obj!r:.60}")
    return obj


def _inner(value: Any, into: Any) -> Any:
    if into is bytes or into is Frame:
        raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        return raw if into is bytes else Frame(raw)
    return from_obj(value, into)


class JsonRpcCodec(Codec):
    """JSON-RPC envelope codec (``envelope = True``)."""

    content_type = "application/json-rpc"
    envelope = True

    def encode(self, msg: Any) -> bytes:
        return _body(msg) + b"\n"

    def decode(self, data: bytes, into: Any = None) -> Any:
        if into is bytes:
            return bytes(data)
        return from_obj(loads(data), into)

    def encode_request(self, endpoint: str, seq: int, msg: Any) -> bytes:
        return b"".join(
            (b'{"method":', _json(endpoint), b',"params":[', _body(msg), b'],"id":', _id(seq), b"}\n")
        )

    def decode_request(self, data: bytes, into: Any = None) -> tuple[str | None, int, Any]:
        obj = _object(data, "request")
        method = obj.get("method")
        if type(method) is not str:
            raise CodecError(f"invalid json-rpc request: method must be a string, got {method!r:.60}")
        params = obj.get("params")
        if params is None:
            value = None
        elif type(params) is list:
            value = params[0] if params else None
        else:
            raise CodecError(f"invalid json-rpc request: params must be an array, got {params!r:.60}")
        return method, _seq(obj.get("id")), _inner(value, into)

    def encode_response(self, endpoint: str, seq: int, msg: Any, error: str | None = None) -> bytes:
        err = _json(error) if error else b"null"
        return b"".join((b'{"id":', _id(seq), b',"result":', _body(msg), b',"error":', err, b"}\n"))

    def decode_response(self, data: bytes, into: Any = None) -> Any:
        obj = _object(data, "response")
        error = obj.get("error")
        if error is not None:
            if type(error) is str:
                raise errors.parse(error or "unspecified error")
            raise errors.parse(json.dumps(error) if type(error) is dict else str(error))
        return _inner(obj.get("result"), into)
