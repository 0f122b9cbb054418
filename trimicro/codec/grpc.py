"""gRPC message framing (sans-IO) and the ``application/grpc[+proto|+json]`` content types.

Each gRPC message on an HTTP/2 stream is a 5-byte prefix (compressed flag, 4-byte big-endian length)
and the payload. :class:`GrpcFrameDecoder` is fed the DATA bytes as they arrive, in any split, and
hands back whole messages; it never does I/O. The codecs here encode the message *body* only: framing
is the transport's job, done with :func:`encode_frame` and the decoder.
"""

from __future__ import annotations

import struct
import zlib

from ..errors import ProtocolError
from .json import JsonCodec
from .protobuf import ProtobufCodec

__all__ = [
    "COMPRESS_MIN",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "RESOURCE_EXHAUSTED",
    "SUPPORTED_ENCODINGS",
    "GrpcCodec",
    "GrpcFrameDecoder",
    "GrpcJsonCodec",
    "GrpcProtoCodec",
    "accepted_encodings",
    "compress",
    "encode_frame",
    "frame_message",
]

#: gRPC's default receive limit (4 MiB), as grpc-go and Go Micro use.
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024
#: ``grpc-encoding`` values this module can decompress.
SUPPORTED_ENCODINGS = ("identity", "gzip", "deflate")

#: Smaller messages go out uncompressed even on a compressed stream (the flag is per message):
#: gzip's own framing is 18 bytes, so below this it rarely saves a byte and always costs CPU.
COMPRESS_MIN = 64

_PREFIX = struct.Struct(">BI")
_PREFIX_LEN = _PREFIX.size
_MAX_U32 = 0xFFFFFFFF
# gRPC status RESOURCE_EXHAUSTED, for transports that report frame errors as gRPC statuses.
RESOURCE_EXHAUSTED = 8


def encode_frame(payload: bytes, compressed: bool = False) -> bytes:
    """Prefix ``payload`` with the gRPC flag byte and big-endian length."""
    if len(payload) > _MAX_U32:
        raise ProtocolError(f"gRPC message of {len(payload)} bytes does not fit a 32-bit length", code=413)
    return _PREFIX.pack(1 if compressed else 0, len(payload)) + payload


def compress(payload: bytes, encoding: str) -> bytes:
    """Compress a message body for a frame with the compressed flag set."""
    if encoding == "gzip":
        return zlib.compress(payload, wbits=31)
    if encoding == "deflate":
        return zlib.compress(payload)
    raise ProtocolError(
        f"unsupported grpc-encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
    )


def frame_message(payload: bytes, encoding: str | None) -> bytes:
    """One framed message for a stream whose ``grpc-encoding`` is ``encoding`` (None or
    ``identity``: plain). Compressed when that makes it smaller, else sent plain with the flag
    clear, which the gRPC spec allows on any stream: small or incompressible messages cost nothing."""
    if encoding is None or encoding == "identity" or len(payload) < COMPRESS_MIN:
        return encode_frame(payload)
    packed = compress(payload, encoding)
    if len(packed) >= len(payload):
        return encode_frame(payload)
    return encode_frame(packed, True)


def accepted_encodings(header: str | None) -> frozenset[str]:
    """The encodings a ``grpc-accept-encoding`` value lists, lower-cased (identity always)."""
    names = {"identity"}
    if header:
        names.update(n.strip().lower() for n in header.split(",") if n.strip())
    return frozenset(names)


class GrpcFrameDecoder:
    """Reassembles gRPC messages from DATA bytes.

    ``feed(data)`` returns the messages completed by ``data`` (decompressed when ``encoding`` names a
    negotiated ``grpc-encoding``); ``close()`` marks end of stream and raises if a message was cut
    short. Errors raise :class:`ProtocolError` and leave the decoder failed: every later call raises
    the same error, so a transport can't accidentally resynchronise on garbage.
    """

    __slots__ = ("_buf", "_error", "encoding", "max_message_size")

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, encoding: str | None = None) -> None:
        self.max_message_size = max_message_size
        self.encoding: str | None = None
        self.negotiate(encoding)
        self._buf = bytearray()
        self._error: ProtocolError | None = None

    def negotiate(self, encoding: str | None) -> None:
        """Decompress compressed messages with ``encoding`` from now on: a client learns its
        response's ``grpc-encoding`` only once the response headers arrive."""
        if encoding is not None and encoding not in SUPPORTED_ENCODINGS:
            raise ProtocolError(
                f"unsupported grpc-encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
            )
        self.encoding = None if encoding == "identity" else encoding

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a message."""
        return len(self._buf)

    def _fail(self, message: str, code: int = 400) -> ProtocolError:
        self._error = ProtocolError(message, code=code)
        self._buf.clear()
        return self._error

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        if self._error is not None:
            raise self._error
        buf: bytes | bytearray | memoryview
        if self._buf:
            buf = self._buf
            buf += data
        else:
            # Nothing pending (the usual case): slice messages straight out of ``data``, one copy
            # each, and keep only an incomplete tail.
            buf = data
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        while end - pos >= _PREFIX_LEN:
            flag, size = _PREFIX.unpack_from(buf, pos)
            if flag > 1:
                raise self._fail(f"gRPC frame has invalid compressed flag {flag}")
            if size > self.max_message_size:
                raise self._fail(
                    f"gRPC message of {size} bytes exceeds the limit of {self.max_message_size} "
                    f"(RESOURCE_EXHAUSTED)",
                    code=413,
                )
            if flag and self.encoding is None:
                raise self._fail("gRPC frame is compressed but no grpc-encoding was negotiated")
            if end - pos - _PREFIX_LEN < size:
                break
            start = pos + _PREFIX_LEN
            payload = bytes(memoryview(buf)[start : start + size])
            pos = start + size
            out.append(self._decompress(payload) if flag else payload)
        if buf is self._buf:
            if pos:
                del self._buf[:pos]
        elif pos < end:
            self._buf += memoryview(buf)[pos:]
        return out

    def _decompress(self, payload: bytes) -> bytes:
        wbits = 31 if self.encoding == "gzip" else 15
        d = zlib.decompressobj(wbits)
        try:
            # Bounded: a small compressed frame must not inflate past the message limit.
            data = d.decompress(payload, self.max_message_size + 1)
        except zlib.error as exc:
            raise self._fail(f"gRPC message is not valid {self.encoding}: {exc}") from exc
        if len(data) > self.max_message_size:
            raise self._fail(
                f"decompressed gRPC message exceeds the limit of {self.max_message_size} (RESOURCE_EXHAUSTED)",
                code=413,
            )
        if not d.eof:
            raise self._fail(f"gRPC message is truncated {self.encoding} data")
        return data

    def close(self) -> None:
        """End of stream: raises ProtocolError if a partial message is buffered."""
        if self._error is not None:
            raise self._error
        if self._buf:
            raise self._fail(f"gRPC stream ended inside a message ({len(self._buf)} bytes buffered)")


class GrpcProtoCodec(ProtobufCodec):
    """``application/grpc+proto``: the message body is protobuf."""

    content_type = "application/grpc+proto"


class GrpcCodec(GrpcProtoCodec):
    """``application/grpc``: protobuf, gRPC's default sub-format."""

    content_type = "application/grpc"


class GrpcJsonCodec(JsonCodec):
    """``application/grpc+json``: the message body is JSON, without Go's trailing newline."""

    content_type = "application/grpc+json"
    newline = False
