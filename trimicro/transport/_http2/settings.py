"""SETTINGS (RFC 9113 6.5): one side's values with their defaults, what we announce, and which
values a peer may not send.

Applying a peer's SETTINGS stays in :class:`.connection.H2Protocol` because two of them reach into
connection state (INITIAL_WINDOW_SIZE moves every open stream's send window, HEADER_TABLE_SIZE owes
the peer's decoder a table-size update); what is pure lives here.
"""

from __future__ import annotations

from typing import Final

from .errors import ErrorCode, H2ProtocolError
from .frames import MAX_FRAME, MAX_WINDOW, MIN_FRAME, SETTING

__all__ = ["DEFAULT_WINDOW", "SETTING_NAMES", "Settings", "check", "encode"]

#: the flow-control window every stream and the connection start with (RFC 9113 6.9.2)
DEFAULT_WINDOW: Final = 65535


class Settings:
    """One side's SETTINGS values (RFC 9113 6.5.2 defaults)."""

    __slots__ = (
        "enable_push",
        "header_table_size",
        "initial_window_size",
        "max_concurrent_streams",
        "max_frame_size",
        "max_header_list_size",
    )

    HEADER_TABLE_SIZE: Final = 0x1
    ENABLE_PUSH: Final = 0x2
    MAX_CONCURRENT_STREAMS: Final = 0x3
    INITIAL_WINDOW_SIZE: Final = 0x4
    MAX_FRAME_SIZE: Final = 0x5
    MAX_HEADER_LIST_SIZE: Final = 0x6

    def __init__(self) -> None:
        self.header_table_size = 4096
        self.enable_push = 1
        self.max_concurrent_streams = 2**31 - 1
        self.initial_window_size = DEFAULT_WINDOW
        self.max_frame_size = MIN_FRAME
        self.max_header_list_size: int | None = None


SETTING_NAMES: Final = {
    Settings.HEADER_TABLE_SIZE: "header_table_size",
    Settings.ENABLE_PUSH: "enable_push",
    Settings.MAX_CONCURRENT_STREAMS: "max_concurrent_streams",
    Settings.INITIAL_WINDOW_SIZE: "initial_window_size",
    Settings.MAX_FRAME_SIZE: "max_frame_size",
    Settings.MAX_HEADER_LIST_SIZE: "max_header_list_size",
}


def encode(settings: Settings) -> bytes:
    """A SETTINGS payload naming only what differs from the defaults (a peer assumes those)."""
    default = Settings()
    values = [
        (key, getattr(settings, name))
        for key, name in SETTING_NAMES.items()
        if getattr(settings, name) != getattr(default, name) and getattr(settings, name) is not None
    ]
    return b"".join(SETTING.pack(k, v) for k, v in values)


def check(key: int, value: int, *, client_side: bool) -> None:
    """Raise :class:`H2ProtocolError` if a peer may not send ``key = value`` (RFC 9113 6.5.2);
    unknown keys are fine (they are ignored)."""
    if key == Settings.ENABLE_PUSH:
        if value > 1 or (value == 1 and client_side):
            raise H2ProtocolError("bad ENABLE_PUSH")
    elif key == Settings.INITIAL_WINDOW_SIZE:
        if value > MAX_WINDOW:
            raise H2ProtocolError("bad INITIAL_WINDOW_SIZE", ErrorCode.FLOW_CONTROL_ERROR)
    elif key == Settings.MAX_FRAME_SIZE:
        if not MIN_FRAME <= value <= MAX_FRAME:
            raise H2ProtocolError("bad MAX_FRAME_SIZE")
