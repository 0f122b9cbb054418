"""One HTTP/2 stream's state (RFC 9113 5.1) as a single table: ``(state, input) -> (action, next)``.

Why a table: every rule about what may be sent or received on a stream is in one place, readable
against the RFC's diagram and testable pair by pair, instead of spread over flags tested in each
frame handler (the shape h11's ``_state.py`` and h2's ``stream.py`` use). It is also cheap: one
dict lookup per transition on the benchmarked gRPC path.

The states are RFC 9113's, with "open" and "half-closed (local)" each split by whether the peer's
first header block (the response) has arrived, because that decides what a received HEADERS is (the
response or the trailers) and whether DATA may come yet. A stream opened by a peer's request starts
past that point. "Reserved" states do not exist: server push is disabled.

An *action* tells the connection what the input means beyond the state change (check the block as
a request, response or trailers; reset a stream that sent DATA before its response). The connection
commits ``next`` only once the action succeeded, so an informational (1xx) response leaves the
stream waiting for the real one. A pair missing from the table is refused: :func:`refused` gives
the error, :class:`StreamClosedError` for something we tried to send, a stream error STREAM_CLOSED
for something the peer sent.
"""

from __future__ import annotations

import enum
from typing import Final

from .errors import ErrorCode, StreamClosedError, StreamError

__all__ = [
    "LOCAL_OPEN",
    "REMOTE_OPEN",
    "TRANSITIONS",
    "Action",
    "Input",
    "State",
    "Stream",
    "refused",
    "step",
]


class State(enum.IntEnum):
    IDLE = 0  # a stream object not yet opened (it is, by the first input)
    AWAITING_RESPONSE = 1  # open; our request began, the peer has sent nothing yet
    HALF_CLOSED_LOCAL_AWAITING_RESPONSE = 2  # we ended our side before the peer sent anything
    OPEN = 3  # both sides may send; the peer's first header block is in
    HALF_CLOSED_LOCAL = 4  # we ended our side; the peer may still send
    HALF_CLOSED_REMOTE = 5  # the peer ended its side; we may still send
    CLOSED = 6  # both sides ended, or reset (RST_STREAM either way, GOAWAY)


class Input(enum.IntEnum):
    SEND_HEADERS = 0
    SEND_DATA = 1
    SEND_END_STREAM = 2  # END_STREAM on a HEADERS or DATA frame we send (after that frame's input)
    RECV_HEADERS = 3  # a complete header block (HEADERS and its CONTINUATION frames)
    RECV_DATA = 4
    RECV_END_STREAM = 5  # END_STREAM on a received frame (after that frame's input)
    RESET = 6  # RST_STREAM sent or received, a stream error, or a GOAWAY that left it unprocessed


class Action(enum.IntEnum):
    NONE = 0  # nothing beyond the state change
    REQUEST = 1  # the header block opens the stream: it must be a valid request
    RESPONSE = 2  # the header block must be a valid response (1xx: the state stays)
    TRAILERS = 3  # the header block must be valid trailers and end the stream
    MALFORMED = 4  # DATA before the response's HEADERS: reset the stream (PROTOCOL_ERROR)


S, In, A = State, Input, Action
_LIVE: Final = (
    S.AWAITING_RESPONSE,
    S.HALF_CLOSED_LOCAL_AWAITING_RESPONSE,
    S.OPEN,
    S.HALF_CLOSED_LOCAL,
    S.HALF_CLOSED_REMOTE,
)

#: every transition there is; anything else is refused
TRANSITIONS: Final[dict[tuple[State, Input], tuple[Action, State]]] = {
    # opening: our request (we are the client), or the peer's (we are the server)
    (S.IDLE, In.SEND_HEADERS): (A.NONE, S.AWAITING_RESPONSE),
    (S.IDLE, In.RECV_HEADERS): (A.REQUEST, S.OPEN),
    # what we send: anything until we end our side
    (S.AWAITING_RESPONSE, In.SEND_HEADERS): (A.NONE, S.AWAITING_RESPONSE),
    (S.AWAITING_RESPONSE, In.SEND_DATA): (A.NONE, S.AWAITING_RESPONSE),
    (S.AWAITING_RESPONSE, In.SEND_END_STREAM): (A.NONE, S.HALF_CLOSED_LOCAL_AWAITING_RESPONSE),
    (S.OPEN, In.SEND_HEADERS): (A.NONE, S.OPEN),
    (S.OPEN, In.SEND_DATA): (A.NONE, S.OPEN),
    (S.OPEN, In.SEND_END_STREAM): (A.NONE, S.HALF_CLOSED_LOCAL),
    (S.HALF_CLOSED_REMOTE, In.SEND_HEADERS): (A.NONE, S.HALF_CLOSED_REMOTE),
    (S.HALF_CLOSED_REMOTE, In.SEND_DATA): (A.NONE, S.HALF_CLOSED_REMOTE),
    (S.HALF_CLOSED_REMOTE, In.SEND_END_STREAM): (A.NONE, S.CLOSED),
    # what the peer sends before its response: the response, but no DATA
    (S.AWAITING_RESPONSE, In.RECV_HEADERS): (A.RESPONSE, S.OPEN),
    (S.AWAITING_RESPONSE, In.RECV_DATA): (A.MALFORMED, S.AWAITING_RESPONSE),
    (S.HALF_CLOSED_LOCAL_AWAITING_RESPONSE, In.RECV_HEADERS): (A.RESPONSE, S.HALF_CLOSED_LOCAL),
    (S.HALF_CLOSED_LOCAL_AWAITING_RESPONSE, In.RECV_DATA): (
        A.MALFORMED,
        S.HALF_CLOSED_LOCAL_AWAITING_RESPONSE,
    ),
    # ... and after it: DATA, then trailers, until it ends its side
    (S.OPEN, In.RECV_HEADERS): (A.TRAILERS, S.OPEN),
    (S.OPEN, In.RECV_DATA): (A.NONE, S.OPEN),
    (S.OPEN, In.RECV_END_STREAM): (A.NONE, S.HALF_CLOSED_REMOTE),
    (S.HALF_CLOSED_LOCAL, In.RECV_HEADERS): (A.TRAILERS, S.HALF_CLOSED_LOCAL),
    (S.HALF_CLOSED_LOCAL, In.RECV_DATA): (A.NONE, S.HALF_CLOSED_LOCAL),
    (S.HALF_CLOSED_LOCAL, In.RECV_END_STREAM): (A.NONE, S.CLOSED),
    # a reset ends any stream that is open in some way
    **{(state, In.RESET): (A.NONE, S.CLOSED) for state in _LIVE},
}

#: states in which we may still send (``local_flow_control_window`` asks)
LOCAL_OPEN: Final = frozenset(state for state, inp in TRANSITIONS if inp is In.SEND_DATA)
#: states in which the peer may still send (whether consumed bytes are owed back to the stream)
REMOTE_OPEN: Final = frozenset(state for state, inp in TRANSITIONS if inp is In.RECV_DATA)
_SENT: Final = frozenset({In.SEND_HEADERS, In.SEND_DATA, In.SEND_END_STREAM})


def refused(stream_id: int, inp: Input) -> Exception:
    """The error for an input the stream's state has no transition for."""
    if inp in _SENT:
        return StreamClosedError(stream_id)
    return StreamError(stream_id, ErrorCode.STREAM_CLOSED)


def step(stream_id: int, state: State, inp: Input) -> tuple[Action, State]:
    """``TRANSITIONS[state, inp]``, or raise :func:`refused`'s error. The connection inlines the
    lookup on its hot paths and calls :func:`refused` on a miss, which is the same thing."""
    found = TRANSITIONS.get((state, inp))
    if found is None:
        raise refused(stream_id, inp)
    return found


class Stream:
    """One stream's state and flow-control windows (the connection owns the stream map)."""

    __slots__ = ("content_left", "id", "recv_window", "send_window", "state", "unacked")

    def __init__(self, stream_id: int, send_window: int, recv_window: int, state: State = State.IDLE) -> None:
        self.id = stream_id
        self.state = state
        self.send_window = send_window
        self.recv_window = recv_window
        self.unacked = 0  # bytes the application consumed that we have not yet handed back
        #: DATA bytes a request's content-length still promises (None: no content-length)
        self.content_left: int | None = None
