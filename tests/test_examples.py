"""Every example runs to completion (as a subprocess, each with its own protobuf descriptor pool)."""

from __future__ import annotations

import os
import sys

import pytest
import trio

EXAMPLES = {
    "examples/streaming/chat.py": "feed: 2",
    "examples/wrappers/wrappers.py": "Hello John (trace abc123)",
    "examples/filters/filters.py": "zone b: {'v2.0.0/b': 30}",
    "examples/function/function.py": "function exited after one call",
    "examples/observability/observability.py": 'micro_request_errors_total{code="400"',
}


@pytest.mark.loopback
@pytest.mark.parametrize(("path", "expected"), sorted(EXAMPLES.items()))
async def test_example_runs(path, expected):
    env = dict(os.environ, MICRO_REGISTRY="memory")  # no PYTHONPATH: run exactly as the docs say
    with trio.fail_after(60):
        result = await trio.run_process(
            [sys.executable, path], capture_stdout=True, capture_stderr=True, env=env, check=False
        )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert expected in result.stdout.decode()


@pytest.mark.loopback
async def test_greeter_demo_two_processes_over_mdns():
    with trio.fail_after(90):
        result = await trio.run_process(
            ["bash", "examples/greeter/demo.sh"], capture_stdout=True, capture_stderr=True, check=False
        )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert result.stdout.decode().strip().splitlines()[-1] == "Hello John"
