"""SETTINGS (``trimicro.transport._http2.settings``) directly: what we announce names only what differs
from RFC 9113's defaults, and which values a peer may not send (the connection-level effects are in
test_connection and test_interop)."""

from __future__ import annotations

import struct

import pytest

from trimicro.transport._http2 import ErrorCode, H2ProtocolError, Settings
from trimicro.transport._http2.frames import MAX_FRAME, MAX_WINDOW, MIN_FRAME
from trimicro.transport._http2.settings import DEFAULT_WINDOW, check, encode


def test_defaults_are_the_rfcs() -> None:
    s = Settings()
    assert (s.header_table_size, s.enable_push, s.initial_window_size, s.max_frame_size) == (
        4096,
        1,
        65535,
        16384,
    )
    assert s.max_concurrent_streams == 2**31 - 1 and s.max_header_list_size is None
    assert DEFAULT_WINDOW == 65535 and encode(s) == b""


def test_encode_names_only_what_differs() -> None:
    s = Settings()
    s.enable_push = 0
    s.initial_window_size = 1 << 20
    s.max_header_list_size = 65536
    pairs = [struct.unpack_from(">HL", encode(s), i) for i in range(0, len(encode(s)), 6)]
    assert pairs == [
        (Settings.ENABLE_PUSH, 0),
        (Settings.INITIAL_WINDOW_SIZE, 1 << 20),
        (Settings.MAX_HEADER_LIST_SIZE, 65536),
    ]


@pytest.mark.parametrize(
    ("key", "value", "client_side", "code"),
    [
        (Settings.ENABLE_PUSH, 2, False, ErrorCode.PROTOCOL_ERROR),
        (Settings.ENABLE_PUSH, 1, True, ErrorCode.PROTOCOL_ERROR),  # a server may not offer push
        (Settings.INITIAL_WINDOW_SIZE, MAX_WINDOW + 1, False, ErrorCode.FLOW_CONTROL_ERROR),
        (Settings.MAX_FRAME_SIZE, MIN_FRAME - 1, False, ErrorCode.PROTOCOL_ERROR),
        (Settings.MAX_FRAME_SIZE, MAX_FRAME + 1, True, ErrorCode.PROTOCOL_ERROR),
    ],
)
def test_values_a_peer_may_not_send(key: int, value: int, client_side: bool, code: ErrorCode) -> None:
    with pytest.raises(H2ProtocolError) as info:
        check(key, value, client_side=client_side)
    assert info.value.error_code == code


@pytest.mark.parametrize(
    ("key", "value", "client_side"),
    [
        (Settings.ENABLE_PUSH, 1, False),
        (Settings.ENABLE_PUSH, 0, True),
        (Settings.INITIAL_WINDOW_SIZE, MAX_WINDOW, True),
        (Settings.MAX_FRAME_SIZE, MIN_FRAME, False),
        (Settings.MAX_FRAME_SIZE, MAX_FRAME, False),
        (Settings.HEADER_TABLE_SIZE, 0, True),
        (Settings.MAX_CONCURRENT_STREAMS, 0, False),
        (0x42, 2**32 - 1, False),  # unknown: ignored
    ],
)
def test_values_a_peer_may_send(key: int, value: int, client_side: bool) -> None:
    check(key, value, client_side=client_side)
