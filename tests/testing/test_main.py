"""``python3 -m trimicro.testing zookeeper|kafka --serve``: starts, answers, stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from functools import partial

import pytest
import trio

from trimicro.registry import zookeeper_answers
from trimicro.testing import free_port
from trimicro.testing.zookeeper import ZookeeperNotFound, find_zookeeper


def test_usage_errors_are_one_line() -> None:
    out = subprocess.run([sys.executable, "-m", "trimicro.testing", "zookeeper", "--fetch"],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert out.returncode == 2 and "--fetch is for kafka" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.loopback
@pytest.mark.timeout(60)
async def test_zookeeper_serves_until_sigterm_then_cleans_up() -> None:
    try:
        find_zookeeper()
    except ZookeeperNotFound as exc:
        pytest.skip(str(exc))
    port = free_port()
    argv = [sys.executable, "-m", "trimicro.testing", "zookeeper", "--serve", str(port)]
    async with trio.open_nursery() as nursery:
        run = partial(trio.run_process, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        proc: trio.Process = await nursery.start(run)
        assert proc.stdout is not None
        with trio.fail_after(40):
            line = b""
            while b"\n" not in line:
                line += await proc.stdout.receive_some()
        assert f"serving on 127.0.0.1:{port}".encode() in line
        assert await zookeeper_answers("127.0.0.1", port)
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            await proc.wait()
        assert proc.returncode == 0
        assert not await zookeeper_answers("127.0.0.1", port)  # the Java child went with it


def test_kafka_cluster_ids_never_look_like_an_option(monkeypatch: pytest.MonkeyPatch) -> None:
    # a uuid whose base64 starts with "-" (0xf8 as the first byte) is drawn again, as Kafka does
    import uuid

    from trimicro.testing import kafka

    drawn = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=bytes(16))])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(drawn))
    assert kafka._cluster_id() == "AAAAAAAAAAAAAAAAAAAAAA"
