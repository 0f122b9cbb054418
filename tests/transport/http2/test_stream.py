"""The stream state table (``trimicro.transport._http2.stream``) directly: every ``(state, input)``
pair either has a transition or is refused with the right error, and the table agrees, pair by pair,
with the flag model it replaced (``local_open``/``remote_open``/header blocks received), which is
how RFC 9113 5.1 reads for a stream that cannot be reserved."""

from __future__ import annotations

import itertools
from typing import Any

import hpack
import pytest

from trimicro.transport import _http2 as h2p
from trimicro.transport._http2.errors import ErrorCode, StreamClosedError, StreamError
from trimicro.transport._http2.stream import (
    LOCAL_OPEN,
    REMOTE_OPEN,
    TRANSITIONS,
    Action,
    Input,
    State,
    Stream,
    refused,
    step,
)

from ._support import (
    END_HEADERS,
    END_STREAM,
    HEADERS,
    REQUEST,
    RESPONSE,
    TRAILERS,
    Raw,
    frame,
    our_client,
    triples,
)

SENT = {Input.SEND_HEADERS, Input.SEND_DATA, Input.SEND_END_STREAM}
PAIRS = list(itertools.product(State, Input))


@pytest.mark.parametrize(("state", "inp"), PAIRS, ids=[f"{s.name}-{i.name}" for s, i in PAIRS])
def test_every_pair_has_a_transition_or_the_right_error(state: State, inp: Input) -> None:
    found = TRANSITIONS.get((state, inp))
    if found is not None:
        assert step(7, state, inp) == found
        return
    with pytest.raises((StreamClosedError, StreamError)) as info:
        step(7, state, inp)
    if inp in SENT:
        assert type(info.value) is StreamClosedError  # a caller bug: nothing goes on the wire
    else:
        assert type(info.value) is StreamError  # the peer's: RST_STREAM(STREAM_CLOSED)
        assert info.value.code == ErrorCode.STREAM_CLOSED
    assert info.value.stream_id == 7
    assert type(refused(7, inp)) is type(info.value)


def test_the_table_names_only_states_inputs_and_actions() -> None:
    for (state, inp), (action, nxt) in TRANSITIONS.items():
        assert type(state) is State and type(inp) is Input
        assert type(action) is Action and type(nxt) is State


def test_closed_is_final_and_idle_only_opens() -> None:
    assert not [pair for pair in TRANSITIONS if pair[0] is State.CLOSED]
    assert {inp for state, inp in TRANSITIONS if state is State.IDLE} == {
        Input.SEND_HEADERS,
        Input.RECV_HEADERS,
    }
    assert TRANSITIONS[State.IDLE, Input.RECV_HEADERS] == (Action.REQUEST, State.OPEN)
    assert TRANSITIONS[State.IDLE, Input.SEND_HEADERS] == (Action.NONE, State.AWAITING_RESPONSE)


def test_every_open_state_can_be_reset_and_reaches_closed() -> None:
    live = set(State) - {State.IDLE, State.CLOSED}
    assert {state for state, inp in TRANSITIONS if inp is Input.RESET} == live
    for state in live:
        assert TRANSITIONS[state, Input.RESET] == (Action.NONE, State.CLOSED)
    # and every state is reachable from IDLE
    seen, todo = {State.IDLE}, [State.IDLE]
    while todo:
        here = todo.pop()
        for (state, _), (_, nxt) in TRANSITIONS.items():
            if state is here and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(State)


def test_open_sides() -> None:
    assert LOCAL_OPEN == {State.AWAITING_RESPONSE, State.OPEN, State.HALF_CLOSED_REMOTE}
    assert REMOTE_OPEN == {
        State.AWAITING_RESPONSE,
        State.HALF_CLOSED_LOCAL_AWAITING_RESPONSE,
        State.OPEN,
        State.HALF_CLOSED_LOCAL,
    }


# -- the flag model the table replaced, as an oracle --

Flags = tuple[bool, bool, bool, int]  # opened, local_open, remote_open, header blocks received


def model(flags: Flags, inp: Input) -> tuple[Any, Flags]:
    """What the flag-based code did with ``inp``: (action or the error type, flags after)."""
    opened, local, remote, headers_in = flags
    if inp is Input.SEND_HEADERS:
        if not opened:
            return Action.NONE, (True, True, True, 0)
        return (Action.NONE, flags) if local else (StreamClosedError, flags)
    if inp is Input.SEND_DATA:
        return (Action.NONE, flags) if opened and local else (StreamClosedError, flags)
    if inp is Input.SEND_END_STREAM:
        return (
            (Action.NONE, (True, False, remote, headers_in))
            if opened and local
            else (StreamClosedError, flags)
        )
    if inp is Input.RECV_HEADERS:
        if not opened:
            return Action.REQUEST, (True, True, True, 1)
        if not remote:
            return StreamError, flags
        if headers_in == 0:
            return Action.RESPONSE, (True, local, True, 1)
        return Action.TRAILERS, (True, local, True, 2)
    if inp is Input.RECV_DATA:
        if not opened or not remote:
            return StreamError, flags
        return (Action.MALFORMED if headers_in == 0 else Action.NONE), flags
    if inp is Input.RECV_END_STREAM:
        # never seen before the first header block: DATA there was reset first
        if not opened or not remote or headers_in == 0:
            return StreamError, flags
        return Action.NONE, (True, local, False, headers_in)
    # RESET
    if not opened or not (local or remote):
        return StreamError, flags
    return Action.NONE, (True, False, False, headers_in)


def state_of(flags: Flags) -> State:
    opened, local, remote, headers_in = flags
    if not opened:
        return State.IDLE
    if not local and not remote:
        return State.CLOSED
    if local and not remote:
        return State.HALF_CLOSED_REMOTE
    if headers_in == 0:
        return State.AWAITING_RESPONSE if local else State.HALF_CLOSED_LOCAL_AWAITING_RESPONSE
    return State.OPEN if local else State.HALF_CLOSED_LOCAL


def _reachable_flags() -> list[Flags]:
    start: Flags = (False, True, True, 0)
    seen, todo = {start}, [start]
    while todo:
        here = todo.pop()
        for inp in Input:
            outcome, nxt = model(here, inp)
            if isinstance(outcome, Action) and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return sorted(seen)


FLAG_STATES = _reachable_flags()


@pytest.mark.parametrize("flags", FLAG_STATES, ids=str)
@pytest.mark.parametrize("inp", list(Input), ids=lambda i: i.name)
def test_the_table_agrees_with_the_flag_model(flags: Flags, inp: Input) -> None:
    outcome, after = model(flags, inp)
    state = state_of(flags)
    if isinstance(outcome, Action):
        assert step(1, state, inp) == (outcome, state_of(after))
    else:
        with pytest.raises(outcome):
            step(1, state, inp)


def test_the_flag_model_reaches_every_state() -> None:
    assert {state_of(f) for f in FLAG_STATES} == set(State)


# -- the connection follows the table --


def test_client_stream_states() -> None:
    p = our_client()
    sid = p.get_next_available_stream_id()
    p.send_headers(sid, triples(REQUEST))
    assert p.streams[sid].state is State.AWAITING_RESPONSE
    p.send_data(sid, b"x", end_stream=True)
    st: Stream = p.streams[sid]
    assert st.state is State.HALF_CLOSED_LOCAL_AWAITING_RESPONSE
    server = hpack.Encoder()  # blocks the way a peer sends them (dynamic table, Huffman)
    p.receive_data(_headers(sid, server.encode([(":status", "100")])))
    assert st.state is State.HALF_CLOSED_LOCAL_AWAITING_RESPONSE  # informational: still waiting
    p.receive_data(_headers(sid, server.encode(RESPONSE)))
    assert st.state is State.HALF_CLOSED_LOCAL
    p.receive_data(_headers(sid, server.encode(TRAILERS), end_stream=True))
    assert st.state is State.CLOSED and sid not in p.streams and p.open_outbound_streams == 0


def test_server_stream_states() -> None:
    raw = Raw()
    raw.headers(1, REQUEST)
    st = raw.p.streams[1]
    assert st.state is State.OPEN
    raw.p.send_headers(1, triples(RESPONSE))
    raw.p.send_headers(1, triples(TRAILERS), end_stream=True)
    assert st.state is State.HALF_CLOSED_LOCAL
    raw.p.reset_stream(1)
    assert st.state is State.CLOSED and 1 not in raw.p.streams and raw.p.open_inbound_streams == 0
    with pytest.raises(h2p.StreamClosedError):
        raw.p.send_data(1, b"")


def _headers(sid: int, block: bytes, *, end_stream: bool = False) -> bytes:
    return frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid, block)
