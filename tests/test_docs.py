"""Every command the docs show runs as written (README.md, docs/*.md, examples READMEs, docstrings).

The rules (what runs, the ``<!-- docs: ... -->`` directives, the environment) are in
tests/_docsnippets.py and docs/index.md ("Docs that run").
"""

from __future__ import annotations

import pytest

from tests import _docsnippets as docs

SNIPPETS = docs.all_snippets()
# Skips are for fragments, illustrations and slow or installing commands; most blocks must run.
MAX_SKIPPED_SHARE = 0.6


def test_directives_parse_and_snippets_are_found():
    assert len(SNIPPETS) >= 20
    sources = {s.source.split(":")[0] for s in SNIPPETS}
    assert {"README.md", "docs/cli.md"} <= sources
    assert any(s.source.startswith("examples/") and "docstrings" in s.source for s in SNIPPETS)


def test_most_snippets_run(capsys):
    skipped = [s for s in SNIPPETS if s.skip]
    with capsys.disabled():
        print(f"\ndocs snippets: {len(SNIPPETS) - len(skipped)} run, {len(skipped)} skipped:")
        for s in skipped:
            print(f"  skip {s.source}: {s.skip}")
    assert len(skipped) <= MAX_SKIPPED_SHARE * len(SNIPPETS), [s.source for s in skipped]


def test_script_checks_each_command_and_retries_after_a_background_start():
    script = docs.shell_script('srv &   # a server\nfoo --x \\\n  y   # prints "ok"\n# note\nkill %1\n')
    lines = script.splitlines()
    assert "srv &   # a server" in lines
    assert "__docs_run 'foo --x    y   # prints \"ok\"' ok" in lines
    assert "__docs_run 'kill %1' ''" in lines


def test_a_skip_needs_a_reason(tmp_path):
    (tmp_path / "README.md").write_text("<!-- docs: skip -->\n```sh\nls\n```\n")
    with pytest.raises(ValueError, match="needs a reason"):
        docs.markdown_snippets(tmp_path / "README.md", tmp_path)


def test_run_with_next_joins_blocks(tmp_path):
    text = "<!-- docs: run-with next -->\n```python\nx = 1\n```\ntext\n```python\nprint(x)\n```\n"
    (tmp_path / "README.md").write_text(text)
    (snippet,) = docs.markdown_snippets(tmp_path / "README.md", tmp_path)
    assert snippet.code == "x = 1\nprint(x)\n"


@pytest.mark.loopback
@pytest.mark.timeout(300)
@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_snippet_runs_as_written(snippet: docs.Snippet):
    if snippet.skip:
        pytest.skip(snippet.skip)
    outcome = docs.run(snippet)
    if outcome.skipped:
        pytest.skip(outcome.skipped)
    assert outcome.returncode is not None, f"timed out after {snippet.timeout} s:\n{outcome.output[-3000:]}"
    assert outcome.returncode == 0, f"{snippet.source} failed:\n{snippet.code}\n---\n{outcome.output[-3000:]}"


@pytest.mark.loopback
def test_a_failing_command_fails_the_snippet_and_background_jobs_are_stopped():
    snippet = docs.Snippet(source="t", lang="sh", code='sleep 300 &\necho hi   # prints "nope"\n', timeout=60)
    docs.RETRY_SECONDS, saved = 1, docs.RETRY_SECONDS
    try:
        outcome = docs.run(snippet)
    finally:
        docs.RETRY_SECONDS = saved
    assert outcome.returncode == 1
    assert "docs: FAILED" in outcome.output


def test_console_transcripts_run_only_the_prompted_lines():
    code = "$ echo hi \\\n  there\nhi there\n$ true\noutput line\n"
    assert list(docs.logical_lines(code)) == ["echo hi    there", "true"]
