"""A sans-IO HTTP/2 connection: the part of RFC 9113 a gRPC endpoint needs, in the style of h2.

Why not the ``h2`` library: profiled, a unary gRPC call spent about half its CPU inside h2, hpack and
hyperframe (an eagerly built ``repr`` of every received frame, a frame object and an event-validation
pass per frame, the receive buffer re-copied after every frame, Huffman coding of every header), and a
64 KiB message cost ~270 µs of h2 alone. This package keeps the same shape and names (``receive_data``
returns events, ``send_*`` queue bytes, ``data_to_send`` hands them over), so ``_h2conn.H2Conn`` drives
it as it drove h2, and does only what the wire requires:

- frames are parsed in place from one buffer (``struct.unpack_from``), trimmed once per read
  (layouts in :mod:`.frames`);
- header blocks are encoded and decoded by :mod:`.hpack`, which caches both ways (a header's
  encoding, a block's decoding under the table state it was decoded in), so repeated headers cost a
  dict lookup instead of HPACK work; :mod:`.headers` checks what was decoded;
- each stream's state follows the table in :mod:`.stream`; flow control, SETTINGS (:mod:`.settings`),
  PING/GOAWAY/RST_STREAM/CONTINUATION and padding follow the RFC; a malformed request or response
  is a *stream* error (RST_STREAM) so one bad call never takes the connection's other calls down;
  what breaks the connection's shared state (framing, HPACK, the connection window) is a connection
  error: GOAWAY queued, :class:`~.errors.H2ProtocolError` raised.

This module is the connection object only: it owns the buffers, the stream map, the connection's
windows and the frame dispatch.

Left out on purpose: server push (we disable it; a PUSH_PROMISE is a protocol error), priorities
(parsed and ignored, as RFC 9113 allows), and CONNECT / extended CONNECT.
"""

from __future__ import annotations

from typing import Final

from . import settings as _settings
from .errors import ErrorCode, FlowControlError, H2Error, H2ProtocolError, StreamClosedError, StreamError
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
from .flood import FloodGuard
from .frames import (
    ACK,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    FRAME_HEADER,
    GOAWAY,
    GOAWAY_HEAD,
    HEADERS,
    MAX_WINDOW,
    MIN_FRAME,
    PING,
    PREFACE,
    PRIORITY,
    PRIORITY_FLAG,
    PUSH_PROMISE,
    RST_STREAM,
    SETTING,
    SETTINGS,
    U32,
    WINDOW_UPDATE,
    unpad,
)
from .headers import REQUEST, RESPONSE, TRAILERS, content_length, valid
from .hpack import Decoder, HPACKError, OversizedHeaderList, encode_headers
from .settings import DEFAULT_WINDOW, Settings
from .stream import LOCAL_OPEN, REMOTE_OPEN, TRANSITIONS, Action, Input, State, Stream, refused

__all__ = ["MAX_STREAM_ID", "H2Protocol"]

#: The last stream id (31 bits): at 10,000 calls/s a connection uses them up in about 30 hours.
MAX_STREAM_ID: Final = 2**31 - 1
#: Stream ids we reset and whose late frames we must therefore ignore (RFC 9113 5.4.2): remembered
#: for this many most recent resets, then such frames are ignored anyway as "closed".
_RESET_MEMORY: Final = 1024
#: Control-frame bytes the peer may make us queue between two writes (see ``_control``).
_CONTROL_MAX: Final = 1024 * 1024

# the stream table's names as plain globals: the hot paths read them once per frame
_IDLE: Final = State.IDLE
_CLOSED: Final = State.CLOSED
_SEND_HEADERS: Final = Input.SEND_HEADERS
_SEND_DATA: Final = Input.SEND_DATA
_SEND_END_STREAM: Final = Input.SEND_END_STREAM
_RECV_HEADERS: Final = Input.RECV_HEADERS
_RECV_DATA: Final = Input.RECV_DATA
_RECV_END_STREAM: Final = Input.RECV_END_STREAM
_RESET: Final = Input.RESET
_RESPONSE: Final = Action.RESPONSE
_MALFORMED: Final = Action.MALFORMED
_REQUEST: Final = Action.REQUEST


class H2Protocol:
    """One HTTP/2 connection's state; feed it bytes, take its events and the bytes it wants sent.

    ``local_settings`` are announced by :meth:`initiate_connection` and applied at once for what we
    accept (peers may keep using the defaults until they see them; every limit we announce is at
    least as generous as the default, except ``MAX_CONCURRENT_STREAMS``, which RFC 9113 lets us
    enforce with REFUSED_STREAM).
    """

    def __init__(
        self,
        *,
        client_side: bool,
        initial_window_size: int = DEFAULT_WINDOW,
        max_frame_size: int = MIN_FRAME,
        max_header_list_size: int = 64 * 1024,
        max_concurrent_streams: int | None = None,
        guard: FloodGuard | None = None,
    ) -> None:
        self.client_side = client_side
        #: budgets for the peer's RST_STREAM/SETTINGS/PING frames (see :mod:`.flood`)
        self.guard = guard if guard is not None else FloodGuard()
        local = Settings()
        local.initial_window_size = initial_window_size
        local.max_frame_size = max_frame_size
        local.max_header_list_size = max_header_list_size
        if max_concurrent_streams is not None:
            local.max_concurrent_streams = max_concurrent_streams
        if client_side:
            local.enable_push = 0
        self.local_settings = local
        self.remote_settings = Settings()
        self.streams: dict[int, Stream] = {}
        self._out: list[bytes] = []
        self._out_len = 0
        self._in = bytearray()
        self._preface_pending = not client_side
        self._settings_seen = False
        self._decoder = Decoder(max_header_list_size=max_header_list_size)
        #: the most a header block may take on the wire (frames included): HPACK makes a field of
        #: ~1 byte decode to an entry of 32+, so twice the list size is generous
        self._block_limit = 2 * max_header_list_size + 16384
        self._table_update: bytes = b""  # a dynamic-table-size update owed to the peer's decoder
        # the block's (stream id, end_stream, fragments, size) while CONTINUATION frames are due
        self._continuation: tuple[int, bool, list[bytes], int] | None = None
        #: the stream whose HEADERS declared itself as its own dependency (refused once decoded)
        self._self_dependent = 0
        self._send_window = DEFAULT_WINDOW
        self._recv_window = DEFAULT_WINDOW
        self._recv_window_max = DEFAULT_WINDOW
        self._recv_unacked = 0
        self._next_local_id = 1 if client_side else 2
        self._last_remote_id = 0
        self._reset_ids: dict[int, None] = {}
        self._control_queued = 0
        self.open_outbound_streams = 0
        self.open_inbound_streams = 0
        self.closed = False

    # -- output --
    @property
    def pending(self) -> int:
        """How many bytes are queued for the socket."""
        return self._out_len

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        self._out = []
        self._out_len = 0
        self._control_queued = 0
        return data

    def _frame(self, ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> None:
        n = len(payload)
        self._out.append(FRAME_HEADER.pack(n >> 8, n & 0xFF, ftype, flags, stream_id))
        if n:
            self._out.append(payload)
        self._out_len += 9 + n

    @property
    def max_outbound_frame_size(self) -> int:
        return self.remote_settings.max_frame_size

    def initiate_connection(self) -> None:
        """Queue the preface (client) and our SETTINGS."""
        if self.client_side:
            self._out.append(PREFACE)
            self._out_len += len(PREFACE)
        self._frame(SETTINGS, 0, 0, _settings.encode(self.local_settings))

    def increment_flow_control_window(self, increment: int) -> None:
        """Open the connection's receive window by ``increment`` (it then stays that wide)."""
        if not 0 < increment <= MAX_WINDOW - self._recv_window_max:
            raise ValueError(f"bad window increment {increment}")
        self._recv_window += increment
        self._recv_window_max += increment
        self._frame(WINDOW_UPDATE, 0, 0, U32.pack(increment))

    def get_next_available_stream_id(self) -> int:
        """The id the next stream we open gets; past ``MAX_STREAM_ID`` the connection is used up
        (a client must then open a new one)."""
        return self._next_local_id

    def local_flow_control_window(self, stream_id: int) -> int:
        """How many DATA bytes we may send on ``stream_id`` now."""
        st = self.streams.get(stream_id)
        if st is None or st.state not in LOCAL_OPEN:
            raise StreamClosedError(stream_id)
        return min(self._send_window, st.send_window)

    def send_headers(
        self, stream_id: int, headers: list[tuple[bytes, bytes, bool]], end_stream: bool = False
    ) -> None:
        """Queue a header block; the first on a new client stream opens it.

        ``headers`` are ``(name, value, sensitive)``, already valid (we do not check our own)."""
        self.send_header_block(stream_id, encode_headers(headers), end_stream)

    def send_header_block(self, stream_id: int, block: bytes, end_stream: bool = False) -> None:
        """:meth:`send_headers` with the block already encoded (by :func:`.hpack.encode_str_headers`
        or :func:`.hpack.encode_headers`: without the dynamic table, so any block is valid in any
        connection state)."""
        st = self.streams.get(stream_id)
        if st is None:
            if not self.client_side or stream_id != self._next_local_id or self.closed:
                raise StreamClosedError(stream_id)
            if stream_id > MAX_STREAM_ID:
                raise H2Error("stream ids of this connection are used up")
            st = Stream(
                stream_id, self.remote_settings.initial_window_size, self.local_settings.initial_window_size
            )
            self.streams[stream_id] = st
            self._next_local_id += 2
            self.open_outbound_streams += 1
        found = TRANSITIONS.get((st.state, _SEND_HEADERS))
        if found is None:
            raise refused(stream_id, _SEND_HEADERS)
        st.state = found[1]
        if self._table_update:
            block = self._table_update + block
            self._table_update = b""
        flags = END_STREAM if end_stream else 0
        limit = self.remote_settings.max_frame_size
        if len(block) <= limit:
            self._frame(HEADERS, flags | END_HEADERS, stream_id, block)
        else:
            self._frame(HEADERS, flags, stream_id, block[:limit])
            for pos in range(limit, len(block), limit):
                last = pos + limit >= len(block)
                self._frame(CONTINUATION, END_HEADERS if last else 0, stream_id, block[pos : pos + limit])
        if end_stream:
            self._end_local(st)

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Queue one DATA frame; ``data`` must fit the windows and the peer's frame size."""
        st = self.streams.get(stream_id)
        found = None if st is None else TRANSITIONS.get((st.state, _SEND_DATA))
        if st is None or found is None:
            raise refused(stream_id, _SEND_DATA)
        n = len(data)
        if n > self._send_window or n > st.send_window or n > self.remote_settings.max_frame_size:
            raise FlowControlError(f"{n} bytes exceed the window or frame size on stream {stream_id}")
        self._send_window -= n
        st.send_window -= n
        st.state = found[1]
        self._frame(DATA, END_STREAM if end_stream else 0, stream_id, data)
        if end_stream:
            self._end_local(st)

    def end_stream(self, stream_id: int) -> None:
        self.send_data(stream_id, b"", end_stream=True)

    def reset_stream(self, stream_id: int, error_code: int = ErrorCode.CANCEL) -> None:
        st = self.streams.get(stream_id)
        if st is None:
            raise StreamClosedError(stream_id)
        self._frame(RST_STREAM, 0, stream_id, U32.pack(error_code))
        self._remember_reset(stream_id)
        self._close(st)

    def acknowledge_received_data(self, size: int, stream_id: int) -> None:
        """The application consumed ``size`` flow-controlled bytes: hand window back in batches of
        half a window, so a stream of small messages does not cost a WINDOW_UPDATE each."""
        if size <= 0:
            return
        self._recv_unacked += size
        if self._recv_unacked >= self._recv_window_max // 2:
            self._recv_window += self._recv_unacked
            self._frame(WINDOW_UPDATE, 0, 0, U32.pack(self._recv_unacked))
            self._recv_unacked = 0
        st = self.streams.get(stream_id)
        if st is not None and st.state in REMOTE_OPEN:
            st.unacked += size
            if st.unacked >= self.local_settings.initial_window_size // 2:
                st.recv_window += st.unacked
                self._frame(WINDOW_UPDATE, 0, stream_id, U32.pack(st.unacked))
                st.unacked = 0

    def close_connection(self, error_code: int = ErrorCode.NO_ERROR, additional_data: bytes = b"") -> None:
        """Queue GOAWAY: no new streams; the peer learns the last stream we processed."""
        if not self.closed:
            self._frame(GOAWAY, 0, 0, GOAWAY_HEAD.pack(self._last_remote_id, error_code) + additional_data)
            self.closed = True

    @property
    def header_block_pending(self) -> bool:
        """A HEADERS arrived without END_HEADERS and its CONTINUATION is still due."""
        return self._continuation is not None

    def send_ping(self, opaque: bytes = bytes(8)) -> None:
        """Queue a PING (keepalive); its ACK sets ``guard.last_ack``."""
        self._frame(PING, 0, 0, opaque)

    # -- stream bookkeeping --
    # (callers have checked that the stream's side is open: a missing transition is a bug here)
    def _end_local(self, st: Stream) -> None:
        st.state = TRANSITIONS[st.state, _SEND_END_STREAM][1]
        if st.state is _CLOSED:
            self._retire(st)

    def _end_remote(self, st: Stream) -> None:
        st.state = TRANSITIONS[st.state, _RECV_END_STREAM][1]
        if st.state is _CLOSED:
            self._retire(st)

    def _close(self, st: Stream) -> None:
        """Reset: the stream is closed whatever its state was."""
        st.state = TRANSITIONS[st.state, _RESET][1]
        self._retire(st)

    def _retire(self, st: Stream) -> None:
        """A closed stream leaves the map and stops counting against the concurrency limits."""
        if self.streams.pop(st.id, None) is not None:
            if (st.id & 1) == (1 if self.client_side else 0):
                self.open_outbound_streams -= 1
            else:
                self.open_inbound_streams -= 1

    def _remember_reset(self, stream_id: int) -> None:
        self._reset_ids[stream_id] = None
        if len(self._reset_ids) > _RESET_MEMORY:
            del self._reset_ids[next(iter(self._reset_ids))]

    def _is_idle(self, stream_id: int) -> bool:
        """Never opened by either side (frames other than HEADERS/PRIORITY there are errors)."""
        if (stream_id & 1) == (1 if self.client_side else 0):
            return stream_id >= self._next_local_id
        return stream_id > self._last_remote_id

    # -- input --
    def receive_data(self, data: bytes | bytearray) -> list[Event]:
        """Parse what arrived; raise :class:`H2ProtocolError` (GOAWAY queued) if the peer broke HTTP/2."""
        events: list[Event] = []
        buf: bytes | bytearray
        if self._in:
            buf = self._in
            buf += data
        else:
            buf = data  # parse straight from the caller's bytes; keep only a partial frame
        try:
            pos = self._parse(buf, events)
        except H2ProtocolError as exc:
            self._in = bytearray()
            self.close_connection(exc.error_code, getattr(exc, "debug_data", b""))
            raise
        if pos == len(buf):
            self._in = bytearray()
        elif buf is self._in:
            del buf[:pos]
        else:
            self._in = bytearray(memoryview(buf)[pos:])
        return events

    def _parse(self, buf: bytes | bytearray, events: list[Event]) -> int:
        pos = 0
        end = len(buf)
        if self._preface_pending:
            if end < len(PREFACE):
                if not PREFACE.startswith(bytes(buf)):
                    raise H2ProtocolError("invalid HTTP/2 preface")
                return 0
            if buf[: len(PREFACE)] != PREFACE:
                raise H2ProtocolError("invalid HTTP/2 preface")
            self._preface_pending = False
            pos = len(PREFACE)
        max_in = self.local_settings.max_frame_size
        unpack = FRAME_HEADER.unpack_from
        view = memoryview(buf)  # slicing a view copies once, slicing a bytearray twice
        while end - pos >= 9:
            hi, lo, ftype, flags, sid = unpack(buf, pos)
            length = (hi << 8) | lo
            if length > max_in:
                raise H2ProtocolError(f"frame of {length} bytes exceeds {max_in}", ErrorCode.FRAME_SIZE_ERROR)
            if end - pos - 9 < length:
                break
            payload = bytes(view[pos + 9 : pos + 9 + length])
            pos += 9 + length
            sid &= 0x7FFFFFFF
            if not self._settings_seen:
                if ftype != SETTINGS or flags & ACK:
                    raise H2ProtocolError("the first frame must be SETTINGS")
                self._settings_seen = True
            if self._continuation is not None and ftype != CONTINUATION:
                raise H2ProtocolError("a header block was interrupted")
            try:
                if ftype == DATA:
                    self._on_data(sid, flags, payload, events)
                elif ftype == HEADERS:
                    self._on_headers(sid, flags, payload, events)
                elif ftype == CONTINUATION:
                    self._on_continuation(sid, flags, payload, events)
                elif ftype == WINDOW_UPDATE:
                    self._on_window_update(sid, payload, events)
                elif ftype == RST_STREAM:
                    self._on_rst(sid, payload, events)
                elif ftype == SETTINGS:
                    self._on_settings(sid, flags, payload, events)
                elif ftype == PING:
                    if sid or length != 8:
                        raise H2ProtocolError(
                            "bad PING",
                            ErrorCode.FRAME_SIZE_ERROR if length != 8 else ErrorCode.PROTOCOL_ERROR,
                        )
                    if not flags & ACK:
                        self.guard.on_ping()
                        self._frame(PING, ACK, 0, payload)
                        self._control(17)
                    else:
                        self.guard.on_ping_ack()
                elif ftype == GOAWAY:
                    if sid:
                        raise H2ProtocolError("GOAWAY on a stream")
                    if length < 8:
                        raise H2ProtocolError("GOAWAY too short", ErrorCode.FRAME_SIZE_ERROR)
                    last, code = GOAWAY_HEAD.unpack_from(payload)
                    last &= 0x7FFFFFFF
                    # Our streams above ``last`` were never processed: they are closed (the caller
                    # learns it from ConnectionTerminated and may retry them elsewhere).
                    mine = 1 if self.client_side else 0
                    for st in [st for sid2, st in self.streams.items() if (sid2 & 1) == mine and sid2 > last]:
                        self._close(st)
                    events.append(ConnectionTerminated(code, last, payload[8:]))
                elif ftype == PRIORITY:
                    if not sid:
                        raise H2ProtocolError("PRIORITY on stream 0")
                    if length != 5:
                        if self._is_idle(sid):  # no RST_STREAM on an idle stream (RFC 9113 5.1)
                            raise H2ProtocolError("bad PRIORITY length", ErrorCode.FRAME_SIZE_ERROR)
                        raise StreamError(sid, ErrorCode.FRAME_SIZE_ERROR)
                    if U32.unpack_from(payload)[0] & 0x7FFFFFFF == sid:
                        # A stream cannot depend on itself (RFC 9113 5.3.1): a stream error, or
                        # a connection error on an idle stream, which RST_STREAM may not name.
                        if self._is_idle(sid):
                            raise H2ProtocolError(f"PRIORITY: stream {sid} depends on itself")
                        raise StreamError(sid, ErrorCode.PROTOCOL_ERROR)
                elif ftype == PUSH_PROMISE:
                    raise H2ProtocolError("PUSH_PROMISE is disabled")
                # unknown frame types are ignored (RFC 9113 5.5)
            except StreamError as err:
                self._stream_error(err, events)
        return pos

    def _control(self, size: int) -> None:
        """Count a frame the peer made us queue (PING/SETTINGS ack, RST_STREAM for its errors): a
        peer that sends those and never reads would grow our output buffer without bound (Go's
        http2 server has the same guard)."""
        self._control_queued += size
        if self._control_queued > _CONTROL_MAX:
            raise H2ProtocolError(
                "too many control frames queued for a peer that does not read", ErrorCode.ENHANCE_YOUR_CALM
            )

    def _stream_error(self, err: StreamError, events: list[Event]) -> None:
        st = self.streams.get(err.stream_id)
        self._control(13)
        self._frame(RST_STREAM, 0, err.stream_id, U32.pack(err.code))
        self._remember_reset(err.stream_id)
        if st is not None:
            self._close(st)
            events.append(StreamReset(err.stream_id, err.code))

    def _on_data(self, sid: int, flags: int, payload: bytes, events: list[Event]) -> None:
        if not sid:
            raise H2ProtocolError("DATA on stream 0")
        n = len(payload)
        if n > self._recv_window:
            raise H2ProtocolError("connection flow-control window exceeded", ErrorCode.FLOW_CONTROL_ERROR)
        self._recv_window -= n
        st = self.streams.get(sid)
        found = None if st is None else TRANSITIONS.get((st.state, _RECV_DATA))
        if st is None or found is None:
            if self._is_idle(sid):
                raise H2ProtocolError(f"DATA on idle stream {sid}")
            # a stream we reset or that ended: give the connection window back and drop it
            self.acknowledge_received_data(n, sid)
            if st is not None or sid not in self._reset_ids:
                raise refused(sid, _RECV_DATA)
            return
        if n > st.recv_window:
            self.acknowledge_received_data(n, sid)
            raise StreamError(sid, ErrorCode.FLOW_CONTROL_ERROR)
        if found[0] is _MALFORMED:  # a response's DATA before its HEADERS
            self.acknowledge_received_data(n, sid)
            raise StreamError(sid, ErrorCode.PROTOCOL_ERROR)
        data = unpad(flags, payload)
        if st.content_left is not None:
            # RFC 9113 8.1.1: DATA that does not add up to the request's content-length is malformed.
            st.content_left -= len(data)
            if st.content_left < 0 or (flags & END_STREAM and st.content_left):
                self.acknowledge_received_data(n, sid)
                raise StreamError(sid, ErrorCode.PROTOCOL_ERROR)
        st.state = found[1]
        st.recv_window -= n
        if data or n:
            events.append(DataReceived(sid, data, n))
        if flags & END_STREAM:
            self._end_remote(st)
            events.append(StreamEnded(sid))

    def _on_headers(self, sid: int, flags: int, payload: bytes, events: list[Event]) -> None:
        if not sid:
            raise H2ProtocolError("HEADERS on stream 0")
        block = unpad(flags, payload)
        if flags & PRIORITY_FLAG:
            if len(block) < 5:
                raise H2ProtocolError("HEADERS too short for its priority", ErrorCode.FRAME_SIZE_ERROR)
            if U32.unpack_from(block)[0] & 0x7FFFFFFF == sid:
                self._self_dependent = sid  # a stream error, once HPACK has decoded the block
            block = block[5:]
        end_stream = bool(flags & END_STREAM)
        if len(payload) > self._block_limit:
            raise H2ProtocolError("header block too large", ErrorCode.ENHANCE_YOUR_CALM)
        if flags & END_HEADERS:
            self._on_block(sid, end_stream, block, events)
        else:
            self._continuation = (sid, end_stream, [block], 9 + len(payload))

    def _on_continuation(self, sid: int, flags: int, payload: bytes, events: list[Event]) -> None:
        pending = self._continuation
        if pending is None or pending[0] != sid:
            raise H2ProtocolError("unexpected CONTINUATION")
        _, end_stream, parts, size = pending
        parts.append(payload)
        # A header block may not grow without bound while we wait for its end; frame headers count
        # too, so a flood of empty CONTINUATION frames is bounded as well (CVE-2024-27316's kind).
        size += 9 + len(payload)
        if size > self._block_limit:
            raise H2ProtocolError("header block too large", ErrorCode.ENHANCE_YOUR_CALM)
        if flags & END_HEADERS:
            self._continuation = None
            self._on_block(sid, end_stream, b"".join(parts), events)
        else:
            self._continuation = (sid, end_stream, parts, size)

    def _on_block(self, sid: int, end_stream: bool, block: bytes, events: list[Event]) -> None:
        # Decode first, whatever becomes of the stream: the HPACK table is shared by the connection.
        try:
            decoded = self._decoder.decode(block)
        except OversizedHeaderList as exc:
            raise H2ProtocolError(f"header list too large: {exc}", ErrorCode.ENHANCE_YOUR_CALM) from None
        except HPACKError as exc:
            raise H2ProtocolError(f"HPACK decoding failed: {exc}", ErrorCode.COMPRESSION_ERROR) from None
        if self._self_dependent == sid:
            # RFC 9113 5.3.1: a stream error. The HEADERS opened the stream, so its id is used up
            # and its later frames are a reset stream's.
            self._self_dependent = 0
            if (sid & 1) == (0 if self.client_side else 1) and sid > self._last_remote_id:
                self._last_remote_id = sid
            raise StreamError(sid, ErrorCode.PROTOCOL_ERROR)
        st = self.streams.get(sid)
        if st is None:
            remote_parity = (sid & 1) == (0 if self.client_side else 1)
            if not remote_parity:
                if self._is_idle(sid):
                    raise H2ProtocolError(f"HEADERS on our idle stream {sid}")
                return  # a stream of ours that we reset or finished: ignore
            if self.client_side:
                raise H2ProtocolError("server-initiated streams are not allowed")
            if sid <= self._last_remote_id:
                if sid in self._reset_ids:
                    return  # a stream we reset: its late frames are ignored
                # a new request must use a higher id; reusing a finished stream is a connection error
                raise H2ProtocolError(f"HEADERS on closed stream {sid}", ErrorCode.STREAM_CLOSED)
            self._last_remote_id = sid
            if self.closed:
                # Above our GOAWAY's last stream: not served, and its later frames are ignored too.
                self._remember_reset(sid)
                return
            if self.open_inbound_streams >= self.local_settings.max_concurrent_streams:
                raise StreamError(sid, ErrorCode.REFUSED_STREAM)
            action, state = TRANSITIONS[_IDLE, _RECV_HEADERS]  # the peer's request opens it
            if action is _REQUEST and not valid(decoded, REQUEST):
                raise StreamError(sid, ErrorCode.PROTOCOL_ERROR)
            try:
                expected = content_length(decoded.raw)
            except ValueError:
                raise StreamError(sid, ErrorCode.PROTOCOL_ERROR) from None
            if end_stream and expected:  # promises a body it does not have (RFC 9113 8.1.1)
                raise StreamError(sid, ErrorCode.PROTOCOL_ERROR)
            st = Stream(
                sid, self.remote_settings.initial_window_size, self.local_settings.initial_window_size, state
            )
            st.content_left = expected
            self.streams[sid] = st
            self.open_inbound_streams += 1
            events.append(RequestReceived(sid, decoded.text, end_stream))
            if end_stream:
                self._end_remote(st)
                events.append(StreamEnded(sid))
            return
        found = TRANSITIONS.get((st.state, _RECV_HEADERS))
        if found is None:
            raise refused(sid, _RECV_HEADERS)
        action, state = found
        if action is _RESPONSE:
            if not valid(decoded, RESPONSE):
                raise StreamError(sid, ErrorCode.PROTOCOL_ERROR)
            status = decoded.raw[0][1]
            if status[:1] == b"1" and len(status) == 3 and status != b"101":
                if end_stream:
                    raise StreamError(sid, ErrorCode.PROTOCOL_ERROR)
                return  # an informational response: the real one follows (the state stays)
            st.state = state
            events.append(ResponseReceived(sid, decoded.text, end_stream))
        else:  # Action.TRAILERS
            if not end_stream or not valid(decoded, TRAILERS) or st.content_left:
                raise StreamError(sid, ErrorCode.PROTOCOL_ERROR)
            st.state = state
            events.append(TrailersReceived(sid, decoded.text))
        if end_stream:
            self._end_remote(st)
            events.append(StreamEnded(sid))

    def _on_window_update(self, sid: int, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 4:
            raise H2ProtocolError("bad WINDOW_UPDATE length", ErrorCode.FRAME_SIZE_ERROR)
        delta = U32.unpack(payload)[0] & 0x7FFFFFFF
        if not sid:
            if not delta:
                raise H2ProtocolError("WINDOW_UPDATE of 0")
            self._send_window += delta
            if self._send_window > MAX_WINDOW:
                raise H2ProtocolError("connection window overflow", ErrorCode.FLOW_CONTROL_ERROR)
            events.append(WindowUpdated(0, delta))
            return
        st = self.streams.get(sid)
        if st is None:
            if self._is_idle(sid):
                raise H2ProtocolError(f"WINDOW_UPDATE on idle stream {sid}")
            return
        if not delta:
            raise StreamError(sid, ErrorCode.PROTOCOL_ERROR)
        st.send_window += delta
        if st.send_window > MAX_WINDOW:
            raise StreamError(sid, ErrorCode.FLOW_CONTROL_ERROR)
        events.append(WindowUpdated(sid, delta))

    def _on_rst(self, sid: int, payload: bytes, events: list[Event]) -> None:
        if not sid:
            raise H2ProtocolError("RST_STREAM on stream 0")
        if len(payload) != 4:
            raise H2ProtocolError("bad RST_STREAM length", ErrorCode.FRAME_SIZE_ERROR)
        self.guard.on_reset()
        st = self.streams.get(sid)
        if st is None:
            if self._is_idle(sid):
                raise H2ProtocolError(f"RST_STREAM on idle stream {sid}")
            return
        self._close(st)
        events.append(StreamReset(sid, U32.unpack(payload)[0]))

    def _on_settings(self, sid: int, flags: int, payload: bytes, events: list[Event]) -> None:
        if sid:
            raise H2ProtocolError("SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise H2ProtocolError("SETTINGS ACK with a payload", ErrorCode.FRAME_SIZE_ERROR)
            return
        if len(payload) % 6:
            raise H2ProtocolError("bad SETTINGS length", ErrorCode.FRAME_SIZE_ERROR)
        self.guard.on_settings()
        remote = self.remote_settings
        changed: dict[int, int] = {}
        for pos in range(0, len(payload), 6):
            key, value = SETTING.unpack_from(payload, pos)
            _settings.check(key, value, client_side=self.client_side)
            if key == Settings.HEADER_TABLE_SIZE:
                if value != remote.header_table_size:
                    # We never insert into the peer's table, but its decoder may insist on hearing
                    # that we use no more than it now allows: tell it "size 0".
                    self._table_update = b"\x20"
                remote.header_table_size = value
            elif key == Settings.ENABLE_PUSH:
                remote.enable_push = value
            elif key == Settings.MAX_CONCURRENT_STREAMS:
                remote.max_concurrent_streams = value
            elif key == Settings.INITIAL_WINDOW_SIZE:
                delta = value - remote.initial_window_size
                remote.initial_window_size = value
                for st in self.streams.values():
                    st.send_window += delta
                    if st.send_window > MAX_WINDOW:
                        raise H2ProtocolError("stream window overflow", ErrorCode.FLOW_CONTROL_ERROR)
            elif key == Settings.MAX_FRAME_SIZE:
                remote.max_frame_size = value
            elif key == Settings.MAX_HEADER_LIST_SIZE:
                remote.max_header_list_size = value
            else:
                continue
            changed[key] = value
        self._frame(SETTINGS, ACK, 0)
        self._control(9)
        events.append(RemoteSettingsChanged(changed))
