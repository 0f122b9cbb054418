"""Find and run the commands the docs show, exactly as written (used by tests/test_docs.py).

Which text is a snippet
    Fenced blocks tagged ``sh``, ``bash``, ``shell``, ``console`` or ``python``/``py`` in README.md,
    docs/*.md and examples/**/README.md (whatever files exist when the test runs), plus the
    ``python examples/...`` usage lines of the module docstrings of examples/**/*.py. Untagged
    fences and ``text``/``json``/``toml`` fences are shown output or formats, never run.

Directives: an HTML comment right before the fence (blank lines between are allowed), several
either stacked or separated by ``;`` in one comment::

    <!-- docs: skip (fragment of the block above) -->   never run; the reason is mandatory
    <!-- docs: run-with next -->                         prepend this block to the next one
    <!-- docs: ports 8080 7946 -->                       skip (with a reason) if one is taken
    <!-- docs: needs nats -->                            start nats-server -js on 127.0.0.1:4222
    <!-- docs: needs etcd -->                            start etcd on 127.0.0.1:2379 (peer 2380)
    <!-- docs: needs zookeeper -->  / ``needs kafka``    python3 -m trimicro.testing zookeeper|kafka --serve
                                                         (127.0.0.1:2181 / 127.0.0.1:9092)
    <!-- docs: timeout 40 -->                            bound in seconds (default 30)

``needs`` starts the server on the fixed port the snippet names, only if that port is free on
127.0.0.1; otherwise (or without the binary) the snippet is skipped with that reason.

How a shell snippet runs
    A block with ``$ `` prompts is a console transcript: the prompted lines are its commands and
    the other lines the output it shows (not run).
    As one bash script, cwd = the repository root, ``set -m`` (job control, so ``kill %1`` works
    and each job is its own process group). A line ending in ``&`` is run as written, in the
    background. Every other command is run as written through ``eval``; it must exit 0, else the
    script stops (``set -e`` per command). Once a background job was started, a failing command is
    retried for up to 20 s: the server it talks to may still be starting (retrying beats sleeping).
    A trailing ``# prints "X"`` or ``# lists "X"`` comment also requires X in the command's output.
    On exit a trap terminates every job still running (the process-group ``kill``), and the
    runner kills anything left in the snippet's session.

How a python snippet runs
    Saved to a temporary ``snippet.py`` and run with ``python3 snippet.py``, cwd = the repository
    root (as a user who pasted it into a file).

Docstring usage lines run per example directory as one shell snippet, the lines ending in ``&``
(servers, subscribers) first.

The environment is the user's after ``python3 -m pip install -e .``: no PYTHONPATH, no MICRO_*
variables, ``trimicro`` on PATH. The runner puts a ``trimicro`` shim first on PATH that runs
``python3 -m trimicro.cli`` from the checkout under test, and, when the installed ``trimicro``
package is another checkout (a git worktree sharing one editable install), sets PYTHONPATH to this
checkout: that emulates this checkout's editable install, it is not something the docs rely on.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parent.parent
SHELL_LANGS = {"sh", "bash", "shell", "console"}
PYTHON_LANGS = {"python", "py", "python3"}
DEFAULT_TIMEOUT = 30.0
RETRY_SECONDS = 20

_FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
_DIRECTIVE = re.compile(r"<!--\s*docs:\s*(.*?)\s*-->")
_EXPECT = re.compile(r"#\s*(?:prints|lists)\s+\"([^\"]+)\"")
_BACKGROUND = re.compile(r"(?<![&|])&\s*(#.*)?$")
_DOC_COMMAND = re.compile(r"(?:`|^\s*)(python3? examples/[^`\n]*?)(?:`|\s*$)", re.M)


@attrs.define
class Snippet:
    """One runnable unit: a fenced block (plus the blocks joined to it) or docstring lines."""

    source: str  # "docs/cli.md:24"
    lang: str  # "sh" or "python"
    code: str
    skip: str | None = None
    ports: tuple[int, ...] = ()
    needs: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT

    @property
    def id(self) -> str:
        return self.source


def doc_files(root: Path = ROOT) -> list[Path]:
    files = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    files += sorted((root / "examples").glob("**/README.md"))
    return [f for f in files if f.is_file()]


def _parse_directives(text: str, source: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in (part.strip() for part in re.split(r";(?![^(]*\))", text)):
        word, _, rest = item.partition(" ")
        rest = rest.strip()
        if word == "skip":
            reason = rest.strip("() ")
            if not reason:
                raise ValueError(f"{source}: 'docs: skip' needs a reason: docs: skip (why)")
            out["skip"] = reason
        elif word == "run-with" and rest == "next":
            out["join"] = True
        elif word == "ports":
            out["ports"] = tuple(int(p) for p in rest.split())
        elif word == "needs":
            out["needs"] = tuple(rest.split())
        elif word == "timeout":
            out["timeout"] = float(rest)
        else:
            raise ValueError(f"{source}: unknown docs directive {item!r}")
    return out


def markdown_snippets(path: Path, root: Path = ROOT) -> list[Snippet]:
    rel = path.relative_to(root).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    snippets: list[Snippet] = []
    pending: dict[str, object] = {}  # directives seen since the last fence
    joined: list[tuple[str, str]] = []  # (source, code) waiting for "run-with next"
    i = 0
    while i < len(lines):
        line = lines[i]
        for found in _DIRECTIVE.finditer(line):
            pending.update(_parse_directives(found.group(1), f"{rel}:{i + 1}"))
        fence = _FENCE.match(line)
        if not fence:
            if line.strip() and not _DIRECTIVE.search(line):
                pending = {}  # a directive applies only to the fence right after it
            i += 1
            continue
        indent, marker, lang = fence.group(1), fence.group(2), fence.group(3).lower()
        start = i + 1
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(marker):
            text = lines[i]
            body.append(text[len(indent) :] if text.startswith(indent) else text.lstrip())
            i += 1
        i += 1  # the closing fence
        directives, pending = pending, {}
        kind = "sh" if lang in SHELL_LANGS else "python" if lang in PYTHON_LANGS else None
        if kind is None:
            continue
        source = f"{rel}:{start}"
        code = "\n".join(body) + "\n"
        if directives.get("join"):
            joined.append((source, code))
            continue
        if joined:
            source = "+".join([s for s, _ in joined] + [source])
            code = "".join(c for _, c in joined) + code
            joined = []
        snippets.append(
            Snippet(
                source=source,
                lang=kind,
                code=code,
                skip=directives.get("skip"),  # type: ignore[arg-type]
                ports=directives.get("ports", ()),  # type: ignore[arg-type]
                needs=directives.get("needs", ()),  # type: ignore[arg-type]
                timeout=directives.get("timeout", DEFAULT_TIMEOUT),  # type: ignore[arg-type]
            )
        )
    return snippets


def docstring_snippets(root: Path = ROOT) -> list[Snippet]:
    """The ``python examples/...`` usage lines of each example directory, as one shell script."""
    by_dir: dict[str, list[str]] = {}
    for path in sorted((root / "examples").glob("**/*.py")):
        if "proto" in path.relative_to(root).parts:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        if not doc:
            continue
        commands = [m.group(1).strip() for m in _DOC_COMMAND.finditer(doc)]
        if commands:
            by_dir.setdefault(path.parent.relative_to(root).as_posix(), []).extend(commands)
    snippets = []
    for directory, commands in by_dir.items():
        background = [c for c in commands if _BACKGROUND.search(c)]
        rest = [c for c in commands if not _BACKGROUND.search(c)]
        code = "\n".join(background + rest) + "\n"
        snippets.append(Snippet(source=f"{directory}/*.py docstrings", lang="sh", code=code))
    return snippets


def all_snippets(root: Path = ROOT) -> list[Snippet]:
    out = []
    for path in doc_files(root):
        out += markdown_snippets(path, root)
    return out + docstring_snippets(root)


# -- turning a shell snippet into a checked script ----------------------------------------------

_PRELUDE = r"""set -m
__docs_bg=0
__docs_cleanup() {
    local j
    for j in $(jobs -p); do kill -TERM -- "-$j" 2>/dev/null || kill -TERM "$j" 2>/dev/null; done
    for _ in $(seq 50); do [ -z "$(jobs -pr)" ] && break; sleep 0.1; done
    for j in $(jobs -p); do kill -KILL -- "-$j" 2>/dev/null; done
}
trap __docs_cleanup EXIT
trap 'exit 143' TERM INT
__docs_run() {  # $1 = the command as written, $2 = text its output must contain ("" = none)
    local out rc end=$((SECONDS + __DOCS_RETRY))
    out=$(mktemp)
    while :; do
        rc=0
        eval "$1" >"$out" 2>&1 || rc=$?
        if [ "$rc" = 0 ] && { [ -z "$2" ] || grep -qF -- "$2" "$out"; }; then
            cat "$out"; rm -f "$out"; return 0
        fi
        if [ "$__docs_bg" = 0 ] || [ "$SECONDS" -ge "$end" ]; then
            cat "$out"; rm -f "$out"
            echo "docs: FAILED (exit $rc${2:+, wanted output containing '$2'}): $1" >&2
            exit 1
        fi
        sleep 0.3
    done
}
"""


def logical_lines(code: str) -> Iterator[str]:
    """Commands of a shell block: continuation lines joined, blank and comment-only lines dropped."""
    buf = ""
    # A block with ``$ `` prompts is a console transcript: only prompted lines (and their
    # continuations) are commands, the rest is the output it shows.
    console = any(raw.startswith("$ ") for raw in code.splitlines())
    for raw in code.splitlines():
        line = raw.rstrip()
        if line.startswith("$ "):
            line = line[2:]  # a console prompt
        elif console and not buf:
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        line = buf + line
        buf = ""
        if line.strip() and not line.strip().startswith("#"):
            yield line.strip()
    if buf.strip():
        yield buf.strip()


def shell_script(code: str) -> str:
    out = [_PRELUDE, f"__DOCS_RETRY={RETRY_SECONDS}"]
    for line in logical_lines(code):
        if _BACKGROUND.search(line):
            out += [line, "__docs_bg=1"]
        else:
            expect = _EXPECT.search(line)
            out.append(f"__docs_run {shlex.quote(line)} {shlex.quote(expect.group(1) if expect else '')}")
    return "\n".join(out) + "\n"


# -- running -------------------------------------------------------------------------------------


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def user_env(root: Path, bin_dir: Path) -> dict[str, str]:
    """The environment of a user who ran ``python3 -m pip install -e .`` in ``root``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICRO_") and k != "PYTHONPATH"}
    shim = bin_dir / "trimicro"
    shim.write_text(
        "#!/usr/bin/env bash\n"
        "# this checkout's trimicro console script (see tests/_docsnippets.py)\n"
        f'PYTHONPATH={shlex.quote(str(root))}${{PYTHONPATH:+:$PYTHONPATH}} exec python3 -m trimicro.cli "$@"\n'
    )
    shim.chmod(0o755)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    installed = subprocess.run(
        ["python3", "-c", "import trimicro; print(trimicro.__file__)"],
        cwd=tempfile.gettempdir(),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if Path(installed).resolve().parent.parent != root.resolve():
        env["PYTHONPATH"] = str(root)  # another checkout's editable install: emulate ours
    return env


def _kill_session(sid: int) -> None:
    """Kill every process left in the snippet's session (a daemon the trap could not reach)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:  # fields after ')': state ppid pgrp session
                os.kill(int(stat.parent.name), signal.SIGKILL)


@contextmanager
def _server(name: str, workdir: Path) -> Iterator[str | None]:
    """Start a ``needs`` server on its fixed port; yield a skip reason instead if impossible."""
    if name == "nats":
        ports, binary = (4222,), "nats-server"
        argv = [binary, "-a", "127.0.0.1", "-p", "4222", "-js", "-sd", str(workdir / "js")]
    elif name == "etcd":
        ports, binary = (2379, 2380), "etcd"
        argv = [binary, "--data-dir", str(workdir / "etcd"),
                "--listen-client-urls", "http://127.0.0.1:2379",
                "--advertise-client-urls", "http://127.0.0.1:2379",
                "--listen-peer-urls", "http://127.0.0.1:2380",
                "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
                "--initial-cluster", "default=http://127.0.0.1:2380"]  # fmt: skip
    elif name in ("zookeeper", "kafka"):
        # the test kit's own launcher (the docs tell users the same command); Java, and for Kafka
        # the jars scripts/test.sh fetched, are its requirements: without them it exits at once
        ports, binary = ((2181,) if name == "zookeeper" else (9092,)), "java"
        argv = ["python3", "-m", "trimicro.testing", name, "--serve", str(ports[0])]
    else:
        raise ValueError(f"unknown 'docs: needs {name}'")
    path = subprocess.run(["bash", "-c", f"command -v {binary}"], capture_output=True, text=True).stdout
    if not path.strip():
        yield f"needs {name}: no {binary} binary"
        return
    taken = [p for p in ports if not port_free(p)]
    if taken:
        yield f"needs {name} on 127.0.0.1:{taken[0]}, which is taken"
        return
    log = (workdir / f"{name}.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if argv[0] == "python3":  # the launcher prints its line once the server answers
                if b"serving on" in (workdir / f"{name}.log").read_bytes():
                    break
            else:
                with socket.socket() as sock:
                    if sock.connect_ex(("127.0.0.1", ports[0])) == 0:
                        break
            time.sleep(0.1)
        else:
            text = (workdir / f"{name}.log").read_text()[-2000:]
            if proc.poll() == 3:  # the launcher's NOT_INSTALLED
                yield f"needs {name}: {text.strip().splitlines()[-1]}"
                return
            raise RuntimeError(f"{name} did not start: {text}")
        yield None
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@attrs.frozen
class Outcome:
    returncode: int | None  # None: timed out
    output: str
    skipped: str | None = None


def run(snippet: Snippet, root: Path = ROOT) -> Outcome:
    """Run one snippet as a user would, bounded by ``snippet.timeout``."""
    for port in snippet.ports:
        if not port_free(port):
            return Outcome(None, "", skipped=f"port 127.0.0.1:{port} is taken")
    with tempfile.TemporaryDirectory(prefix="docsnippet-") as tmp:
        work = Path(tmp)
        (work / "bin").mkdir()
        env = user_env(root, work / "bin")
        if snippet.lang == "python":
            (work / "snippet.py").write_text(snippet.code)
            argv = ["python3", str(work / "snippet.py")]
        else:
            (work / "snippet.sh").write_text(shell_script(snippet.code))
            argv = ["bash", str(work / "snippet.sh")]
        with _servers(snippet.needs, work) as skipped:
            if skipped:
                return Outcome(None, "", skipped=skipped)
            proc = subprocess.Popen(
                argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            try:
                output, _ = proc.communicate(timeout=snippet.timeout)
                code: int | None = proc.returncode
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    output, _ = proc.communicate(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    output, _ = proc.communicate()
                code = None
            finally:
                _kill_session(proc.pid)
    return Outcome(code, output.decode(errors="replace"))


@contextmanager
def _servers(names: tuple[str, ...], work: Path) -> Iterator[str | None]:
    if not names:
        yield None
        return
    with _server(names[0], work) as skipped:
        if skipped:
            yield skipped
            return
        with _servers(names[1:], work) as rest:
            yield rest
