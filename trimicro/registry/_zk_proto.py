"""ZooKeeper's client protocol without I/O: jute records, framing, replies, watcher events, error codes.

The wire (ZooKeeper 3.x, protocol version 0): every packet is a 4-byte big-endian length and a jute
record. Jute is plain big-endian: ``int`` 4 bytes, ``long`` 8, ``bool`` 1, ``buffer``/``ustring`` an
``int`` length (``-1`` = null) and the bytes, ``vector`` an ``int`` count (``-1`` = null) and the items.

- The client opens with a ConnectRequest and the server's first packet is a ConnectResponse (no reply
  header). A session id of 0 asks for a new session; sending a known id and password resumes it. A
  response with a timeout <= 0 means the session has expired: the client must start a new one.
- Afterwards each request is ``RequestHeader(xid, type)`` + body, each answer ``ReplyHeader(xid, zxid,
  err)`` + body, the body present only when ``err`` is 0. Answers come in request order. Special xids:
  ``-1`` a watcher event (body ``WatcherEvent``), ``-2`` a ping's answer.
- Watches are one-shot and per connection: a getData/exists/getChildren with ``watch=True`` arms one,
  the server sends one event when it fires, and they are gone when the connection is.

Only the requests a registry needs are here. Every decoder raises :class:`ZkProtocolError` on
malformed input, never ``struct.error`` or ``IndexError``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import ClassVar

import attrs

from ..errors import RegistryError

__all__ = [
    "MAX_PACKET",
    "ConnectRequest",
    "ConnectResponse",
    "FrameBuffer",
    "Reader",
    "ReplyHeader",
    "Stat",
    "WatcherEvent",
    "Writer",
    "ZkError",
    "ZkProtocolError",
    "close_session",
    "create",
    "decode_children",
    "decode_create",
    "decode_data",
    "decode_stat",
    "delete",
    "error_for",
    "exists",
    "frame",
    "get_children2",
    "get_data",
    "ping",
    "set_data",
]

MAX_PACKET = 16 * 1024 * 1024  # a little above the server's default jute.maxbuffer (~1 MiB) is plenty

# Operation codes (org.apache.zookeeper.ZooDefs.OpCode).
OP_CREATE = 1
OP_DELETE = 2
OP_EXISTS = 3
OP_GET_DATA = 4
OP_SET_DATA = 5
OP_GET_CHILDREN2 = 12
OP_PING = 11
OP_CLOSE_SESSION = -11

# Special xids.
XID_NOTIFICATION = -1
XID_PING = -2

# CreateMode flags.
PERSISTENT = 0
EPHEMERAL = 1

# Permissions: world:anyone with ALL (read, write, create, delete, admin).
PERM_ALL = 0x1F

# Watcher event types and keeper states.
EVENT_NONE = -1
EVENT_NODE_CREATED = 1
EVENT_NODE_DELETED = 2
EVENT_NODE_DATA_CHANGED = 3
EVENT_NODE_CHILDREN_CHANGED = 4
STATE_SYNC_CONNECTED = 3
STATE_EXPIRED = -112

# Error codes the client acts on (org.apache.zookeeper.KeeperException.Code).
OK = 0
CONNECTION_LOSS = -4
MARSHALLING_ERROR = -5
BAD_ARGUMENTS = -8
NO_NODE = -101
NO_AUTH = -102
BAD_VERSION = -103
NO_CHILDREN_FOR_EPHEMERALS = -108
NODE_EXISTS = -110
NOT_EMPTY = -111
SESSION_EXPIRED = -112
INVALID_ACL = -114
SESSION_MOVED = -118

_ERROR_NAMES = {
    -1: "system error",
    -2: "runtime inconsistency",
    -3: "data inconsistency",
    CONNECTION_LOSS: "connection loss",
    MARSHALLING_ERROR: "marshalling error",
    -6: "unimplemented",
    -7: "operation timeout",
    BAD_ARGUMENTS: "bad arguments",
    -9: "invalid state",
    -12: "unknown session",
    -13: "new config no quorum",
    -14: "reconfig in progress",
    -100: "API error",
    NO_NODE: "no node",
    NO_AUTH: "not authenticated",
    BAD_VERSION: "bad version",
    NO_CHILDREN_FOR_EPHEMERALS: "ephemeral nodes may not have children",
    NODE_EXISTS: "node exists",
    NOT_EMPTY: "node has children",
    SESSION_EXPIRED: "session expired",
    -113: "invalid callback",
    INVALID_ACL: "invalid ACL",
    -115: "authentication failed",
    SESSION_MOVED: "session moved",
    -119: "not read-only",
    -120: "ephemeral on local session",
    -121: "no watcher",
    -122: "request timeout",
    -123: "reconfig disabled",
    -124: "session closed, SASL required",
    -125: "quota exceeded",
    -127: "throttled",
}


class ZkError(RegistryError):
    """ZooKeeper answered a request with an error code (``code``, e.g. :data:`NO_NODE`)."""

    def __init__(self, code: int, path: str = "") -> None:
        name = _ERROR_NAMES.get(code, f"error {code}")
        super().__init__(f"zookeeper: {name}" + (f" ({path})" if path else ""))
        self.code = code
        self.path = path


class ZkProtocolError(RegistryError):
    """Bytes that are not a well-formed ZooKeeper packet (the connection cannot be trusted after it)."""


def error_for(code: int, path: str = "") -> ZkError:
    return ZkError(code, path)


# ---- jute primitives ----------------------------------------------------------------------------

_INT = struct.Struct(">i")
_LONG = struct.Struct(">q")


class Writer:
    """Appends jute primitives to a buffer."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def i32(self, value: int) -> Writer:
        self.buf += _INT.pack(value)
        return self

    def i64(self, value: int) -> Writer:
        self.buf += _LONG.pack(value)
        return self

    def flag(self, value: bool) -> Writer:
        self.buf.append(1 if value else 0)
        return self

    def buffer(self, value: bytes | None) -> Writer:
        if value is None:
            return self.i32(-1)
        self.i32(len(value))
        self.buf += value
        return self

    def string(self, value: str | None) -> Writer:
        return self.buffer(None if value is None else value.encode("utf-8"))

    def strings(self, values: Sequence[str] | None) -> Writer:
        if values is None:
            return self.i32(-1)
        self.i32(len(values))
        for v in values:
            self.string(v)
        return self

    def getvalue(self) -> bytes:
        return bytes(self.buf)


class Reader:
    """Reads jute primitives from one packet; running past its end is a :class:`ZkProtocolError`."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = bytes(data)
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ZkProtocolError(
                f"zookeeper packet truncated: need {n} bytes at offset {self.pos} of {len(self.data)}"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def i32(self) -> int:
        return int(_INT.unpack(self._take(4))[0])

    def i64(self) -> int:
        return int(_LONG.unpack(self._take(8))[0])

    def flag(self) -> bool:
        return self._take(1) != b"\x00"

    def buffer(self) -> bytes | None:
        n = self.i32()
        if n == -1:
            return None
        if n < -1:
            raise ZkProtocolError(f"zookeeper packet: negative length {n}")
        return self._take(n)

    def string(self) -> str | None:
        raw = self.buffer()
        if raw is None:
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ZkProtocolError("zookeeper packet: string is not UTF-8") from None

    def strings(self) -> list[str]:
        n = self.i32()
        if n == -1:
            return []
        if n < -1 or n > len(self.data) - self.pos:  # each item takes at least 4 bytes; cheap sanity bound
            raise ZkProtocolError(f"zookeeper packet: bad vector length {n}")
        out = []
        for _ in range(n):
            s = self.string()
            out.append(s or "")
        return out

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos


# ---- records --------------------------------------------------------------------------------------


@attrs.frozen
class Stat:
    """A znode's metadata. ``ephemeral_owner`` is the owning session id, 0 for a persistent node."""

    czxid: int = 0
    mzxid: int = 0
    ctime: int = 0
    mtime: int = 0
    version: int = 0
    cversion: int = 0
    aversion: int = 0
    ephemeral_owner: int = 0
    data_length: int = 0
    num_children: int = 0
    pzxid: int = 0

    SIZE: ClassVar[int] = 68

    def write(self, w: Writer) -> Writer:
        w.i64(self.czxid).i64(self.mzxid).i64(self.ctime).i64(self.mtime)
        w.i32(self.version).i32(self.cversion).i32(self.aversion).i64(self.ephemeral_owner)
        return w.i32(self.data_length).i32(self.num_children).i64(self.pzxid)

    @classmethod
    def read(cls, r: Reader) -> Stat:
        return cls(
            r.i64(), r.i64(), r.i64(), r.i64(), r.i32(), r.i32(), r.i32(), r.i64(), r.i32(), r.i32(),
            r.i64(),
        )  # fmt: skip


@attrs.frozen
class ConnectRequest:
    """The first packet of a connection: a new session (``session_id`` 0) or a resumed one."""

    timeout_ms: int
    session_id: int = 0
    password: bytes = b"\x00" * 16
    last_zxid_seen: int = 0
    read_only: bool = False
    protocol_version: int = 0

    def encode(self) -> bytes:
        w = Writer().i32(self.protocol_version).i64(self.last_zxid_seen).i32(self.timeout_ms)
        w.i64(self.session_id).buffer(self.password).flag(self.read_only)
        return frame(w.getvalue())

    @classmethod
    def decode(cls, body: bytes) -> ConnectRequest:
        r = Reader(body)
        version, zxid, timeout, session = r.i32(), r.i64(), r.i32(), r.i64()
        password = r.buffer() or b""
        read_only = r.flag() if r.remaining else False
        return cls(timeout, session, password, zxid, read_only, version)


@attrs.frozen
class ConnectResponse:
    """The server's answer to a ConnectRequest; ``expired`` when it refused to resume the session."""

    timeout_ms: int
    session_id: int
    password: bytes
    read_only: bool = False
    protocol_version: int = 0

    @property
    def expired(self) -> bool:
        return self.timeout_ms <= 0

    def encode(self) -> bytes:
        w = Writer().i32(self.protocol_version).i32(self.timeout_ms).i64(self.session_id)
        return frame(w.buffer(self.password).flag(self.read_only).getvalue())

    @classmethod
    def decode(cls, body: bytes) -> ConnectResponse:
        r = Reader(body)
        version, timeout, session = r.i32(), r.i32(), r.i64()
        password = r.buffer() or b""
        read_only = r.flag() if r.remaining else False  # older servers omit it
        return cls(timeout, session, password, read_only, version)


@attrs.frozen
class ReplyHeader:
    xid: int
    zxid: int
    err: int

    @classmethod
    def read(cls, r: Reader) -> ReplyHeader:
        return cls(r.i32(), r.i64(), r.i32())

    def write(self, w: Writer) -> Writer:
        return w.i32(self.xid).i64(self.zxid).i32(self.err)


@attrs.frozen
class WatcherEvent:
    """A fired watch (``type`` one of the ``EVENT_*``) or a session state change (``EVENT_NONE``)."""

    type: int
    state: int
    path: str

    @classmethod
    def read(cls, r: Reader) -> WatcherEvent:
        return cls(r.i32(), r.i32(), r.string() or "")

    def write(self, w: Writer) -> Writer:
        return w.i32(self.type).i32(self.state).string(self.path)


def parse_reply(body: bytes) -> tuple[ReplyHeader, Reader]:
    """Split one packet into its reply header and a reader positioned on the body."""
    r = Reader(body)
    return ReplyHeader.read(r), r


# ---- requests (framed bytes ready to send) -------------------------------------------------------


def frame(payload: bytes) -> bytes:
    return _INT.pack(len(payload)) + payload


def _request(xid: int, op: int) -> Writer:
    return Writer().i32(xid).i32(op)


def ping() -> bytes:
    return frame(_request(XID_PING, OP_PING).getvalue())


def close_session(xid: int) -> bytes:
    return frame(_request(xid, OP_CLOSE_SESSION).getvalue())


def create(xid: int, path: str, data: bytes, *, ephemeral: bool) -> bytes:
    """CreateRequest with ACL world:anyone ALL (what Go Micro's zookeeper registry uses)."""
    w = _request(xid, OP_CREATE).string(path).buffer(data)
    w.i32(1).i32(PERM_ALL).string("world").string("anyone")  # vector<ACL> of one
    return frame(w.i32(EPHEMERAL if ephemeral else PERSISTENT).getvalue())


def delete(xid: int, path: str, version: int = -1) -> bytes:
    return frame(_request(xid, OP_DELETE).string(path).i32(version).getvalue())


def exists(xid: int, path: str, *, watch: bool) -> bytes:
    return frame(_request(xid, OP_EXISTS).string(path).flag(watch).getvalue())


def get_data(xid: int, path: str, *, watch: bool) -> bytes:
    return frame(_request(xid, OP_GET_DATA).string(path).flag(watch).getvalue())


def set_data(xid: int, path: str, data: bytes, version: int = -1) -> bytes:
    return frame(_request(xid, OP_SET_DATA).string(path).buffer(data).i32(version).getvalue())


def get_children2(xid: int, path: str, *, watch: bool) -> bytes:
    return frame(_request(xid, OP_GET_CHILDREN2).string(path).flag(watch).getvalue())


# ---- response bodies ------------------------------------------------------------------------------


def _done(r: Reader, what: str) -> None:
    if r.remaining:
        raise ZkProtocolError(f"zookeeper {what} answer has {r.remaining} trailing bytes")


def decode_create(r: Reader) -> str:
    path = r.string() or ""
    _done(r, "create")
    return path


def decode_stat(r: Reader) -> Stat:
    stat = Stat.read(r)
    _done(r, "stat")
    return stat


def decode_data(r: Reader) -> tuple[bytes, Stat]:
    data = r.buffer() or b""
    stat = Stat.read(r)
    _done(r, "getData")
    return data, stat


def decode_children(r: Reader) -> tuple[list[str], Stat]:
    children = r.strings()
    stat = Stat.read(r)
    _done(r, "getChildren2")
    return children, stat


# ---- framing --------------------------------------------------------------------------------------


class FrameBuffer:
    """Splits a byte stream into packets (length-prefixed); refuses lengths beyond ``max_packet``."""

    def __init__(self, max_packet: int = MAX_PACKET) -> None:
        self._buf = bytearray()
        self._max = max_packet

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next(self) -> bytes | None:
        """The next complete packet, or None until more bytes arrive."""
        if len(self._buf) < 4:
            return None
        (n,) = _INT.unpack_from(self._buf)
        if n < 0 or n > self._max:
            raise ZkProtocolError(f"zookeeper packet length {n} out of range (max {self._max})")
        if len(self._buf) < 4 + n:
            return None
        packet = bytes(self._buf[4 : 4 + n])
        del self._buf[: 4 + n]
        return packet

    @property
    def pending(self) -> int:
        return len(self._buf)
