"""Scenario driver, run by _gossip_netns.sh inside the test's private namespace: start N members (one
per host namespace), wait for convergence, SIGKILL one, partition one (its veth down) and heal it.
Prints one JSON line with the measured times; exits non-zero on a timeout. Bounded throughout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
LIFETIME = 80.0  # members exit by themselves after this even if nobody kills them


def main(n: int) -> int:
    tmp = tempfile.mkdtemp(prefix="gossip-netns-")
    hosts = [f"10.77.0.{i}" for i in range(1, n + 1)]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    result: dict[str, object] = {"n": n}

    def view(h: str) -> set[str] | None:
        try:
            with open(os.path.join(tmp, h)) as f:
                return set(json.load(f)["nodes"])
        except (OSError, ValueError):
            return None

    def wait(what: str, check: Callable[[], bool], timeout: float) -> float:
        t0 = time.monotonic()
        while not check():
            if time.monotonic() - t0 > timeout:
                views = {h: sorted(view(h) or ()) for h in hosts}
                raise TimeoutError(f"{what}: not within {timeout}s; views {views}")
            time.sleep(0.05)
        return round(time.monotonic() - t0, 2)

    def all_see(members: list[str], expected: set[str]) -> Callable[[], bool]:
        return lambda: all(view(h) == expected for h in members)

    try:
        for i, h in enumerate(hosts):
            seeds = "10.77.0.1:7946" if i else ""
            procs[h] = subprocess.Popen(
                ["ip", "netns", "exec", f"h{i + 1}", sys.executable, os.path.join(HERE, "_gossip_member.py"),
                 f"{h}:7946", seeds, os.path.join(tmp, h), str(LIFETIME)],
            )  # fmt: skip
        result["converge_s"] = wait("converge", all_see(hosts, set(hosts)), 20)
        # SIGKILL the 4th host's member: no goodbye, the others must detect it
        victim = hosts[3]
        procs[victim].kill()
        procs[victim].wait(5)
        live = [h for h in hosts if h != victim]
        result["kill_detected_s"] = wait("kill detected", all_see(live, set(live)), 30)
        # partition the 5th host: its link to the bridge goes down
        iso = hosts[4]
        rest = [h for h in live if h != iso]
        subprocess.run(["ip", "link", "set", f"veth{n}", "down"], check=True)
        result["partition_detected_s"] = wait(
            "partition seen",
            lambda: all_see(rest, set(rest))() and view(iso) == {iso},
            30,
        )
        subprocess.run(["ip", "link", "set", f"veth{n}", "up"], check=True)
        result["heal_s"] = wait("heal", all_see(live, set(live)), 30)
        result["ok"] = True
    except TimeoutError as exc:
        result["ok"] = False
        result["error"] = str(exc)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
        for p in procs.values():
            p.wait(5)
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
