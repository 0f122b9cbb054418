"""The message both sides share. An attrs class travels as JSON; a protobuf message works the same
(and is what a Go Micro peer would use: ``greeter.Event{id, seq, message}`` has the same JSON shape)."""

import attrs


@attrs.frozen
class Event:
    id: str
    seq: int = 0
    message: str = ""
