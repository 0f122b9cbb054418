"""The Codec conformance suite: what every :class:`~trimicro.codec.Codec` must do.

Subclass it and provide a ``codec`` fixture and a ``samples`` fixture: ``(message, into)`` pairs the
codec must round-trip (``decode(encode(message), into) == message``)::

    class TestMyCodec(CodecConformance):
        garbage = (b"\\xff not mine",)

        @pytest.fixture
        def codec(self):
            return MyCodec()

        @pytest.fixture
        def samples(self):
            return [({"a": 1}, dict), ([1, 2], None)]

``garbage``: bodies the codec must refuse (empty for a codec that takes any bytes); ``unencodable``:
values it must refuse to encode; ``fuzz_examples``: how many random bodies hypothesis tries.

What it checks (trimicro/codec/_base.py): a non-empty ``content_type``; encode gives ``bytes``;
round trips for the plain and the request/response forms, the envelope keeping endpoint and
sequence number; an error sent in a response envelope comes back as a raised
:class:`~trimicro.errors.MicroError`; bad input raises :class:`~trimicro.errors.CodecError` and
nothing else (for given garbage and for random bytes).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from ...codec import Codec
from ...errors import CodecError, MicroError

__all__ = ["CodecConformance"]


class _Opaque:
    """A value no codec knows how to encode."""


class CodecConformance:
    """Base class of a codec's conformance tests (see the module doc)."""

    garbage: ClassVar[tuple[bytes, ...]] = (b"\xff\xfe\x00garbage\x80",)
    unencodable: ClassVar[tuple[Any, ...]] = (_Opaque(),)
    fuzz_examples: ClassVar[int] = 200

    def test_content_type(self, codec: Codec) -> None:
        assert isinstance(codec.content_type, str) and "/" in codec.content_type
        assert isinstance(codec.envelope, bool)

    def test_round_trip(self, codec: Codec, samples: list[tuple[Any, Any]]) -> None:
        assert samples, "give the suite at least one sample"
        for message, into in samples:
            data = codec.encode(message)
            assert isinstance(data, bytes)
            assert codec.decode(data, into) == message, (message, into)

    def test_request_round_trip(self, codec: Codec, samples: list[tuple[Any, Any]]) -> None:
        for seq, (message, into) in enumerate(samples, start=1):
            data = codec.encode_request("Conformance.Check", seq, message)
            assert isinstance(data, bytes)
            endpoint, got_seq, got = codec.decode_request(data, into)
            assert got == message
            if codec.envelope:
                assert (endpoint, got_seq) == ("Conformance.Check", seq)
            else:
                assert endpoint is None

    def test_response_round_trip(self, codec: Codec, samples: list[tuple[Any, Any]]) -> None:
        for seq, (message, into) in enumerate(samples, start=1):
            data = codec.encode_response("Conformance.Check", seq, message)
            assert codec.decode_response(data, into) == message

    def test_error_in_a_response_envelope_is_raised(
        self, codec: Codec, samples: list[tuple[Any, Any]]
    ) -> None:
        if not codec.envelope:
            pytest.skip("a plain codec carries errors in headers, not in the body")
        message, into = samples[0]
        data = codec.encode_response("Conformance.Check", 1, message, error="conformance failure")
        with pytest.raises(MicroError) as info:
            codec.decode_response(data, into)
        assert "conformance failure" in str(info.value)

    def test_garbage_is_a_codec_error(self, codec: Codec, samples: list[tuple[Any, Any]]) -> None:
        if not self.garbage:
            pytest.skip("this codec accepts any bytes")
        intos = {repr(into): into for _, into in samples}
        for data in self.garbage:
            for into in intos.values():
                with pytest.raises(CodecError):
                    codec.decode(data, into)

    def test_unencodable_is_a_codec_error(self, codec: Codec) -> None:
        for value in self.unencodable:
            with pytest.raises(CodecError):
                codec.encode(value)

    def test_random_bytes_raise_only_codec_errors(self, codec: Codec, samples: list[tuple[Any, Any]]) -> None:
        try:
            from hypothesis import HealthCheck, given, settings
            from hypothesis import strategies as st
        except ImportError:  # an optional check: hypothesis is in the test extra, not a dependency
            pytest.skip("hypothesis is not installed")
        intos = list({repr(into): into for _, into in samples}.values())

        @settings(
            max_examples=self.fuzz_examples,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        )
        @given(st.binary(max_size=256), st.sampled_from(intos))
        def check(data: bytes, into: Any) -> None:
            for decode in (
                lambda: codec.decode(data, into),
                lambda: codec.decode_request(data, into),
                lambda: codec.decode_response(data, into),
            ):
                try:
                    decode()
                except (CodecError, MicroError):
                    pass  # MicroError: an envelope whose error field happened to be set

        check()
