"""Call metadata vocabulary: header names, which of them are reserved, and the two deadline codecs.

Why one module: mucp (HTTP/1.1) and gRPC (HTTP/2) carry the same facts under different names, and the
client, the servers, the transports, the broker path and the API gateway must agree on every name. A
misspelt literal in one of them is a silent bug (the header is simply never seen), so each name is
spelt once here and imported everywhere else.

- Header names are module-level ``str`` constants in canonical MIME form (Go's
  ``http.CanonicalHeaderKey``), the form :class:`~trimicro.transport.Message` headers use; being plain
  constants they cost nothing on the call path. :func:`canonical` brings any input to that form.
- Header sets say what is routing or transport machinery and so never application metadata
  (:data:`ROUTING_HEADERS` for mucp, :data:`GRPC_RESERVED` for HTTP/2, ...).
- A call's deadline travels as mucp's ``Timeout`` (integer nanoseconds, Go Micro) or gRPC's
  ``grpc-timeout`` (at most 8 digits and a unit). :func:`encode_timeout`/:func:`decode_timeout` and
  :func:`encode_grpc_timeout`/:func:`decode_grpc_timeout` translate seconds, with no clock, so a
  header can be turned into the other protocol's header exactly; :class:`Deadline` ties them to
  ``trio.current_time()`` for code that holds an absolute deadline (the model is grpclib's
  ``metadata.Deadline``).

Private: the public surface is ``trimicro.transport.canonical`` and the ``trimicro.metadata(...)``
context manager (trimicro/context.py), whose name is why this module is ``_metadata``.
"""

from __future__ import annotations

import math
from typing import Final

import attrs
import trio

from .config import parse_duration

__all__ = [
    "ACCEPT",
    "CARRIED_BY_GRPC",
    "CONNECTION_SPECIFIC",
    "CONTENT_TYPE",
    "GRPC_RESERVED",
    "GRPC_RETRY_PUSHBACK_MS",
    "GRPC_TIMEOUT",
    "MESSAGE_ID",
    "MICRO_ENDPOINT",
    "MICRO_ERROR",
    "MICRO_ERROR_DETAILS",
    "MICRO_FROM_SERVICE",
    "MICRO_GRPC_PATH",
    "MICRO_ID",
    "MICRO_METHOD",
    "MICRO_PREFIX",
    "MICRO_RETRY_AFTER",
    "MICRO_SERVICE",
    "MICRO_STREAM",
    "MICRO_TOPIC",
    "ROUTING_HEADERS",
    "TIMEOUT",
    "X_MICRO_PREFIX",
    "Deadline",
    "InvalidTimeout",
    "canonical",
    "decode_grpc_timeout",
    "decode_timeout",
    "encode_grpc_timeout",
    "encode_timeout",
    "parse_grpc_timeout",
]

# -- header names (canonical form) --
MICRO_ID: Final = "Micro-Id"
"""A request's id; a stream's frames carry it too."""
MICRO_SERVICE: Final = "Micro-Service"
MICRO_ENDPOINT: Final = "Micro-Endpoint"
MICRO_METHOD: Final = "Micro-Method"
"""Go Micro's older name for ``Micro-Endpoint``; both are sent and either is accepted."""
MICRO_STREAM: Final = "Micro-Stream"
"""Present on every frame of a stream (its value is the stream's id)."""
MICRO_ERROR: Final = "Micro-Error"
"""A reply's error as Go Micro's JSON, or ``EOS`` for the clean end of a stream."""
MICRO_ERROR_DETAILS: Final = "Micro-Error-Details"
"""trimicro's own, beside ``Micro-Error``: the error's rich details (``MicroError.details``) as a
base64 ``google.rpc.Status`` holding only its ``details``, the form ``grpc-status-details-bin`` uses."""
MICRO_TOPIC: Final = "Micro-Topic"
MICRO_FROM_SERVICE: Final = "Micro-From-Service"
MICRO_GRPC_PATH: Final = "Micro-Grpc-Path"
"""trimicro's own: an explicit gRPC ``:path`` overriding the one derived from service and endpoint."""
MESSAGE_ID: Final = "Micro-ID"
"""A broker message's id. Go Micro writes it literally so (capital ``ID``) in the JSON envelope,
which is not canonicalised, so it is *not* ``MICRO_ID``."""
TIMEOUT: Final = "Timeout"
"""mucp's deadline: the remaining time in integer nanoseconds (:func:`encode_timeout`)."""
CONTENT_TYPE: Final = "Content-Type"
ACCEPT: Final = "Accept"
GRPC_TIMEOUT: Final = "grpc-timeout"
"""gRPC's deadline header (HTTP/2 names are lower case): :func:`encode_grpc_timeout`."""
MICRO_RETRY_AFTER: Final = "Micro-Retry-After"
"""trimicro's own, on a 503 reply: how long the client should wait before retrying (a duration)."""
GRPC_RETRY_PUSHBACK_MS: Final = "grpc-retry-pushback-ms"
"""gRPC's server pushback (gRFC A6): milliseconds before a retry; negative: do not retry."""

MICRO_PREFIX: Final = "Micro-"
X_MICRO_PREFIX: Final = "X-Micro-"
"""``X-Micro-Foo`` fills ``Micro-Foo`` when that is absent (Go Micro's HTTP transport)."""

# -- header sets --
#: Headers that route or frame a mucp message: never forwarded as metadata to nested calls.
ROUTING_HEADERS: Final = frozenset(
    {
        MICRO_ID,
        MICRO_SERVICE,
        MICRO_ENDPOINT,
        MICRO_METHOD,
        MICRO_STREAM,
        MICRO_ERROR,
        MICRO_ERROR_DETAILS,
        MICRO_TOPIC,
        MICRO_FROM_SERVICE,
        CONTENT_TYPE,
        "Content-Length",
        ACCEPT,
        TIMEOUT,
        "Host",
        "User-Agent",
        "Connection",
        "Transfer-Encoding",
    }
)

#: mucp headers that the gRPC path, content type and deadline already carry: not sent as metadata.
CARRIED_BY_GRPC: Final = frozenset(
    {
        MICRO_SERVICE,
        MICRO_ENDPOINT,
        MICRO_METHOD,
        MICRO_STREAM,
        MICRO_ERROR,
        MICRO_ERROR_DETAILS,
        MICRO_GRPC_PATH,
        CONTENT_TYPE,
        ACCEPT,
        TIMEOUT,
        "Content-Length",
        "Host",
        "Connection",
        "Transfer-Encoding",
        "User-Agent",
    }
)

#: Request/response headers that are HTTP/2 or gRPC machinery, never application metadata.
GRPC_RESERVED: Final = frozenset(
    {
        "content-type",
        "te",
        "user-agent",
        "host",
        "connection",
        "content-length",
        "accept-encoding",
        GRPC_TIMEOUT,
        "grpc-encoding",
        "grpc-accept-encoding",
        "grpc-message-type",
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
    }
)

#: HTTP/1.1 connection-level headers, which HTTP/2 forbids (RFC 9113 8.2.2): never sent as metadata.
CONNECTION_SPECIFIC: Final = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)

# -- canonical names --
_CANON_CACHE: dict[str, str] = {}


def canonical(name: str) -> str:
    """``micro-endpoint`` -> ``Micro-Endpoint`` (Go's ``http.CanonicalHeaderKey``)."""
    try:
        return _CANON_CACHE[name]
    except KeyError:
        pass
    out = "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))
    if len(_CANON_CACHE) < 4096:
        _CANON_CACHE[name] = out
    return out


# -- mucp Timeout: integer nanoseconds --
def encode_timeout(seconds: float) -> str:
    """Seconds -> the ``Timeout`` header: integer nanoseconds, truncated, at least 1 (Go Micro).

    OverflowError for ``inf`` and ValueError for NaN: a call without a deadline sends no header.
    At most Go's int64 nanoseconds (292 years): a longer ``grpc-timeout`` (up to 11,000 years) relayed
    as ``Timeout`` must stay a deadline a Go peer (and :func:`decode_timeout`) accepts."""
    return str(min(max(int(seconds * 1e9), 1), _MAX_TIMEOUT_NS))


class InvalidTimeout(ValueError):
    """A malformed deadline header (``Timeout`` or ``grpc-timeout``): the caller's mistake, which a
    server answers with a clear error (400 on mucp) instead of a traceback or a silent no-deadline."""


#: Go's time.Duration is an int64 of nanoseconds: nothing longer is a deadline a Go peer can send.
_MAX_TIMEOUT_NS: Final = 2**63 - 1


def decode_timeout(value: str | None) -> float | None:
    """``Timeout`` -> seconds: integer nanoseconds, also a Go duration (``5s``) for robustness.

    ``None`` (no deadline) for a missing, empty or zero value; :class:`InvalidTimeout` for anything
    else that is not a positive finite duration of at most Go's int64 nanoseconds (``nan``, ``inf``,
    ``-1``, 400 digits, garbage): these used to reach ``trio.move_on_after`` and kill the connection.
    """
    if not value:
        return None
    text = value.strip()
    if len(text) > 40:
        raise InvalidTimeout(f"invalid Timeout header {text[:20]!r}...: too long")
    if text.isascii() and text.isdigit():
        ns = int(text)
        if ns > _MAX_TIMEOUT_NS:
            raise InvalidTimeout(f"invalid Timeout header {text!r}: exceeds int64 nanoseconds")
        return ns / 1e9 if ns > 0 else None
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise InvalidTimeout(f"invalid Timeout header {text!r}: want nanoseconds") from None
    if not math.isfinite(seconds) or seconds < 0 or seconds * 1e9 > _MAX_TIMEOUT_NS:
        raise InvalidTimeout(f"invalid Timeout header {text!r}: want a positive finite duration")
    return seconds if seconds > 0 else None


# -- grpc-timeout: TimeoutValue (at most 8 digits) + unit --
_UNITS: Final = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
#: units from the coarsest, in nanoseconds
_EXACT_ORDER: Final = (
    ("H", 3600 * 10**9),
    ("M", 60 * 10**9),
    ("S", 10**9),
    ("m", 10**6),
    ("u", 10**3),
    ("n", 1),
)
_SIGNIFICANT: Final = 4
_MAX_VALUE: Final = 99_999_999


def encode_grpc_timeout(seconds: float) -> str:
    """Seconds -> ``grpc-timeout``, rounded *up* to four significant digits and written in the
    coarsest unit that holds it exactly: a remaining 4.99987 s becomes ``5S``. Like grpc-core's
    rounding, this keeps the header the same from call to call, so header blocks repeat and HPACK
    caches them; the server's deadline is at most 0.1% later than the client's, never earlier.

    Zero or less is ``1n`` (already expired), ``inf`` the largest value; ValueError for NaN."""
    if math.isnan(seconds):
        raise ValueError("grpc-timeout of NaN seconds")
    if seconds <= 0:
        return "1n"
    if seconds >= _MAX_VALUE * 3600:
        return f"{_MAX_VALUE}H"
    nanos = max(1, math.ceil(seconds * 1e9 - 1e-3))
    digits = len(str(nanos))
    if digits > _SIGNIFICANT:
        step = 10 ** (digits - _SIGNIFICANT)
        nanos = -(-nanos // step) * step
    for unit, size in _EXACT_ORDER:
        if nanos % size == 0 and nanos // size <= _MAX_VALUE:
            return f"{nanos // size}{unit}"
    for unit, size in _EXACT_ORDER[::-1]:  # too fine to be exact in 8 digits: round up further
        value = -(-nanos // size)
        if value <= _MAX_VALUE:
            return f"{max(value, 1)}{unit}"
    return f"{_MAX_VALUE}H"


def parse_grpc_timeout(value: str | None) -> float | None:
    """``grpc-timeout`` -> seconds, strictly: ``None`` when the header is absent, :class:`InvalidTimeout`
    for anything but 1-8 ASCII digits and a unit (``H M S m u n``). A server answers that with
    INTERNAL, as grpc-go does ("malformed grpc-timeout"), instead of running the call without the
    deadline the client meant to set."""
    if value is None:
        return None
    digits, unit = value[:-1], value[-1:]
    size = _UNITS.get(unit)
    if size is None or not 1 <= len(digits) <= 8 or not digits.isascii() or not digits.isdigit():
        shown = value if len(value) <= 20 else value[:20] + "..."
        raise InvalidTimeout(f"malformed grpc-timeout {shown!r}: want 1-8 digits and a unit of HMSmun")
    return int(digits) * size


def decode_grpc_timeout(value: str | None) -> float | None:
    """``grpc-timeout`` -> seconds; ``None`` for a missing or malformed value (no deadline). Lenient,
    for peers' headers a client only reports; servers use :func:`parse_grpc_timeout`."""
    try:
        return parse_grpc_timeout(value or None)
    except InvalidTimeout:
        return None


# -- the deadline type --
@attrs.frozen
class Deadline:
    """An absolute deadline on Trio's clock (``trio.current_time()`` units), read from and written to
    either protocol's header.

    Translating one header into the other goes through the clock-free functions above instead, so
    that nothing is lost to a clock read or to float rounding of ``now + t - now``."""

    at: float

    @classmethod
    def from_timeout(cls, seconds: float) -> Deadline:
        """The deadline ``seconds`` from now."""
        return cls(trio.current_time() + seconds)

    @classmethod
    def from_header(cls, value: str | None) -> Deadline | None:
        """From mucp's ``Timeout``; ``None`` when it sets no deadline, InvalidTimeout when malformed
        (:func:`decode_timeout`)."""
        timeout = decode_timeout(value)
        return None if timeout is None else cls.from_timeout(timeout)

    @classmethod
    def from_grpc_timeout(cls, value: str | None) -> Deadline | None:
        """From ``grpc-timeout``; ``None`` when missing or malformed (:func:`decode_grpc_timeout`)."""
        timeout = decode_grpc_timeout(value)
        return None if timeout is None else cls.from_timeout(timeout)

    def time_remaining(self) -> float:
        """Seconds left, never negative (``inf`` for no deadline)."""
        return max(self.at - trio.current_time(), 0.0)

    def to_header(self) -> str:
        """The ``Timeout`` header for the time left (``1`` once passed). OverflowError for ``inf``."""
        return encode_timeout(self.at - trio.current_time())

    def to_grpc_timeout(self) -> str:
        """The ``grpc-timeout`` header for the time left (``1n`` once passed)."""
        return encode_grpc_timeout(self.at - trio.current_time())
