"""Shared test values: a fully populated kitchen-sink message and hypothesis strategies for messages."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.protos import greeter_pb2, kitchen_pb2

Everything = kitchen_pb2.Everything
Inner = kitchen_pb2.Everything.Inner


def full_everything() -> kitchen_pb2.Everything:
    return Everything(
        an_int32=-1,
        an_int64=-(2**63),
        a_uint32=2**32 - 1,
        a_uint64=2**64 - 1,
        a_sint32=-5,
        a_sint64=2**40,
        a_fixed32=7,
        a_fixed64=2**60,
        a_sfixed32=-9,
        a_sfixed64=-(2**50),
        a_float=0.1,
        a_double=1e300,
        a_bool=True,
        a_string='héllo \u2028 <tag> & "quote"',
        some_bytes=b"\x00\xff\xfe binary",
        colour=Everything.GREEN,
        inner=Inner(label="in", count=3),
        tags=["a", "", "c"],
        numbers=[0, -1, 2**31 - 1],
        inners=[Inner(), Inner(label="x")],
        counts={"a": 1, "": 0},
        named={"k": Inner(count=-1), "empty": Inner()},
        choice_inner=Inner(),
        maybe="",
        maybe_number=0,
    )


i32 = st.integers(-(2**31), 2**31 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
f32 = st.floats(width=32, allow_nan=False)
f64 = st.floats(allow_nan=False)

inners = st.builds(Inner, label=text, count=i64)


@st.composite
def everythings(draw: st.DrawFn) -> kitchen_pb2.Everything:
    kwargs: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "an_int32": i32,
                "an_int64": i64,
                "a_uint32": u32,
                "a_uint64": u64,
                "a_sint32": i32,
                "a_sint64": i64,
                "a_fixed32": u32,
                "a_fixed64": u64,
                "a_sfixed32": i32,
                "a_sfixed64": i64,
                "a_float": f32,
                "a_double": f64,
                "a_bool": st.booleans(),
                "a_string": text,
                "some_bytes": st.binary(max_size=20),
                "colour": st.sampled_from([0, 1, 2, 7]),  # 7: an unknown value of an open enum
                "inner": inners,
                "tags": st.lists(text, max_size=3),
                "numbers": st.lists(i32, max_size=3),
                "inners": st.lists(inners, max_size=3),
                "counts": st.dictionaries(text, i32, max_size=3),
                "named": st.dictionaries(text, inners, max_size=3),
                "maybe": text,
                "maybe_number": i32,
            },
        )
    )
    choice = draw(
        st.one_of(
            st.none(),
            st.tuples(st.just("choice_text"), text),
            st.tuples(st.just("choice_number"), i32),
            st.tuples(st.just("choice_inner"), inners),
        )
    )
    if choice is not None:
        kwargs[choice[0]] = choice[1]
    return Everything(**kwargs)


hello_requests = st.builds(greeter_pb2.HelloRequest, name=text)
