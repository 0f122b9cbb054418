"""Durable, at-least-once event streams (Go Micro v5's ``events``): ``memory`` and ``natsjs``."""

from ._base import Consumer as Consumer
from ._base import Event as Event
from ._base import EventsError as EventsError
from ._base import Stream as Stream
from ._base import decode_event as decode_event
from ._base import encode_event as encode_event
from .memory import MemoryStream as MemoryStream

__all__ = ["Consumer", "Event", "EventsError", "MemoryStream", "Stream", "decode_event", "encode_event"]
