"""HTTP/2's error codes (RFC 9113 section 7) and the errors the engine raises.

Named ``H2…`` so they never shadow :mod:`trimicro.errors` (``H2ProtocolError`` is the wire-level
"the peer broke HTTP/2", which the transport turns into a ``TransportError``; trimicro's own
``ProtocolError`` is a malformed *call*). ``StreamError`` never leaves the package: it is how a
frame handler asks the connection to reset one stream and carry on.
"""

from __future__ import annotations

import enum

__all__ = ["ErrorCode", "FlowControlError", "H2Error", "H2ProtocolError", "StreamClosedError", "StreamError"]


class ErrorCode(enum.IntEnum):
    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class H2Error(Exception):
    """Something HTTP/2 refused."""


class H2ProtocolError(H2Error):
    """The peer broke the protocol: the connection is over and a GOAWAY is queued."""

    def __init__(self, message: str, error_code: ErrorCode = ErrorCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.error_code = error_code


class StreamClosedError(H2Error):
    """We tried to send on a stream that is closed (ended, reset or never opened)."""

    def __init__(self, stream_id: int) -> None:
        super().__init__(f"HTTP/2 stream {stream_id} is closed")
        self.stream_id = stream_id


class FlowControlError(H2Error):
    """We tried to send more than the peer's windows or frame size allow (a caller bug)."""


class StreamError(Exception):
    """Internal: reset this one stream (RST_STREAM with ``code``) and carry on."""

    def __init__(self, stream_id: int, code: ErrorCode) -> None:
        self.stream_id = stream_id
        self.code = code
