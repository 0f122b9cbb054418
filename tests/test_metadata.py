"""Header names, reserved sets, canonical names, and the two deadline codecs (``Timeout``, ``grpc-timeout``)."""

from __future__ import annotations

import math

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

import trimicro
import trimicro.transport
from trimicro._metadata import (
    CARRIED_BY_GRPC,
    CONNECTION_SPECIFIC,
    GRPC_RESERVED,
    MESSAGE_ID,
    MICRO_ID,
    ROUTING_HEADERS,
    Deadline,
    InvalidTimeout,
    canonical,
    decode_grpc_timeout,
    decode_timeout,
    encode_grpc_timeout,
    encode_timeout,
    parse_grpc_timeout,
)

# -- names and sets --


def test_canonical_is_gos_canonical_header_key() -> None:
    assert canonical("micro-endpoint") == "Micro-Endpoint"
    assert canonical("MICRO-ID") == "Micro-Id"
    assert canonical("x-user") == "X-User"
    assert canonical("content--type") == "Content--Type"
    assert canonical("") == ""


def test_canonical_still_public_from_transport() -> None:
    assert trimicro.transport.canonical is canonical


def test_public_metadata_context_manager_is_not_shadowed() -> None:
    """``trimicro.metadata`` stays the context manager: the vocabulary module is ``_metadata``."""
    assert callable(trimicro.metadata)
    with trimicro.metadata(user="alice"):
        pass


def test_sets_are_in_the_form_they_are_compared_in() -> None:
    assert all(canonical(name) == name for name in ROUTING_HEADERS | CARRIED_BY_GRPC)
    assert all(name == name.lower() for name in GRPC_RESERVED | CONNECTION_SPECIFIC)


def test_broker_message_id_is_gos_literal_spelling() -> None:
    assert MESSAGE_ID == "Micro-ID" != MICRO_ID
    assert canonical(MESSAGE_ID) == MICRO_ID


# -- mucp Timeout: integer nanoseconds --


@pytest.mark.parametrize(
    ("seconds", "encoded"),
    [
        (5.0, "5000000000"),
        (2.5, "2500000000"),
        (1e-9, "1"),
        (1e-12, "1"),
        (0.0, "1"),
        (-3.0, "1"),
        (0.0000000019, "1"),  # truncated, as Go's int64(d)
    ],
)
def test_encode_timeout(seconds: float, encoded: str) -> None:
    assert encode_timeout(seconds) == encoded


def test_encode_timeout_rejects_inf_and_nan() -> None:
    with pytest.raises(OverflowError):
        encode_timeout(math.inf)
    with pytest.raises(ValueError, match="NaN"):
        encode_timeout(math.nan)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5000000000", 5.0),
        ("1", 1e-9),
        ("5s", 5.0),  # a Go duration, for robustness
        ("500ms", 0.5),
    ],
)
def test_decode_timeout(value: str, seconds: float) -> None:
    assert decode_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [None, "", "0"])
def test_decode_timeout_means_no_deadline(value: str | None) -> None:
    assert decode_timeout(value) is None


@pytest.mark.parametrize(
    "value",
    ["-5", "-1", "garbage", "5 parsecs", "nan", "inf", "-inf", "1e400", "9" * 400, "9223372036854775808"],
)
def test_decode_timeout_rejects_malformed(value: str) -> None:
    with pytest.raises(InvalidTimeout, match="invalid Timeout"):
        decode_timeout(value)


@given(st.floats(min_value=1e-9, max_value=1e9, allow_nan=False))
def test_timeout_roundtrip_truncates_to_the_nanosecond(seconds: float) -> None:
    encoded = encode_timeout(seconds)
    assert encoded.isdigit()
    decoded = decode_timeout(encoded)
    assert decoded is not None
    assert seconds - 1e-9 - seconds * 1e-15 <= decoded <= seconds * (1 + 1e-15)


@given(st.integers(min_value=1, max_value=10**15))
def test_timeout_decode_encode_keeps_nanoseconds(ns: int) -> None:
    decoded = decode_timeout(str(ns))
    assert decoded is not None
    assert abs(int(encode_timeout(decoded)) - ns) <= 1


# -- grpc-timeout: at most 8 digits and a unit --


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1H", 3600.0),
        ("2M", 120.0),
        ("3S", 3.0),
        ("250m", 0.25),
        ("5u", 5e-6),
        ("7n", 7e-9),
        ("99999999S", 99999999.0),
    ],
)
def test_decode_grpc_timeout_units(value: str, seconds: float) -> None:
    assert decode_grpc_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [None, "", "S", "10", "10x", "-1S", "123456789S", "1.5S", "\u0661S"])
def test_decode_grpc_timeout_rejects(value: str | None) -> None:
    assert decode_grpc_timeout(value) is None
    if value is not None:
        with pytest.raises(InvalidTimeout, match="malformed grpc-timeout"):
            parse_grpc_timeout(value)


def test_parse_grpc_timeout_absent_is_no_deadline() -> None:
    assert parse_grpc_timeout(None) is None
    assert parse_grpc_timeout("2S") == 2.0


def test_longest_grpc_timeout_relays_as_a_go_duration() -> None:
    seconds = parse_grpc_timeout("99999999H")
    assert seconds is not None
    assert decode_timeout(encode_timeout(seconds)) == pytest.approx((2**63 - 1) / 1e9)


@given(st.floats(min_value=1e-9, max_value=1e9, allow_nan=False))
def test_grpc_timeout_roundtrip_never_shortens(seconds: float) -> None:
    encoded = encode_grpc_timeout(seconds)
    assert 2 <= len(encoded) <= 9
    decoded = decode_grpc_timeout(encoded)
    assert decoded is not None
    # Rounded up to four significant digits: never shorter, at most 0.1% longer.
    assert decoded >= seconds * (1 - 1e-9)
    assert decoded <= seconds * 1.001 + 1e-9


@pytest.mark.parametrize(
    ("seconds", "encoded"),
    [
        (4.99987, "5S"),
        (5.0, "5S"),
        (0.25, "250m"),
        (0.0012345, "1235u"),
        (90.0, "90S"),
        (3600.0, "1H"),
        (1e-9, "1n"),
        (1e-13, "1n"),
        (0.0, "1n"),
        (-1.0, "1n"),
        (float("inf"), "99999999H"),
        (1e12, "99999999H"),
    ],
)
def test_grpc_timeout_repeats_for_hpack(seconds: float, encoded: str) -> None:
    assert encode_grpc_timeout(seconds) == encoded


def test_grpc_timeout_rejects_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        encode_grpc_timeout(math.nan)


@given(st.floats(min_value=1e-9, max_value=1e7, allow_nan=False))
def test_grpc_to_mucp_to_grpc_keeps_the_header(seconds: float) -> None:
    """A gRPC call through our server into a nested gRPC call: ``grpc-timeout`` -> ``Timeout`` ->
    ``grpc-timeout`` (with no time spent) gives back the same header, so HPACK keeps caching it.

    Up to about 3 years: beyond 99,990,000 s four significant digits of seconds need a coarser unit
    than ``S``, which rounds up again, so re-encoding grows the value (harmless; unchanged)."""

    first = encode_grpc_timeout(seconds)
    as_seconds = decode_grpc_timeout(first)
    assert as_seconds is not None
    via_mucp = decode_timeout(encode_timeout(as_seconds))
    assert via_mucp is not None
    assert encode_grpc_timeout(via_mucp) == first


# -- Deadline --


async def test_deadline_from_timeout_and_remaining(autojump_clock: trio.abc.Clock) -> None:
    deadline = Deadline.from_timeout(5.0)
    assert deadline.at == trio.current_time() + 5.0
    await trio.sleep(2)
    assert deadline.time_remaining() == pytest.approx(3.0)
    assert deadline.to_header() == encode_timeout(deadline.at - trio.current_time())
    assert deadline.to_grpc_timeout() == "3S"
    await trio.sleep(10)
    assert deadline.time_remaining() == 0.0
    assert deadline.to_header() == "1"
    assert deadline.to_grpc_timeout() == "1n"


async def test_deadline_from_headers(autojump_clock: trio.abc.Clock) -> None:
    now = trio.current_time()
    mucp = Deadline.from_header("2000000000")
    grpc = Deadline.from_grpc_timeout("250m")
    assert mucp is not None and grpc is not None
    assert mucp.at == pytest.approx(now + 2.0)
    assert grpc.at == pytest.approx(now + 0.25)
    assert Deadline.from_header(None) is None
    assert Deadline.from_header("0") is None
    assert Deadline.from_grpc_timeout("10x") is None


async def test_no_deadline_is_infinite() -> None:
    deadline = Deadline(math.inf)
    assert deadline.time_remaining() == math.inf
    assert deadline.to_grpc_timeout() == "99999999H"
    with pytest.raises(OverflowError):
        deadline.to_header()


def test_deadline_is_a_frozen_value() -> None:
    assert Deadline(1.0) == Deadline(1.0)
    assert hash(Deadline(1.0)) == hash(Deadline(1.0))
