"""Codecs chosen by Content-Type: protobuf, json, json-rpc, proto-rpc, bytes, gRPC framing.

``get_codec(content_type)`` returns the shared codec for a header value; every codec raises
:class:`~trimicro.errors.CodecError` for bodies it can't handle.
"""

from .._protowire import encode_varint as encode_varint
from .._protowire import read_varint as read_varint
from ._base import Codec as Codec
from ._registry import DEFAULT_CONTENT_TYPE as DEFAULT_CONTENT_TYPE
from ._registry import codecs as codecs
from ._registry import get_codec as get_codec
from ._registry import register_codec as register_codec
from .bytes import BytesCodec as BytesCodec
from .bytes import Frame as Frame
from .bytes import raw_bytes as raw_bytes
from .describe import describe as describe
from .grpc import COMPRESS_MIN as COMPRESS_MIN
from .grpc import DEFAULT_MAX_MESSAGE_SIZE as DEFAULT_MAX_MESSAGE_SIZE
from .grpc import RESOURCE_EXHAUSTED as RESOURCE_EXHAUSTED
from .grpc import SUPPORTED_ENCODINGS as SUPPORTED_ENCODINGS
from .grpc import GrpcCodec as GrpcCodec
from .grpc import GrpcFrameDecoder as GrpcFrameDecoder
from .grpc import GrpcJsonCodec as GrpcJsonCodec
from .grpc import GrpcProtoCodec as GrpcProtoCodec
from .grpc import accepted_encodings as accepted_encodings
from .grpc import compress as compress
from .grpc import encode_frame as encode_frame
from .grpc import frame_message as frame_message
from .json import JsonCodec as JsonCodec
from .json import dumps as dumps
from .json import from_obj as from_obj
from .json import loads as loads
from .jsonrpc import JsonRpcCodec as JsonRpcCodec
from .protobuf import ProtobufCodec as ProtobufCodec
from .protobuf import decode_message as decode_message
from .protobuf import encode_message as encode_message
from .protorpc import ProtoRpcCodec as ProtoRpcCodec
from .protorpc import decode_header as decode_header
from .protorpc import encode_header as encode_header
from .protorpc import read_netstrings as read_netstrings

__all__ = [
    "COMPRESS_MIN",
    "DEFAULT_CONTENT_TYPE",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "RESOURCE_EXHAUSTED",
    "SUPPORTED_ENCODINGS",
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
    "accepted_encodings",
    "codecs",
    "compress",
    "decode_header",
    "decode_message",
    "describe",
    "dumps",
    "encode_frame",
    "encode_header",
    "encode_message",
    "encode_varint",
    "frame_message",
    "from_obj",
    "get_codec",
    "loads",
    "raw_bytes",
    "read_netstrings",
    "read_varint",
    "register_codec",
]
