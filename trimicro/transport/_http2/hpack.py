"""HPACK (RFC 7541) for :mod:`.connection`: an encoder that never uses the dynamic table and a decoder
that remembers what it decoded.

- **Encoding** without the dynamic table makes each header's bytes a pure function of the header, so
  they come from a cache: sending a header block is a dict lookup per header. The price is a bigger
  block (no per-connection compression of repeated headers), which loopback and LAN links do not
  notice; the peer's decoder state is never touched.
- **Decoding** must follow any peer's dynamic table and Huffman codes (grpc-core and Go use both). A
  block whose bytes and starting table are the same as an earlier one's decodes to the same headers
  and leaves the table as it was, so a decoded block is cached under ``(table generation, bytes)``;
  the generation moves whenever the table changes. A peer that repeats its headers (every gRPC
  client does: after the first call they are all table references) is decoded once per connection.
  Huffman strings are decoded with the ``hpack`` package's table-driven decoder.
"""

from __future__ import annotations

import collections
from typing import Final

import hpack.exceptions
import hpack.huffman_table
import hpack.table

__all__ = [
    "SENSITIVE",
    "Block",
    "Decoder",
    "HPACKError",
    "OversizedHeaderList",
    "encode_header",
    "encode_headers",
    "encode_str_headers",
]

_STATIC: Final[tuple[tuple[bytes, bytes], ...]] = tuple(hpack.table.HeaderTable.STATIC_TABLE)
_STATIC_LEN: Final = len(_STATIC)
_STATIC_NAMES: dict[bytes, int] = {}
_STATIC_PAIRS: dict[tuple[bytes, bytes], int] = {}
for _i, (_n, _v) in enumerate(_STATIC, start=1):
    _STATIC_NAMES.setdefault(_n, _i)
    _STATIC_PAIRS.setdefault((_n, _v), _i)
_ENTRY_OVERHEAD: Final = 32  # RFC 7541 4.1


class HPACKError(Exception):
    """The header block cannot be decoded: the connection's HPACK state is lost (COMPRESSION_ERROR)."""


class OversizedHeaderList(HPACKError):
    """The decoded header list exceeds the size we announced (SETTINGS_MAX_HEADER_LIST_SIZE)."""


# -- encoding --


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 5.1 integer with ``first``'s high bits as the representation's pattern."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_header(name: bytes, value: bytes, sensitive: bool = False) -> bytes:
    """One header field without the dynamic table: a static-table match is one index byte, anything
    else a literal "without indexing" (or "never indexed" when ``sensitive``), raw (no Huffman)."""
    if not sensitive:
        index = _STATIC_PAIRS.get((name, value))
        if index is not None:
            return _integer(index, 7, 0x80)
    index = _STATIC_NAMES.get(name, 0)
    head = _integer(index, 4, 0x10 if sensitive else 0x00)
    if not index:
        head += _integer(len(name), 7, 0) + name
    return head + _integer(len(value), 7, 0) + value


_ENCODED: dict[tuple[bytes, bytes, bool], bytes] = {}
#: Bounds of the caches: entries, and the longest value / block worth keeping (gRPC's repeated
#: headers are short; long or one-off ones would only churn the cache and hold memory).
_CACHE_MAX: Final = 1024
_CACHE_VALUE_MAX: Final = 256
_BLOCK_CACHE_MAX: Final = 128
_BLOCK_CACHE_BYTES: Final = 1024


def encode_headers(headers: list[tuple[bytes, bytes, bool]]) -> bytes:
    """A header block from ``(name, value, sensitive)`` fields, each from a bounded cache."""
    parts = []
    cache = _ENCODED
    for h in headers:
        enc = cache.get(h)
        if enc is None:
            enc = encode_header(*h)
            if len(h[1]) <= _CACHE_VALUE_MAX and not h[2]:  # secrets are not kept around
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                cache[h] = enc
        parts.append(enc)
    return b"".join(parts)


#: Headers that may carry secrets: encoded "never indexed", so no intermediary compresses them into
#: a shared table, and never cached here.
SENSITIVE: Final = frozenset({"authorization", "cookie", "set-cookie", "proxy-authorization"})
#: Names whose value is new on every call (trimicro's request id, a span's traceparent): caching them
#: would only fill the cache until it is emptied, and the headers that repeat are encoded again.
_PER_CALL: Final = frozenset({"micro-id", "traceparent"})
_ENCODED_STR: dict[tuple[str, str], bytes] = {}


def encode_str_headers(headers: list[tuple[str, str]]) -> bytes:
    """A header block from ``(name, value)`` strings, as :func:`encode_headers` makes it from bytes
    (names ASCII, values UTF-8 with surrogate escapes, :data:`SENSITIVE` names never indexed). The
    cache is keyed by the strings themselves, so a repeated header costs one dict lookup, not two
    encodes and a lookup. The headers must already be valid: everything we send is built by us or
    checked before (``_h2grpc.check_metadata``)."""
    parts = []
    cache = _ENCODED_STR
    for h in headers:
        enc = cache.get(h)
        if enc is None:
            name, value = h
            sensitive = name in SENSITIVE
            enc = encode_header(name.encode("ascii"), value.encode("utf-8", "surrogateescape"), sensitive)
            if not sensitive and name not in _PER_CALL and len(value) <= _CACHE_VALUE_MAX:
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                cache[h] = enc
        parts.append(enc)
    return b"".join(parts)


# -- decoding --


def _read_integer(block: bytes, pos: int, prefix_bits: int) -> tuple[int, int]:
    limit = (1 << prefix_bits) - 1
    value = block[pos] & limit
    pos += 1
    if value < limit:
        return value, pos
    shift = 0
    end = len(block)
    while True:
        if pos >= end:
            raise HPACKError("truncated integer")
        b = block[pos]
        pos += 1
        value += (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 28:  # no legitimate index or length needs more than 2**28
            raise HPACKError("integer too large")


def _read_string(block: bytes, pos: int) -> tuple[bytes, int]:
    if pos >= len(block):
        raise HPACKError("truncated string")
    huffman = block[pos] & 0x80
    length, pos = _read_integer(block, pos, 7)
    end = pos + length
    if end > len(block):
        raise HPACKError("truncated string")
    raw = block[pos:end]
    if huffman:
        try:
            raw = hpack.huffman_table.decode_huffman(raw)
        except hpack.exceptions.HPACKDecodingError as exc:
            raise HPACKError(str(exc)) from None
    return raw, end


class Block:
    """A decoded header block. Cached and shared: read it, never mutate it."""

    __slots__ = ("checked", "raw", "text")

    def __init__(self, raw: list[tuple[bytes, bytes]], text: list[tuple[str, str]] | None = None) -> None:
        self.raw = raw
        #: names as ASCII, values as UTF-8 (undecodable bytes kept by surrogateescape); ``text``
        #: may hand in the first entries already decoded (a shared prefix, see Decoder.decode)
        done = text or []
        self.text = done + [
            (n.decode("ascii", "replace"), v.decode("utf-8", "surrogateescape")) for n, v in raw[len(done) :]
        ]
        #: the connection's validity verdicts per kind of block (request, response, trailers)
        self.checked: dict[int, bool] = {}


class Decoder:
    """One connection's HPACK decoder (its dynamic table), with a cache of decoded blocks."""

    __slots__ = (
        "_cache",
        "_generation",
        "_last",
        "_max_size",
        "_size",
        "_table",
        "max_allowed_table_size",
        "max_header_list_size",
    )

    def __init__(self, *, max_header_list_size: int, max_allowed_table_size: int = 4096) -> None:
        self.max_header_list_size = max_header_list_size
        #: what we announced in SETTINGS_HEADER_TABLE_SIZE: the encoder may pick any size up to it
        self.max_allowed_table_size = max_allowed_table_size
        self._max_size = max_allowed_table_size
        self._size = 0
        self._table: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self._generation = 0
        self._cache: dict[tuple[int, bytes], Block] = {}
        #: the last block decoded without the cache, for its reusable prefix (see decode)
        self._last: _Prefix | None = None

    def decode(self, block: bytes) -> Block:
        """The header list of ``block``; raises :class:`HPACKError` (the connection must end).

        A block seen before comes from the cache. Otherwise, requests of one client usually differ
        only in their last fields (a per-call id, a deadline) and never touch the table (literals
        without indexing, as our own encoder and many others send them), so the fields the block
        shares, byte for byte, with the previous uncached block are taken from that one's result
        and only the rest is decoded."""
        key = (self._generation, block)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        last = self._last
        start = count = total = 0
        if last is not None and last.generation == self._generation:
            for pos, n, size in reversed(last.bounds):
                if block.startswith(last.block[:pos]):
                    start, count, total = pos, n, size
                    break
        raw = self._decode(block, start, last.block_raw[:count] if count and last else [], total)
        headers = Block(raw, last.block_text[:count] if count and last else None)
        assert self._last is not None  # set by _decode
        self._last.block_text = headers.text
        # A block that changed the table would decode differently next time: cache it only if it
        # did not (then key's generation is still current).
        if key[0] == self._generation and len(block) <= _BLOCK_CACHE_BYTES:
            if len(self._cache) >= _BLOCK_CACHE_MAX:
                self._cache.clear()
            self._cache[key] = headers
        return headers

    def _entry(self, index: int) -> tuple[bytes, bytes]:
        if 0 < index <= _STATIC_LEN:
            return _STATIC[index - 1]
        i = index - _STATIC_LEN - 1
        if index <= 0 or i >= len(self._table):
            raise HPACKError(f"invalid table index {index}")
        return self._table[i]

    def _add(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + _ENTRY_OVERHEAD
        table = self._table
        if size > self._max_size:
            table.clear()  # RFC 7541 4.4: an entry larger than the table empties it
            self._size = 0
            return
        table.appendleft((name, value))
        self._size += size
        self._evict()

    def _evict(self) -> None:
        table = self._table
        while self._size > self._max_size:
            n, v = table.pop()
            self._size -= len(n) + len(v) + _ENTRY_OVERHEAD

    def _literal(self, block: bytes, pos: int, prefix_bits: int) -> tuple[tuple[bytes, bytes], int]:
        """A literal field: its name by table index (or literal when the index is 0), then its value."""
        index, pos = _read_integer(block, pos, prefix_bits)
        if index:
            name = self._entry(index)[0]
        else:
            name, pos = _read_string(block, pos)
        value, pos = _read_string(block, pos)
        return (name, value), pos

    def _decode(
        self, block: bytes, pos: int = 0, headers: list[tuple[bytes, bytes]] | None = None, total: int = 0
    ) -> list[tuple[bytes, bytes]]:
        """Decode ``block`` from ``pos`` on (``headers`` and ``total``: what came before it) and
        remember its field boundaries up to the first field that changes the table."""
        headers = [] if headers is None else headers
        end = len(block)
        changed = False
        updates = 0
        generation = self._generation
        bounds: list[tuple[int, int, int]] = []
        while pos < end:
            if not changed:
                bounds.append((pos, len(headers), total))
            b = block[pos]
            if b & 0x80:  # indexed field
                index, pos = _read_integer(block, pos, 7)
                header = self._entry(index)
            elif b & 0x40:  # literal with incremental indexing
                header, pos = self._literal(block, pos, 6)
                self._add(*header)
                changed = True
            elif b & 0x20:  # dynamic table size update: only before the first field, at most two
                updates += 1
                if headers or updates > 2:
                    raise HPACKError("table size update after a header field or more than two")
                size, pos = _read_integer(block, pos, 5)
                if size > self.max_allowed_table_size:
                    raise HPACKError(f"table size {size} above the {self.max_allowed_table_size} allowed")
                self._max_size = size
                self._evict()
                changed = True
                continue
            else:  # literal without indexing / never indexed
                header, pos = self._literal(block, pos, 4)
            total += len(header[0]) + len(header[1]) + _ENTRY_OVERHEAD
            if total > self.max_header_list_size:
                raise OversizedHeaderList(f"header list exceeds {self.max_header_list_size} bytes")
            headers.append(header)
        if changed:
            self._generation += 1
        self._last = _Prefix(generation, block, bounds[1:], headers)
        return headers


class _Prefix:
    """A decoded block's field boundaries ``(offset, fields before it, their size)``, for the next
    block that starts with the same bytes (Decoder.decode); only boundaries before any table change."""

    __slots__ = ("block", "block_raw", "block_text", "bounds", "generation")

    def __init__(
        self, generation: int, block: bytes, bounds: list[tuple[int, int, int]], raw: list[tuple[bytes, bytes]]
    ) -> None:
        self.generation = generation
        self.block = block
        self.bounds = bounds
        self.block_raw = raw
        self.block_text: list[tuple[str, str]] = []
