"""A 30 s version of the soak (tests/cluster/soak.py): mixed unary, bidi-stream and pub/sub load on
two real node processes over a real etcd. Checked loosely, for flatness rather than speed: nothing
failed, every published message reached both subscribers, and once the load stops the nodes' open
fds and live tasks are back near where they started and RSS grew by less than a generous bound.
"""

from __future__ import annotations

import pytest

from tests.cluster.soak import run_soak
from trimicro.testing.etcd import EtcdNotFound, find_etcd

pytestmark = [pytest.mark.loopback, pytest.mark.timeout(100)]


async def test_a_short_soak_leaks_no_fds_tasks_or_memory() -> None:
    try:
        find_etcd()
    except EtcdNotFound as exc:
        pytest.skip(str(exc))
    samples, counts, received = await run_soak(30, interval=3)
    print(counts, received)
    assert counts.unary_failed == counts.streams_failed == counts.publish_failed == 0, counts
    assert counts.unary_ok and counts.streams_ok and counts.published
    assert received == [counts.published, counts.published]
    for node in (0, 1):
        mine = [s for s in samples if s.node == node]
        first, last = mine[0], mine[-1]
        assert last.fds <= first.fds + 8, mine
        assert 0 < last.tasks <= first.tasks + 16, mine
        assert last.rss_kb <= first.rss_kb + 40 * 1024, mine
