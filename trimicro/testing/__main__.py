"""``python3 -m trimicro.testing zookeeper|kafka --serve [PORT]``: a real server on loopback, for trying things.

nats-server and etcd are one command each; ZooKeeper (Debian's jars) and Kafka (jars from Maven
Central) need a generated config, a data dir and a Java command line, which the test helpers already
write. This runs the same helper until Ctrl-C/SIGTERM, then stops the server and removes its files.
``kafka --fetch`` only fetches Kafka's jars into the cache (``scripts/test.sh`` does that once).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import AbstractAsyncContextManager
from functools import partial

import trio

from ._process import serve_until_signalled
from .kafka import KafkaNotFound, ensure_kafka, open_kafka
from .zookeeper import ZookeeperNotFound, open_zookeeper

__all__: list[str] = []

DEFAULT_PORTS = {"zookeeper": 2181, "kafka": 9092}
NOT_INSTALLED = 3  # exit status when Java, the jars or Maven are missing (callers may skip, not fail)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m trimicro.testing", description=__doc__.split("\n")[0])
    parser.add_argument("server", choices=sorted(DEFAULT_PORTS))
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--serve", nargs="?", type=int, const=0, metavar="PORT",
                      help="serve on 127.0.0.1:PORT (default: the server's usual port)")  # fmt: skip
    mode.add_argument("--fetch", action="store_true", help="kafka: only fetch the jars")
    args = parser.parse_args(argv)
    try:
        if args.fetch:
            if args.server != "kafka":
                parser.error("--fetch is for kafka")
            print(trio.run(ensure_kafka))
            return 0
        port = args.serve or DEFAULT_PORTS[args.server]
        server: AbstractAsyncContextManager[object] = (
            open_kafka(port=port) if args.server == "kafka" else open_zookeeper(port=port)
        )
        trio.run(partial(serve_until_signalled, server, args.server, f"127.0.0.1:{port}"))
    except (KafkaNotFound, ZookeeperNotFound) as exc:
        print(f"{args.server}: {exc}", file=sys.stderr)
        return NOT_INSTALLED
    except Exception as exc:  # a start that failed (port taken, Java error): one line, no traceback
        err: BaseException = exc
        while isinstance(err, BaseExceptionGroup) and len(err.exceptions) == 1:
            err = err.exceptions[0]  # trio's nurseries wrap what the helper raised
        print(f"{args.server}: did not start: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
