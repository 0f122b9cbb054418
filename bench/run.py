"""The benchmark suite: trimicro against grpcio, grpc.aio, purerpc and raw-trio floors.

    python -m bench.run [--smoke] [--rounds 3] [--seconds 2] [--only unary_c1,stream]
                        [--impls trimicro-mucp,grpcio] [--write-docs] [--json out.json]

Every implementation's server runs in its own process pinned to CPU 0 and every measurement's client
in its own process pinned to CPU 1 (when the machine has two CPUs), all on 127.0.0.1. Rounds are
interleaved (round 1 of every implementation, then round 2, ...) so slow drift hits all columns alike.
Each measurement is bounded by time *and* count. ``--smoke`` runs every scenario for a tiny count to
keep the harness working (CI); its numbers mean nothing and it never judges timing.

purerpc 0.8 needs h2 < 4 (trimicro needs h2 >= 4), so it runs from its own virtualenv:
``python -m bench.run --setup-purerpc`` creates it (``$BENCH_PURERPC_PYTHON`` overrides the path).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench._drive import rss_mib

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
CHART = ROOT / "docs" / "benchmarks.png"
PURERPC_VENV = pathlib.Path.home() / ".cache" / "trimicro-bench" / "purerpc-venv"
PURERPC_VERSION = "0.8.0"
START_MARK = "<!-- bench:results:start -->"
END_MARK = "<!-- bench:results:end -->"


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    driver: str  # the _drive scenario
    metric: str
    unit: str
    full: dict[str, Any]
    smoke: dict[str, Any]
    timed: bool = True  # full params get --seconds
    memory: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


SCENARIOS = [
    Scenario("unary_c1", "unary small, concurrency 1, calls/s (p50 µs)", "unary", "calls_per_s", "calls/s",
             {"size": 0, "concurrency": 1, "max_calls": 1_000_000},
             {"size": 0, "concurrency": 1, "max_calls": 50, "seconds": 5}),
    Scenario("unary_c64", "unary small, concurrency 64, calls/s", "unary", "calls_per_s", "calls/s",
             {"size": 0, "concurrency": 64, "max_calls": 1_000_000},
             {"size": 0, "concurrency": 64, "max_calls": 200, "seconds": 5}),
    Scenario("unary_64k_c8", "unary 64 KiB, concurrency 8, MiB/s", "unary", "mib_per_s", "MiB/s",
             {"size": 65536, "concurrency": 8, "max_calls": 1_000_000},
             {"size": 65536, "concurrency": 8, "max_calls": 40, "seconds": 5}),
    Scenario("stream", "server streaming 100k small msgs, msgs/s", "stream", "msgs_per_s", "msgs/s",
             {"count": 100_000}, {"count": 500, "seconds": 5}),
    Scenario("stream_coalesced", "same, floor writes coalesced to 16 KiB, msgs/s", "stream", "msgs_per_s",
             "msgs/s", {"count": 100_000, "coalesce": True}, {"count": 500, "seconds": 5, "coalesce": True}),
    Scenario("bidi", "bidi ping-pong, round trips/s (p50 µs)", "bidi", "rt_per_s", "round trips/s",
             {"max_round_trips": 1_000_000}, {"max_round_trips": 50, "seconds": 5}),
    Scenario("idle_conns", "server RSS with 1,000 idle client connections, MiB", "idle_conns",
             "server_rss_mib", "MiB", {"n": 1000}, {"n": 20}, timed=False, memory=True),
    Scenario("open_streams", "server RSS with 1,000 open streams, MiB", "open_streams", "server_rss_mib",
             "MiB", {"n": 1000}, {"n": 20}, timed=False, memory=True),
]  # fmt: skip
BY_NAME = {s.name: s for s in SCENARIOS}

_ALL = {s.name for s in SCENARIOS} - {"stream_coalesced"}
_FLOOR = {"unary_c1", "unary_c64", "unary_64k_c8", "stream", "stream_coalesced", "idle_conns"}
_GO = {"unary_c1", "unary_c64", "unary_64k_c8", "bidi"}
_OBSERVED = {"unary_c1", "unary_c64"}
GO_BUILD = ROOT / "bench" / "go" / "build.sh"


@dataclass(frozen=True)
class Impl:
    name: str
    label: str
    scenarios: frozenset[str]
    python: str = sys.executable
    note: str = ""
    #: in a run without ``--impls``; the observability columns are asked for by name
    default: bool = True


def _purerpc_python() -> str:
    return os.environ.get("BENCH_PURERPC_PYTHON") or str(PURERPC_VENV / "bin" / "python")


def implementations() -> list[Impl]:
    return [
        Impl("trimicro-mucp", "trimicro mucp/HTTP1.1", frozenset(_ALL)),
        Impl("trimicro-grpc", "trimicro gRPC/h2", frozenset(_ALL)),
        Impl("grpcio", "grpcio sync", frozenset(_ALL)),
        Impl("grpc-aio", "grpc.aio", frozenset(_ALL)),
        Impl("purerpc", f"purerpc {PURERPC_VERSION} (trio)", frozenset(_ALL), python=_purerpc_python()),
        Impl("floor-h11", "trio + h11 floor", frozenset(_FLOOR)),
        Impl(
            "floor-h2",
            "trio + h2 floor",
            frozenset((_FLOOR - {"stream_coalesced"}) | {"bidi", "open_streams"}),
        ),
        Impl("floor-tcp", "trio raw TCP floor", frozenset(_FLOOR | {"bidi"})),
        # Go Micro v5.30.0 (bench/go): its own server and client, and its client against our mucp server.
        Impl("go-micro", "Go Micro v5 (Go client → Go server)", frozenset(_GO)),
        Impl("go-client-mucp", "Go Micro client → trimicro mucp", frozenset(_GO)),
        # the observability wrappers on both ends (bench/impl_trimicro.py, BENCH_OBSERVE): asked for
        # by name, measured in the same rounds as trimicro-mucp so their ratios share its noise
        *(
            Impl(f"trimicro-mucp+{part}", f"trimicro mucp + {label}", frozenset(_OBSERVED), default=False)
            for part, label in (
                ("tracing", "tracing"),
                ("metrics", "Prometheus metrics"),
                ("otel_metrics", "OTel metrics"),
            )
        ),
    ]


_go_build: list[str | None] = []  # the one build's outcome: None (built) or why not


def _build_go() -> str | None:
    """Build bench/go/bin/gobench once per run (an up-to-date build is a cached no-op for Go)."""
    if not _go_build:
        go = shutil.which("go") or (
            "/usr/local/go/bin/go" if os.path.exists("/usr/local/go/bin/go") else None
        )
        if go is None:
            _go_build.append("Go is not installed (bench/go/build.sh needs Go >= 1.24)")
        else:
            env = {**os.environ, "GO": go}
            out = subprocess.run(
                ["bash", str(GO_BUILD)], capture_output=True, text=True, timeout=900, env=env
            )
            tail = (out.stderr.strip().splitlines() or ["?"])[-1]
            _go_build.append(f"bench/go/build.sh failed: {tail}" if out.returncode else None)
    return _go_build[0]


def unavailable(impl: Impl) -> str | None:
    """Why ``impl`` cannot run here, or None."""
    if impl.name.startswith("go-"):
        return _build_go()
    if impl.name == "purerpc":
        if not pathlib.Path(impl.python).exists():
            return "no purerpc virtualenv (python -m bench.run --setup-purerpc)"
        probe = subprocess.run(
            [impl.python, "-c", "import purerpc, anyio, trio"], capture_output=True, text=True, timeout=60
        )
        if probe.returncode:
            return "purerpc does not import: " + (probe.stderr.strip().splitlines() or ["?"])[-1]
    if impl.name == "trimicro-grpc":
        probe = subprocess.run(
            [sys.executable, "-c", "import trimicro.transport.grpc, trimicro.server._grpc"],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        if probe.returncode:
            return "gRPC transport not importable: " + (probe.stderr.strip().splitlines() or ["?"])[-1]
    return None


def setup_purerpc() -> None:
    """A virtualenv seeing the system packages (protobuf, trio) but with purerpc's own h2 < 4."""
    PURERPC_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(PURERPC_VENV)], check=True)
    pip = [str(PURERPC_VENV / "bin" / "python"), "-m", "pip", "install", "-q", f"purerpc=={PURERPC_VERSION}"]
    subprocess.run(pip, check=True)


# -- processes ----------------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONHASHSEED", "0")
    return env


class _Lines:
    """Lines from a child's stdout with a deadline (select on the raw fd: no hidden buffering)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.buf = b""
        self.eof = False

    def readline(self, deadline: float) -> str | None:
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if self.eof or left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 65536)
                self.eof = not chunk
                self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    for f in (proc.stdout, getattr(proc, "_bench_err", None)):
        if f is not None:
            f.close()


def _spawn(cmd: list[str]) -> subprocess.Popen[bytes]:
    """Start a child; its stderr goes to a file (a pipe nobody reads could fill up and stall it)."""
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=err)
    proc._bench_err = err  # type: ignore[attr-defined]
    return proc


def _stderr_tail(proc: subprocess.Popen[bytes]) -> str:
    errors = getattr(proc, "_bench_err", None)
    if errors is None:
        return ""
    errors.seek(0)
    text = errors.read().decode(errors="replace")
    lines = [c for ln in text.splitlines() if (c := ln.strip(" |+-\t"))]
    return lines[-1] if lines else ""


@contextlib.contextmanager
def server(impl: Impl, cpu: int) -> Iterator[tuple[str, int]]:
    cmd = [impl.python, "-m", "bench._proc", "serve", impl.name, str(cpu)]
    proc = _spawn(cmd)
    try:
        line = _Lines(proc).readline(time.monotonic() + 30)
        if not line or not line.startswith("PORT "):
            proc.kill()
            raise RuntimeError(f"{impl.name} server did not start: {line!r} {_stderr_tail(proc)}")
        yield f"127.0.0.1:{int(line.split()[1])}", proc.pid
    finally:
        _stop(proc)


def measure(
    impl: Impl,
    address: str,
    server_pid: int,
    sc: Scenario,
    params: dict[str, Any],
    cpu: int,
    smoke: bool = False,
) -> dict[str, Any]:
    """One client process, one measurement; RuntimeError (with the client's last words) if it fails."""
    params = {**params, "cpu": cpu}
    limit = float(params.get("seconds", 0)) + (20 if smoke else 45 if sc.memory else 60)
    cmd = [impl.python, "-m", "bench._proc", "client", impl.name, address, sc.driver, json.dumps(params)]
    proc = _spawn(cmd)
    deadline = time.monotonic() + limit
    lines = _Lines(proc)
    result: dict[str, Any] | None = None
    try:
        while True:
            line = lines.readline(deadline)
            if line is None:
                break
            if line.startswith("RESULT "):
                result = json.loads(line[7:])
                if not sc.memory:
                    break
            elif line.startswith("READY") and result is not None:
                time.sleep(0.2)  # let the server settle after the last request
                result["server_rss_mib"] = rss_mib(server_pid)
                break
        if proc.poll() is None and not sc.memory:
            proc.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        pass
    finally:
        if result is None or (sc.memory and "server_rss_mib" not in result):
            running = proc.poll() is None
            tail = _stderr_tail(proc)
            _stop(proc)
            raise RuntimeError(
                ("timed out; " if running else "") + (tail or f"client exited {proc.returncode}")
            )
        _stop(proc)
    return result


# -- the run ------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    impls = implementations()
    if args.impls:
        wanted = args.impls.split(",")
        unknown = sorted(set(wanted) - {i.name for i in impls})
        if unknown:  # a typo must not silently drop a column
            raise SystemExit(
                f"unknown --impls {', '.join(unknown)}; known: {', '.join(i.name for i in impls)}"
            )
        impls = [i for i in impls if i.name in wanted]
    else:
        impls = [i for i in impls if i.default]
    scenarios = SCENARIOS if not args.only else [BY_NAME[n] for n in args.only.split(",")]
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    server_cpu, client_cpu = (cpus[0], cpus[1]) if len(cpus) > 1 else (cpus[0], cpus[0])
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {client_cpu})
    rounds = 1 if args.smoke else args.rounds
    results: dict[str, dict[str, list[dict[str, Any]]]] = {i.name: {} for i in impls}
    errors: dict[str, dict[str, str]] = {i.name: {} for i in impls}
    skipped: dict[str, str] = {}
    for impl in impls:
        reason = unavailable(impl)
        if reason:
            skipped[impl.name] = reason
            log(f"{impl.name}: n/a ({reason})")
    started = time.monotonic()
    for rnd in range(rounds):
        for impl in impls:
            if impl.name in skipped:
                continue
            # Memory is deterministic enough for one round (and 1,000 connections are slow to open).
            todo = [s for s in scenarios if s.name in impl.scenarios and (rnd == 0 or not s.memory)]
            plain = [s for s in todo if not s.memory]
            memory = [s for s in todo if s.memory]
            # A fresh server per memory measurement (Python keeps the memory it once used).
            groups = [todo] if args.smoke else ([plain] if plain else []) + [[s] for s in memory]
            for group in groups:
                try:
                    with server(impl, server_cpu) as (address, pid):
                        for sc in group:
                            _one(impl, sc, address, pid, args, client_cpu, rnd, results, errors)
                except RuntimeError as exc:
                    for sc in group:
                        errors[impl.name].setdefault(sc.name, str(exc))
                        log(f"{impl.name} {sc.name}: {exc}")
    return {
        "machine": machine(),
        "smoke": args.smoke,
        "rounds": rounds,
        "seconds": args.seconds,
        "elapsed_s": time.monotonic() - started,
        "impls": [{"name": i.name, "label": i.label} for i in impls],
        "scenarios": [s.name for s in scenarios],
        "results": results,
        "errors": errors,
        "skipped": skipped,
    }


def _one(
    impl: Impl, sc: Scenario, address: str, pid: int, args: argparse.Namespace, cpu: int, rnd: int,
    results: dict[str, dict[str, list[dict[str, Any]]]], errors: dict[str, dict[str, str]],
) -> None:  # fmt: skip
    params = dict(sc.smoke if args.smoke else sc.full)
    if sc.timed and not args.smoke:
        params["seconds"] = args.seconds * (2.5 if sc.driver == "stream" else 1)
    try:
        res = measure(impl, address, pid, sc, params, cpu, args.smoke)
    except RuntimeError as exc:
        errors[impl.name][sc.name] = str(exc)
        log(f"round {rnd + 1} {impl.name:14} {sc.name:16} ERROR {exc}")
        return
    results[impl.name].setdefault(sc.name, []).append(res)
    value = res.get(sc.metric, float("nan"))
    extra = f" p50 {res['p50_us']:.0f} µs" if "p50_us" in res else ""
    log(f"round {rnd + 1} {impl.name:14} {sc.name:16} {value:12,.1f} {sc.unit}{extra}")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _version(python: str, module: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({module!r}))"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    return out.stdout.strip() or "n/a"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {m: _version(sys.executable, m) for m in ("trio", "h11", "h2", "grpcio", "protobuf")}
    py = _purerpc_python()
    versions["purerpc"] = _version(py, "purerpc") if pathlib.Path(py).exists() else "n/a"
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


# -- reporting ----------------------------------------------------------------------------------------


def _metric(sc: Scenario, runs: list[dict[str, Any]]) -> list[float]:
    return [float(r[sc.metric]) for r in runs if sc.metric in r]


def median(data: dict[str, Any], impl: str, scenario: str, metric: str | None = None) -> float | None:
    runs = data["results"].get(impl, {}).get(scenario, [])
    key = metric or BY_NAME[scenario].metric
    vals = [float(r[key]) for r in runs if key in r]
    return statistics.median(vals) if vals else None


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}"


def cell(data: dict[str, Any], impl: Impl | dict[str, Any], sc: Scenario) -> str:
    name = impl["name"] if isinstance(impl, dict) else impl.name
    if name in data["skipped"]:
        return "n/a"
    runs = data["results"].get(name, {}).get(sc.name, [])
    if not runs:
        return "error" if sc.name in data["errors"].get(name, {}) else ""
    vals = _metric(sc, runs)
    text = _fmt(statistics.median(vals))
    if len(vals) > 1:
        text += f" ({_fmt(min(vals))}-{_fmt(max(vals))})"
    if sc.driver in ("unary", "bidi") and sc.name != "unary_c64" and sc.name != "unary_64k_c8":
        text += f"<br>p50 {statistics.median(float(r['p50_us']) for r in runs):,.0f} µs"
    return text


def table(data: dict[str, Any]) -> str:
    impls = data["impls"]
    head = "| scenario | " + " | ".join(i["label"] for i in impls) + " |"
    rows = [head, "|---|" + "---|" * len(impls)]
    for name in data["scenarios"]:
        sc = BY_NAME[name]
        rows.append(f"| {sc.label} | " + " | ".join(cell(data, i, sc) for i in impls) + " |")
    return "\n".join(rows)


TARGETS = [
    ("unary small c=64: trimicro mucp >= 1.5x grpcio sync", "unary_c64", "trimicro-mucp", "grpcio", 1.5, None),
    ("unary small c=64: trimicro gRPC/h2 >= grpc.aio", "unary_c64", "trimicro-grpc", "grpc-aio", 1.0, None),
    ("unary small c=1: trimicro mucp p50 <= grpcio sync p50", "unary_c1", "trimicro-mucp", "grpcio", 1.0, "p50_us"),
    ("unary 64 KiB: trimicro mucp >= grpcio sync MiB/s", "unary_64k_c8", "trimicro-mucp", "grpcio", 1.0, None),
    ("unary 64 KiB: trimicro gRPC/h2 >= grpcio sync MiB/s", "unary_64k_c8", "trimicro-grpc", "grpcio", 1.0, None),
    ("server streaming: trimicro mucp >= 5x grpcio sync", "stream", "trimicro-mucp", "grpcio", 5.0, None),
    ("server streaming: trimicro gRPC/h2 >= 5x grpcio sync", "stream", "trimicro-grpc", "grpcio", 5.0, None),
]  # fmt: skip


def targets(data: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    out: list[tuple[str, str, bool | None]] = []
    for label, scenario, ours, theirs, want, metric in TARGETS:
        a, b = median(data, ours, scenario, metric), median(data, theirs, scenario, metric)
        if a is None or b is None or b == 0:
            out.append((label, "not measured", None))
            continue
        if metric == "p50_us":  # lower is better
            out.append((label, f"{a:,.0f} µs vs {b:,.0f} µs", a <= b))
        else:
            out.append((label, f"{a / b:.2f}x", a / b >= want))
    return out


def report(data: dict[str, Any]) -> str:
    m = data["machine"]
    v = ", ".join(f"{k} {val}" for k, val in m["versions"].items())
    lines = [
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, Python {m['python']} ({m['platform']}); {v}.",
        f"Rounds: {data['rounds']}, {data['seconds']} s per timed measurement (streams 2.5x); "
        f"medians (min-max); run took {data['elapsed_s']:.0f} s.",
        "",
        table(data),
        "",
    ]
    for name, reason in data["skipped"].items():
        lines.append(f"- {name}: n/a: {reason}")
    for name, errs in data["errors"].items():
        for sc, err in errs.items():
            lines.append(f"- {name} {sc}: error: {err}")
    if data["smoke"]:
        # A smoke run proves the harness and every implementation still run; its tiny counts on a
        # busy CI machine say nothing about speed, so it judges no target.
        lines += [
            "",
            "Smoke run: tiny counts, one round. These numbers mean nothing about performance;",
            "the full benchmark is `python3 -m bench.run` (docs/benchmarks.md).",
        ]
        return "\n".join(lines)
    lines += ["", "Targets (ratios from this run):", ""]
    for label, value, ok in targets(data):
        mark = "n/a" if ok is None else ("met" if ok else "**not met**")
        lines.append(f"- {label}: {value}: {mark}")
    return "\n".join(lines)


def chart(data: dict[str, Any], path: pathlib.Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no chart (pip install matplotlib)")
        return False
    names = [s for s in data["scenarios"] if s != "stream_coalesced"]
    impls = data["impls"]
    cols = 2
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        sc = BY_NAME[name]
        labels, values = [], []
        for i in impls:
            val = median(data, i["name"], name)
            if val is not None:
                labels.append(i["label"])
                values.append(val)
        colors = ["tab:green" if lab.startswith("trimicro") else "tab:gray" for lab in labels]
        ax.barh(labels, values, color=colors)
        ax.invert_yaxis()
        ax.set_title(sc.label + (" (lower is better)" if sc.memory else ""), fontsize=9)
        ax.tick_params(labelsize=8)
        for y, val in enumerate(values):
            ax.text(val, y, " " + _fmt(val), va="center", fontsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write_docs(data: dict[str, Any], text: str) -> None:
    has_chart = chart(data, CHART)
    block = [START_MARK, "", text, ""]
    if has_chart:
        block += [f"![benchmark chart]({CHART.name})", ""]
    block.append(END_MARK)
    body = DOCS.read_text() if DOCS.exists() else f"# Benchmarks\n\n{START_MARK}\n{END_MARK}\n"
    start, end = body.find(START_MARK), body.find(END_MARK)
    if start < 0 or end < 0:
        body = body.rstrip() + "\n\n" + "\n".join(block) + "\n"
    else:
        body = body[:start] + "\n".join(block) + body[end + len(END_MARK) :]
    DOCS.write_text(body)
    log(f"wrote {DOCS.relative_to(ROOT)}" + (f" and {CHART.relative_to(ROOT)}" if has_chart else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--smoke", action="store_true", help="tiny counts, one round: keeps the harness working"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.5, help="length of each timed measurement")
    parser.add_argument("--only", default="", help="comma-separated scenarios: " + ",".join(BY_NAME))
    parser.add_argument("--impls", default="", help="comma-separated implementations")
    parser.add_argument(
        "--write-docs", action="store_true", help="put the table and chart in docs/benchmarks.md"
    )
    parser.add_argument("--json", default="", help="also write the raw results here")
    parser.add_argument("--from-json", default="", help="report (and --write-docs) a saved --json run")
    parser.add_argument("--setup-purerpc", action="store_true", help="create the purerpc virtualenv and exit")
    args = parser.parse_args(argv)
    if args.setup_purerpc:
        setup_purerpc()
        return 0
    # SIGTERM unwinds like Ctrl-C, so every child process we started is stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    data = json.loads(pathlib.Path(args.from_json).read_text()) if args.from_json else run(args)
    text = report(data)
    print(text)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(data, indent=1))
    if args.write_docs and not data["smoke"]:
        write_docs(data, text)
    # Smoke mode judges only that every available implementation ran every scenario it supports.
    failed = sum(len(e) for e in data["errors"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
