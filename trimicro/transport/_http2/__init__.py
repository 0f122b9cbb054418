"""trimicro's own sans-IO HTTP/2 engine (RFC 9113, with HPACK per RFC 7541): the part a gRPC
endpoint needs, and nothing that does I/O. ``_h2conn.H2Conn`` drives it over a trio stream.

Private to :mod:`trimicro.transport`; one job per module:

- :mod:`.connection`: :class:`H2Protocol`, one connection (buffers, stream map, windows, frame
  dispatch);
- :mod:`.stream`: one stream's state as a single ``(state, input) -> (action, next)`` table;
- :mod:`.frames`: the wire format (preface, frame types and flags, layouts, padding);
- :mod:`.settings`: SETTINGS values, defaults and what a peer may not send;
- :mod:`.headers`: whether a received header list is a well-formed request, response or trailers;
- :mod:`.hpack`: header compression, cached both ways;
- :mod:`.events`: what ``receive_data`` returns;
- :mod:`.errors`: HTTP/2 error codes and the errors raised (``H2…``, so that none shadows
  :mod:`trimicro.errors`).
"""

from .connection import MAX_STREAM_ID, H2Protocol
from .errors import ErrorCode, FlowControlError, H2Error, H2ProtocolError, StreamClosedError
from .events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    RemoteSettingsChanged,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from .frames import PREFACE
from .hpack import SENSITIVE, encode_header, encode_headers, encode_str_headers
from .settings import Settings

__all__ = [
    "MAX_STREAM_ID",
    "PREFACE",
    "SENSITIVE",
    "ConnectionTerminated",
    "DataReceived",
    "ErrorCode",
    "Event",
    "FlowControlError",
    "H2Error",
    "H2Protocol",
    "H2ProtocolError",
    "RemoteSettingsChanged",
    "RequestReceived",
    "ResponseReceived",
    "Settings",
    "StreamClosedError",
    "StreamEnded",
    "StreamReset",
    "TrailersReceived",
    "WindowUpdated",
    "encode_header",
    "encode_headers",
    "encode_str_headers",
]
