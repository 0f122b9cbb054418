"""The gossip registry across network namespaces: N=5 simulated hosts on a bridge, as root.

The whole scenario runs under ``unshare -n -m --fork`` (a private network and mount namespace of this
test): per-host namespaces on veth pairs, addresses 10.77.0.x that exist only in there and no default
route, so no packet can leave it. Everything is time-bounded and stops by itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trimicro.registry.gossip import SwimConfig

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def test_gossip_across_namespaces() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for unshare -n and ip netns")
    if not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs unshare and ip (util-linux, iproute2)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "N": "5"}
    proc = subprocess.run(
        ["timeout", "100", "unshare", "-n", "-m", "--fork", "--kill-child", "bash", str(HERE / "_gossip_netns.sh")],
        env=env, capture_output=True, timeout=110, check=False,
    )  # fmt: skip
    if proc.returncode == 77:
        pytest.skip(f"cannot build namespaces here: {proc.stderr.decode()[-300:]}")
    lines = [line for line in proc.stdout.decode().splitlines() if line.startswith("{")]
    assert lines, f"no result (exit {proc.returncode}): {proc.stderr.decode()[-2000:]}"
    result = json.loads(lines[-1])
    print(result, file=sys.stderr)
    assert result["ok"], result
    member_config = SwimConfig(probe_interval=0.2, probe_timeout=0.1, gossip_interval=0.1)
    # the kill is seen after detection plus the members' 0.1 s view refresh
    assert result["kill_detected_s"] <= member_config.detection_bound(5) + 1.0, result
