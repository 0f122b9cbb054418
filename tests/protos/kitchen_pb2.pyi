from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Everything(_message.Message):
    __slots__ = ("an_int32", "an_int64", "a_uint32", "a_uint64", "a_sint32", "a_sint64", "a_fixed32", "a_fixed64", "a_sfixed32", "a_sfixed64", "a_float", "a_double", "a_bool", "a_string", "some_bytes", "colour", "inner", "tags", "numbers", "inners", "counts", "named", "choice_text", "choice_number", "choice_inner", "maybe", "maybe_number")
    class Colour(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        COLOUR_UNSPECIFIED: _ClassVar[Everything.Colour]
        RED: _ClassVar[Everything.Colour]
        GREEN: _ClassVar[Everything.Colour]
    COLOUR_UNSPECIFIED: Everything.Colour
    RED: Everything.Colour
    GREEN: Everything.Colour
    class Inner(_message.Message):
        __slots__ = ("label", "count")
        LABEL_FIELD_NUMBER: _ClassVar[int]
        COUNT_FIELD_NUMBER: _ClassVar[int]
        label: str
        count: int
        def __init__(self, label: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class NamedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Everything.Inner
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Everything.Inner, _Mapping]] = ...) -> None: ...
    AN_INT32_FIELD_NUMBER: _ClassVar[int]
    AN_INT64_FIELD_NUMBER: _ClassVar[int]
    A_UINT32_FIELD_NUMBER: _ClassVar[int]
    A_UINT64_FIELD_NUMBER: _ClassVar[int]
    A_SINT32_FIELD_NUMBER: _ClassVar[int]
    A_SINT64_FIELD_NUMBER: _ClassVar[int]
    A_FIXED32_FIELD_NUMBER: _ClassVar[int]
    A_FIXED64_FIELD_NUMBER: _ClassVar[int]
    A_SFIXED32_FIELD_NUMBER: _ClassVar[int]
    A_SFIXED64_FIELD_NUMBER: _ClassVar[int]
    A_FLOAT_FIELD_NUMBER: _ClassVar[int]
    A_DOUBLE_FIELD_NUMBER: _ClassVar[int]
    A_BOOL_FIELD_NUMBER: _ClassVar[int]
    A_STRING_FIELD_NUMBER: _ClassVar[int]
    SOME_BYTES_FIELD_NUMBER: _ClassVar[int]
    COLOUR_FIELD_NUMBER: _ClassVar[int]
    INNER_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    NUMBERS_FIELD_NUMBER: _ClassVar[int]
    INNERS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    NAMED_FIELD_NUMBER: _ClassVar[int]
    CHOICE_TEXT_FIELD_NUMBER: _ClassVar[int]
    CHOICE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CHOICE_INNER_FIELD_NUMBER: _ClassVar[int]
    MAYBE_FIELD_NUMBER: _ClassVar[int]
    MAYBE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    an_int32: int
    an_int64: int
    a_uint32: int
    a_uint64: int
    a_sint32: int
    a_sint64: int
    a_fixed32: int
    a_fixed64: int
    a_sfixed32: int
    a_sfixed64: int
    a_float: float
    a_double: float
    a_bool: bool
    a_string: str
    some_bytes: bytes
    colour: Everything.Colour
    inner: Everything.Inner
    tags: _containers.RepeatedScalarFieldContainer[str]
    numbers: _containers.RepeatedScalarFieldContainer[int]
    inners: _containers.RepeatedCompositeFieldContainer[Everything.Inner]
    counts: _containers.ScalarMap[str, int]
    named: _containers.MessageMap[str, Everything.Inner]
    choice_text: str
    choice_number: int
    choice_inner: Everything.Inner
    maybe: str
    maybe_number: int
    def __init__(self, an_int32: _Optional[int] = ..., an_int64: _Optional[int] = ..., a_uint32: _Optional[int] = ..., a_uint64: _Optional[int] = ..., a_sint32: _Optional[int] = ..., a_sint64: _Optional[int] = ..., a_fixed32: _Optional[int] = ..., a_fixed64: _Optional[int] = ..., a_sfixed32: _Optional[int] = ..., a_sfixed64: _Optional[int] = ..., a_float: _Optional[float] = ..., a_double: _Optional[float] = ..., a_bool: _Optional[bool] = ..., a_string: _Optional[str] = ..., some_bytes: _Optional[bytes] = ..., colour: _Optional[_Union[Everything.Colour, str]] = ..., inner: _Optional[_Union[Everything.Inner, _Mapping]] = ..., tags: _Optional[_Iterable[str]] = ..., numbers: _Optional[_Iterable[int]] = ..., inners: _Optional[_Iterable[_Union[Everything.Inner, _Mapping]]] = ..., counts: _Optional[_Mapping[str, int]] = ..., named: _Optional[_Mapping[str, Everything.Inner]] = ..., choice_text: _Optional[str] = ..., choice_number: _Optional[int] = ..., choice_inner: _Optional[_Union[Everything.Inner, _Mapping]] = ..., maybe: _Optional[str] = ..., maybe_number: _Optional[int] = ...) -> None: ...

class Tree(_message.Message):
    __slots__ = ("name", "children")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    name: str
    children: _containers.RepeatedCompositeFieldContainer[Tree]
    def __init__(self, name: _Optional[str] = ..., children: _Optional[_Iterable[_Union[Tree, _Mapping]]] = ...) -> None: ...
