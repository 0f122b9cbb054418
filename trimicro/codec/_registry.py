"""The Content-Type -> codec table: one shared instance per content type, looked up per request.

Installed packages add codecs through entry points in the ``trimicro.codec`` group, named by the content
type they handle (``application/msgpack = "trimicro_msgpack:MsgpackCodec"``: a codec class, called with
no arguments, or a codec instance). They are read once, when a content type is first missing from the
table, and a built-in or :func:`register_codec` entry wins over an entry point of the same name.
"""

from __future__ import annotations

import importlib.metadata

from ..errors import CodecError
from ._base import Codec
from .bytes import BytesCodec
from .grpc import GrpcCodec, GrpcJsonCodec, GrpcProtoCodec
from .json import JsonCodec
from .jsonrpc import JsonRpcCodec
from .protobuf import ProtobufCodec
from .protorpc import ProtoRpcCodec

__all__ = ["DEFAULT_CONTENT_TYPE", "codecs", "get_codec", "register_codec"]

#: What a request without Content-Type means (Go Micro's server default).
DEFAULT_CONTENT_TYPE = "application/protobuf"

_protobuf = ProtobufCodec()
_json = JsonCodec()

_CODECS: dict[str, Codec] = {
    "application/protobuf": _protobuf,
    "application/proto": _protobuf,
    "application/x-protobuf": _protobuf,
    "application/json": _json,
    "application/json-rpc": JsonRpcCodec(),
    "application/proto-rpc": ProtoRpcCodec(),
    "application/octet-stream": BytesCodec(),
    "application/grpc": GrpcCodec(),
    "application/grpc+proto": GrpcProtoCodec(),
    "application/grpc+json": GrpcJsonCodec(),
}
# Exact header values seen before -> codec, so the common case is one dict hit with no string work.
_SEEN: dict[str | None, Codec] = {None: _protobuf, "": _protobuf}


def get_codec(content_type: str | None) -> Codec:
    """The codec for a Content-Type header value (parameters and case ignored; missing -> protobuf)."""
    try:
        return _SEEN[content_type]
    except KeyError:
        pass
    assert content_type is not None
    key = content_type.partition(";")[0].strip().lower()
    codec = _CODECS.get(key) if key else _protobuf
    if codec is None:
        codec = _from_entry_point(key)
    if codec is None:
        raise CodecError(
            f"unsupported Content-Type {content_type!r}; supported: {', '.join(sorted(_CODECS))}"
        )
    if len(_SEEN) < 256:  # bounded: header values come from the network
        _SEEN[content_type] = codec
    return codec


# Content type -> the entry point naming its codec; read once (the miss path sees network input).
_ENTRY_POINTS: dict[str, importlib.metadata.EntryPoint] | None = None


def _from_entry_point(key: str) -> Codec | None:
    global _ENTRY_POINTS
    if _ENTRY_POINTS is None:
        _ENTRY_POINTS = {
            ep.name.strip().lower(): ep for ep in importlib.metadata.entry_points(group="trimicro.codec")
        }
    ep = _ENTRY_POINTS.pop(key, None)  # loaded at most once; then it is in the table
    if ep is None:
        return None
    loaded = ep.load()
    codec: Codec = loaded() if isinstance(loaded, type) else loaded
    _CODECS[key] = codec
    return codec


def register_codec(content_type: str, codec: Codec) -> None:
    """Add or replace the codec for ``content_type`` (matched case-insensitively, without parameters)."""
    key = content_type.partition(";")[0].strip().lower()
    if not key:
        raise ValueError("content_type must not be empty")
    _CODECS[key] = codec
    _SEEN.clear()
    _SEEN[None] = _SEEN[""] = _CODECS.get(DEFAULT_CONTENT_TYPE, _protobuf)


def codecs() -> dict[str, Codec]:
    """A copy of the table: content type -> codec."""
    return dict(_CODECS)
