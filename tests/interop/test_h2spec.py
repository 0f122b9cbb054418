"""h2spec (github.com/summerwind/h2spec, built by tests/interop/grpcgo/build.sh) against trimicro's
one port, plain h2c on loopback.

Every h2spec case must pass except an allow-list of cases that follow from serving gRPC and mucp on
one port; each is listed with its reason in docs/grpc.md ("HTTP/2 conformance (h2spec)"), and this
test checks that the list there and here agree. h2spec's case ids are ``<section>/<n>``, ``n``
counting the cases of that section from 1, as h2spec numbers them in its report.
"""

from __future__ import annotations

import re
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Final

import pytest

from tests.interop._grpc_testing import serve_test_service
from tests.interop._grpcgo import GrpcGoBins, grpcgo, run_bounded

__all__ = ["grpcgo"]  # fixture

pytestmark = pytest.mark.loopback

DOC: Final = Path(__file__).resolve().parents[2] / "docs" / "grpc.md"

#: case -> why it fails on trimicro's port by design (docs/grpc.md has the long form)
ALLOWED: Final = {
    "http2/3.5/2": "a connection that does not start with the preface is served as HTTP/1.1 (mucp)",
    "http2/4.2/3": "h2spec assumes the default 16 KiB frame limit; we advertise 1 MiB",
}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # h2spec writes frame bytes into its XML


def failed_cases(report: str) -> tuple[set[str], int]:
    """The ids of the failed cases in an h2spec JUnit report, and how many cases it ran."""
    root = ET.fromstring(_CONTROL.sub("?", report))
    failed, total = set(), 0
    for suite in root.iter("testsuite"):
        for n, case in enumerate(suite.iter("testcase"), 1):
            total += 1
            if case.find("error") is not None or case.find("failure") is not None:
                failed.add(f"{suite.get('package')}/{n}")
    return failed, total


async def run_h2spec(bins: GrpcGoBins, *args: str) -> tuple[set[str], int, str]:
    async with serve_test_service() as address:
        port = address.rpartition(":")[2]
        with tempfile.TemporaryDirectory(prefix="trimicro-h2spec-") as tmp:
            report = Path(tmp) / "report.xml"
            done = await run_bounded(
                [str(bins.h2spec), "-h", "127.0.0.1", "-p", port, "-o", "2", "-j", str(report), *args], 110
            )
            assert report.exists(), f"h2spec wrote no report:\n{done.output[-3000:]}"
            failed, total = failed_cases(report.read_text("utf-8", "replace"))
    return failed, total, done.output


async def test_h2spec_failures_are_exactly_the_allowed_ones(grpcgo: GrpcGoBins) -> None:
    failed, total, output = await run_h2spec(grpcgo)
    assert total >= 140, output[-3000:]
    unexpected = failed - ALLOWED.keys()
    fixed = ALLOWED.keys() - failed
    assert not unexpected and not fixed, (
        f"h2spec: unexpected failures {sorted(unexpected)}, allowed cases now passing {sorted(fixed)}"
        f"\n{output[-6000:]}"
    )


async def test_h2spec_4_2_3_with_headers_over_our_frame_limit(grpcgo: GrpcGoBins) -> None:
    # The same case with header fields big enough to exceed the 1 MiB we advertise: FRAME_SIZE_ERROR.
    failed, total, output = await run_h2spec(grpcgo, "--max-header-length", "220000", "http2/4.2/3")
    assert (total, failed) == (1, set()), output[-3000:]


def test_allow_list_is_documented() -> None:
    text = DOC.read_text("utf-8")
    section = text.partition("## HTTP/2 conformance (h2spec)")[2]
    assert section, "docs/grpc.md has no h2spec section"
    for case in ALLOWED:
        assert f"`{case}`" in section, f"{case} is not explained in docs/grpc.md"


def test_report_parsing() -> None:
    report = (
        '<testsuites><testsuite package="http2/4.2"><testcase classname="a"></testcase>'
        '<testcase classname="b"><error>PING \x00\x01</error></testcase></testsuite>'
        '<testsuite package="generic/2"><testcase classname="c"><skipped/></testcase></testsuite>'
        "</testsuites>"
    )
    assert failed_cases(report) == ({"http2/4.2/2"}, 3)
