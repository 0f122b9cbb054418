"""docs/compatibility.md cannot drift: every test it names exists, every Go interop test is named, xfails
are flagged, every row says why, and the Go Micro version matches the Go peer's go.mod."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "compatibility.md"
REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`( \(xfail\))?")
STATUSES = ("tested", "tested, Go bug", "tested against grpcio, not Go", "not tested", "not supported")


def _tests_in(path: Path) -> dict[str, bool]:
    """Test function name -> whether it is marked xfail."""
    tree = ast.parse(path.read_text())
    out: dict[str, bool] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
            out[node.name] = any("xfail" in ast.unparse(d) for d in node.decorator_list)
    return out


def _table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_every_named_test_exists_and_xfails_are_flagged() -> None:
    refs = REF.findall(DOC.read_text())
    assert refs, "no test references found in docs/compatibility.md"
    for file, name, flagged in refs:
        path = ROOT / file
        assert path.is_file(), f"{file} (named in docs/compatibility.md) does not exist"
        tests = _tests_in(path)
        assert name in tests, f"{file}::{name} (named in docs/compatibility.md) does not exist"
        assert bool(flagged) == tests[name], (
            f"{file}::{name}: mark it ' (xfail)' in the doc iff it is an xfail"
        )


def test_every_go_interop_test_is_in_the_matrix() -> None:
    named = {(f, n) for f, n, _ in REF.findall(DOC.read_text())}
    files = sorted((ROOT / "tests" / "interop").glob("test_go_*.py"))
    assert files
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        for name in _tests_in(path):
            assert (rel, name) in named, f"{rel}::{name} is not listed in docs/compatibility.md"


def test_every_row_has_a_status_and_a_reason() -> None:
    for row in _table_rows(DOC.read_text()):
        if row[-2] == "Status":
            continue  # header
        status, why = row[-2], row[-1]
        assert status in STATUSES, f"unknown status {status!r} in row {row}"
        if status.startswith("tested") and status != "tested against grpcio, not Go":
            assert REF.search(why) or "every test" in why or "rows above" in why, (
                f"tested row names no test: {row}"
            )
        else:
            assert len(why.split()) >= 5, f"row without a real reason: {row}"


def test_go_micro_version_matches_the_peer() -> None:
    gomod = (ROOT / "tests" / "interop" / "go" / "go.mod").read_text()
    match = re.search(r"^\s*go-micro\.dev/(v\d+) (v[\d.]+)\s*$", gomod, re.M)
    assert match, "go-micro.dev is not required by tests/interop/go/go.mod"
    assert f"go-micro.dev/{match[1]} {match[2]}" in DOC.read_text()
