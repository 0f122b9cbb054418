"""Codecs chosen by Content-Type: protobuf, json, json-rpc, proto-rpc, bytes, gRPC framing."""

from ._base import Codec as Codec
