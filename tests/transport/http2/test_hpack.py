"""HPACK (``trimicro.transport._http2.hpack``): decoding errors are connection errors of the right
code, and what we encode decodes with the ``hpack`` package.
"""

from __future__ import annotations

import hpack
import hpack.table
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trimicro.transport import _http2 as h2p
from trimicro.transport._http2 import encode_header

from ._support import (
    END_HEADERS,
    END_STREAM,
    HEADERS,
    REQUEST,
    E,
    Raw,
    expect_connection_error,
    frame,
    full,
    our_client,
    our_server,
    prop,
)

HPACK_ERRORS = {
    "index 0": b"\x80",
    "index past the tables": b"\xbf",
    "integer too long": b"\xff\xff\xff\xff\xff\xff\xff\x7f",
    "truncated integer": b"\xff",
    "truncated string": b"\x00\x05ab",
    "length past the block": b"\x00\x7f\xff\xff\xff\x0fab",
    "table size update after a field": b"\x82\x20",
    "table size above the 4096 allowed": b"\x3f\xe2\x1f",
    "three table size updates": b"\x20\x20\x20\x82",
    "huffman padding not ones": b"\x00\x81\x18\x01v",  # 'a' (00011) then 000
    "huffman padding of 8 bits": b"\x00\x82\x1f\xff\x01v",
    "huffman EOS": b"\x00\x84\xff\xff\xff\xff\x01v",
}


@pytest.mark.parametrize("name", list(HPACK_ERRORS))
@pytest.mark.parametrize("client", [False, True])
def test_hpack_errors_are_compression_errors(name: str, client: bool) -> None:
    p = our_client(streams=1) if client else our_server()
    expect_connection_error(p, frame(HEADERS, END_HEADERS, 1, HPACK_ERRORS[name]), E.COMPRESSION_ERROR)


def test_hpack_table_size_updates_at_the_start_are_fine() -> None:
    raw = Raw()
    block = b"\x20\x3f\xe1\x1f" + encode_header(b":method", b"POST")  # 0, then 4096
    block += b"".join(encode_header(n.encode(), v.encode()) for n, v in REQUEST[1:])
    events = raw.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
    assert full(events[0]) == ("RequestReceived", 1, REQUEST, True)


# -- HPACK encoding --

STATIC = hpack.table.HeaderTable.STATIC_TABLE
names = st.one_of(
    st.sampled_from([n for n, _ in STATIC]),
    st.binary(min_size=1, max_size=200),
    st.sampled_from([b"content-type", b"grpc-status", b"te", b"x-" + b"n" * 150]),
)
values = st.one_of(
    st.sampled_from([v for _, v in STATIC]),
    st.binary(max_size=300),
    st.integers(0, 20000).map(lambda n: b"v" * n),
)


@prop
@given(headers=st.lists(st.tuples(names, values, st.booleans()), max_size=8))
def test_encoded_headers_decode_with_hpack(headers: list[tuple[bytes, bytes, bool]]) -> None:
    dec = hpack.Decoder(max_header_list_size=1 << 20)
    block = b"".join(encode_header(n, v, s) for n, v, s in headers)
    assert block == h2p.encode_headers(headers)
    got = dec.decode(block, raw=True)
    assert [(bytes(n), bytes(v)) for n, v in got] == [(n, v) for n, v, _ in headers]
    assert [isinstance(h, hpack.NeverIndexedHeaderTuple) for h in got] == [s for _, _, s in headers]
    assert len(dec.header_table.dynamic_entries) == 0  # nothing indexed: the peer's table stays empty


str_names = st.one_of(
    st.sampled_from(sorted({n.decode() for n, _ in STATIC} | h2p.SENSITIVE | {"micro-id", "traceparent"})),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40),
)
str_values = st.one_of(
    st.sampled_from([v.decode() for _, v in STATIC]),
    st.text(max_size=300),
    st.integers(0, 2000).map(lambda n: "v" * n),
)


@prop
@given(headers=st.lists(st.tuples(str_names, str_values), max_size=8))
def test_str_headers_encode_as_their_bytes_do(headers: list[tuple[str, str]]) -> None:
    """The str-keyed cache gives the block the bytes encoder gives (asked twice: miss, then hit)."""
    as_bytes = [
        (n.encode("ascii"), v.encode("utf-8", "surrogateescape"), n in h2p.SENSITIVE) for n, v in headers
    ]
    expected = h2p.encode_headers(as_bytes)
    assert h2p.encode_str_headers(headers) == expected
    assert h2p.encode_str_headers(headers) == expected
    got = hpack.Decoder(max_header_list_size=1 << 20).decode(expected, raw=True)
    assert [isinstance(h, hpack.NeverIndexedHeaderTuple) for h in got] == [n in h2p.SENSITIVE for n, _ in headers]


def test_str_header_cache_keeps_no_secrets_and_no_per_call_values() -> None:
    from trimicro.transport._http2 import hpack as ours

    ours._ENCODED_STR.clear()
    ours.encode_str_headers(
        [("authorization", "Bearer s3cret"), ("micro-id", "a1-1"), ("traceparent", "00-ab-cd-01"), ("te", "trailers")]
    )
    assert list(ours._ENCODED_STR) == [("te", "trailers")]


@pytest.mark.parametrize("n", [0, 1, 14, 15, 16, 126, 127, 128, 129, 254, 255, 256, 16383, 16384, 100_000])
def test_encode_header_length_boundaries(n: int) -> None:
    for name in (b"x" * max(n, 1), b"content-type"):
        for sensitive in (False, True):
            got = hpack.Decoder(max_header_list_size=1 << 20).decode(
                encode_header(name, b"v" * n, sensitive), raw=True
            )
            assert [(bytes(a), bytes(b)) for a, b in got] == [(name, b"v" * n)]


def test_every_static_entry_round_trips() -> None:
    for i, (n, v) in enumerate(STATIC, start=1):
        enc = encode_header(n, v)
        if STATIC.index((n, v)) + 1 == i:  # the first of duplicates is indexed whole
            assert enc == bytes((0x80 | i,))
        assert hpack.Decoder().decode(enc, raw=True) == [(n, v)]


# -- HPACK decoding: a block's prefix shared with the previous block is not decoded again --

_fields = st.tuples(
    st.sampled_from([b"content-type", b"micro-id", b"grpc-timeout", b":path", b"x-a"]),
    st.sampled_from([b"", b"application/grpc", b"1", b"2", b"5S", b"/a.B/C", b"v" * 40]),
)


@prop
@given(
    blocks=st.lists(
        st.tuples(st.lists(_fields, max_size=6), st.sampled_from(["ours", "hpack", "hpack-no-huffman"])),
        min_size=1,
        max_size=12,
    )
)
def test_decoder_agrees_with_hpack_over_a_connection(
    blocks: list[tuple[list[tuple[bytes, bytes]], str]],
) -> None:
    # One connection's blocks, some from our table-less encoder, some from hpack's (which indexes,
    # so the table changes between blocks): every decode matches hpack's own decoder.
    from trimicro.transport._http2.hpack import Decoder

    ours, oracle = Decoder(max_header_list_size=1 << 20), hpack.Decoder(max_header_list_size=1 << 20)
    enc = hpack.Encoder()
    for fields, how in blocks:
        if how == "ours":
            block = h2p.encode_headers([(n, v, False) for n, v in fields])
        else:
            block = enc.encode(fields, huffman=how == "hpack")
        want = [(bytes(n), bytes(v)) for n, v in oracle.decode(block, raw=True)]
        got = ours.decode(block)
        assert got.raw == want
        assert got.text == [
            (n.decode("ascii", "replace"), v.decode("utf-8", "surrogateescape")) for n, v in want
        ]


def test_decoder_reuses_the_shared_prefix_and_still_checks_the_size() -> None:
    from trimicro.transport._http2.hpack import Decoder, OversizedHeaderList

    base = [(b":path", b"/a.B/C", False), (b"content-type", b"application/grpc", False)]
    dec = Decoder(max_header_list_size=200)
    for i in range(3):  # a per-call id changes the last field only
        got = dec.decode(h2p.encode_headers([*base, (b"micro-id", str(i).encode(), False)]))
        assert got.text == [(":path", "/a.B/C"), ("content-type", "application/grpc"), ("micro-id", str(i))]
    # a middle field differs: the prefix stops there
    got = dec.decode(h2p.encode_headers([base[0], (b"content-type", b"application/json", False)]))
    assert got.text == [(":path", "/a.B/C"), ("content-type", "application/json")]
    # the fields taken from the prefix still count toward the header list limit
    with pytest.raises(OversizedHeaderList):
        dec.decode(
            h2p.encode_headers(
                [base[0], (b"content-type", b"application/json", False), (b"x", b"y" * 100, False)]
            )
        )
