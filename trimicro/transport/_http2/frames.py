"""HTTP/2's wire format (RFC 9113 sections 3.4, 4 and 6): the preface, frame types and flags, the
fixed-size layouts, and the two frame-level transforms that carry no connection state.

Frames are parsed in place by :meth:`.connection.H2Protocol.receive_data` (``FRAME_HEADER.unpack_from``
on the receive buffer, no frame objects) and serialised as ``FRAME_HEADER.pack(...)`` followed by the
payload as it is, so a DATA frame's bytes are never copied into a bigger buffer before the socket.
"""

from __future__ import annotations

import struct
from typing import Final

from .errors import H2ProtocolError

__all__ = [
    "ACK",
    "CONTINUATION",
    "DATA",
    "END_HEADERS",
    "END_STREAM",
    "FRAME_HEADER",
    "GOAWAY",
    "GOAWAY_HEAD",
    "HEADERS",
    "MAX_FRAME",
    "MAX_WINDOW",
    "MIN_FRAME",
    "PADDED",
    "PING",
    "PREFACE",
    "PRIORITY",
    "PRIORITY_FLAG",
    "PUSH_PROMISE",
    "RST_STREAM",
    "SETTING",
    "SETTINGS",
    "U32",
    "WINDOW_UPDATE",
    "unpad",
]

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types and flags (RFC 9113 section 6)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

FRAME_HEADER: Final = struct.Struct(">HBBBL")  # 24-bit length split 16+8, type, flags, stream id
U32: Final = struct.Struct(">L")
SETTING: Final = struct.Struct(">HL")
GOAWAY_HEAD: Final = struct.Struct(">LL")

#: the largest flow-control window (and WINDOW_UPDATE increment) there is
MAX_WINDOW: Final = 2**31 - 1
#: the frame size every endpoint must accept, and the largest it may announce
MIN_FRAME: Final = 16384
MAX_FRAME: Final = 2**24 - 1


def unpad(flags: int, payload: bytes) -> bytes:
    """A DATA or HEADERS payload without its padding (RFC 9113 6.1); bad padding breaks the
    connection, since the frame's boundaries can no longer be trusted."""
    if not flags & PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise H2ProtocolError("bad padding")
    return payload[1 : len(payload) - payload[0]]
