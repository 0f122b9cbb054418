"""Codecs chosen by Content-Type: protobuf, json, json-rpc, proto-rpc, bytes, gRPC framing.

``get_codec(content_type)`` returns the shared codec for a header value; every codec raises
:class:`~trimicro.errors.CodecError` for bodies it can't handle.
"""

from ._base import Codec as Codec
from ._registry import DEFAULT_CONTENT_TYPE as DEFAULT_CONTENT_TYPE
from ._registry import codecs as codecs
from ._registry import get_codec as get_codec
from ._registry import register_codec as register_codec
from .bytes import BytesCodec as BytesCodec
from .bytes import Frame as Frame
from .describe import describe as describe
from .grpc import GrpcCodec as GrpcCodec
from .grpc import GrpcFrameDecoder as GrpcFrameDecoder
from .grpc import GrpcJsonCodec as GrpcJsonCodec
from .grpc import GrpcProtoCodec as GrpcProtoCodec
from .grpc import encode_frame as encode_frame
from .json import JsonCodec as JsonCodec
from .jsonrpc import JsonRpcCodec as JsonRpcCodec
from .protobuf import ProtobufCodec as ProtobufCodec
from .protorpc import ProtoRpcCodec as ProtoRpcCodec

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "BytesCodec",
    "Codec",
    "Frame",
    "GrpcCodec",
    "GrpcFrameDecoder",
    "GrpcJsonCodec",
    "GrpcProtoCodec",
    "JsonCodec",
    "JsonRpcCodec",
    "ProtoRpcCodec",
    "ProtobufCodec",
    "codecs",
    "describe",
    "encode_frame",
    "get_codec",
    "register_codec",
]
