"""How the CLI prints: JSON for machines, aligned tables for people, one-line errors for everyone.

``--output json`` puts exactly one JSON document on stdout and nothing else (messages go to stderr),
so ``trimicro services --output json | jq`` always parses. Without it a listing is a table on a TTY
and tab-separated lines in a pipe (``services``: the names alone), which keeps ``trimicro services | xargs`` working.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["CliError", "print_json", "print_table"]


class CliError(Exception):
    """A failure the command reports as one line on stderr, with an exit status (never a traceback)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def print_json(value: Any, *, out: TextIO | None = None) -> None:
    print(json.dumps(value, indent=2, sort_keys=False), file=out or sys.stdout, flush=True)


def print_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    names_only: bool = False,
    out: TextIO | None = None,
) -> None:
    """Aligned columns on a TTY; in a pipe tab-separated rows without the header line, or with
    ``names_only`` just the first column (one name per line, for ``xargs``)."""
    stream = out or sys.stdout
    if not stream.isatty():
        for row in rows:
            print(row[0] if names_only else "\t".join(str(c) for c in row), file=stream)
        stream.flush()
        return
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=stream)
    stream.flush()
