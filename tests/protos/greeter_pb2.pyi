from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class HelloRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class HelloResponse(_message.Message):
    __slots__ = ("greeting",)
    GREETING_FIELD_NUMBER: _ClassVar[int]
    greeting: str
    def __init__(self, greeting: _Optional[str] = ...) -> None: ...

class SlowRequest(_message.Message):
    __slots__ = ("sleep_ms",)
    SLEEP_MS_FIELD_NUMBER: _ClassVar[int]
    sleep_ms: int
    def __init__(self, sleep_ms: _Optional[int] = ...) -> None: ...

class SlowResponse(_message.Message):
    __slots__ = ("cancelled", "slept_ms")
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    SLEPT_MS_FIELD_NUMBER: _ClassVar[int]
    cancelled: bool
    slept_ms: int
    def __init__(self, cancelled: _Optional[bool] = ..., slept_ms: _Optional[int] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("count", "message")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    count: int
    message: str
    def __init__(self, count: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class Num(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: int
    def __init__(self, value: _Optional[int] = ...) -> None: ...

class Total(_message.Message):
    __slots__ = ("sum", "count")
    SUM_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    sum: int
    count: int
    def __init__(self, sum: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class EchoMessage(_message.Message):
    __slots__ = ("text", "seq")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    text: str
    seq: int
    def __init__(self, text: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("id", "seq", "message")
    ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    seq: int
    message: str
    def __init__(self, id: _Optional[str] = ..., seq: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...
