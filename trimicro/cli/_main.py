"""``trimicro services | describe NAME | call SVC ENDPOINT JSON | health SVC | publish TOPIC JSON | api``.

Global options are the usual flags/env (``--registry etcd --registry_address 127.0.0.1:2379``,
``MICRO_REGISTRY=...``): anything after the sub-command that looks like ``--x_y`` is an option.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from .._util import collapse_excgroups
from ..config import Options
from ..errors import MicroError
from ..service import open_client

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trimicro", description="Inspect and call trimicro / Go Micro services.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("services", help="list registered services")
    d = sub.add_parser("describe", help="print a service's registry record (Go Micro JSON)")
    d.add_argument("service")
    c = sub.add_parser("call", help="call an endpoint with a JSON request")
    c.add_argument("service")
    c.add_argument("endpoint", help="Handler.Method")
    c.add_argument("request", nargs="?", default="{}")
    c.add_argument("--timeout", type=float, default=None)
    c.add_argument("--address", default=None, help="call this host:port, bypassing discovery")
    c.add_argument("--metadata", action="append", default=[], help="k=v, repeatable")
    h = sub.add_parser("health", help="call Debug.Health on a service")
    h.add_argument("service")
    h.add_argument("--address", default=None)
    pub = sub.add_parser("publish", help="publish a JSON message on a topic")
    pub.add_argument("topic")
    pub.add_argument("message")
    a = sub.add_parser("api", help="run the HTTP/websocket gateway (Go Micro's `micro api`)")
    a.add_argument("--address", default="127.0.0.1:8080", help="host:port to listen on (':8080' is loopback)")
    a.add_argument("--namespace", default="", help="prefix for service names, e.g. go.micro.api")
    return p


async def _api(client: Any, args: argparse.Namespace) -> None:
    """Serve the gateway until SIGINT/SIGTERM, then drain (``server_grace_period``) and return."""
    from ..api import Gateway

    gateway = Gateway(client, namespace=args.namespace, grace=client.options.server_grace_period)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            with collapse_excgroups():
                async with trio.open_nursery() as nursery:

                    async def serve(task_status: trio.TaskStatus[str]) -> None:
                        await gateway.serve(args.address, task_status=task_status)
                        nursery.cancel_scope.cancel()  # drained: stop listening for signals too

                    bound = await nursery.start(serve)
                    print(f"api gateway listening on http://{bound}", flush=True)

                    async def on_signals() -> None:
                        # first signal: drain; a second one: stop now
                        async for _ in signals:
                            if gateway.stopping:
                                nursery.cancel_scope.cancel()
                                return
                            gateway.stop()

                    nursery.start_soon(on_signals)
        except (OSError, ValueError) as exc:  # address in use, malformed --address
            raise SystemExit(f"trimicro api: cannot listen on {args.address}: {exc}") from None


async def _run(args: argparse.Namespace, options: list[str]) -> int:
    async with open_client(argv=options, client_content_type="application/json") as client:
        selector: Any = client.selector
        registry = getattr(selector, "registry", None)
        if args.command == "services":
            if registry is None:
                raise SystemExit("this selector has no registry to list")
            for name in sorted({s.name for s in await registry.list_services()}):
                print(name)
        elif args.command == "describe":
            services = await registry.get_service(args.service) if registry is not None else []
            if not services:
                print(f"service {args.service} not found", file=sys.stderr)
                return 1
            print(json.dumps([s.to_dict() for s in services], indent=2))
        elif args.command == "call":
            md = dict(m.split("=", 1) for m in args.metadata)
            rsp = await client.call(
                args.service, args.endpoint, json.loads(args.request),
                timeout=args.timeout, address=args.address, metadata=md,
            )  # fmt: skip
            print(json.dumps(rsp, indent=2))
        elif args.command == "health":
            print(json.dumps(await client.call(args.service, "Debug.Health", {}, address=args.address)))
        elif args.command == "publish":
            await client.publish(args.topic, json.loads(args.message), content_type="application/json")
        elif args.command == "api":
            await _api(client, args)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Split Go Micro style options (--registry etcd, --registry=etcd) from the sub-command's own.
    fields = {f.name for f in attrs.fields(Options)}
    options: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--") and arg[2:].split("=", 1)[0] in fields:
            options.append(arg)
            if "=" not in arg and i + 1 < len(argv):
                options.append(argv[i + 1])
                i += 1
        else:
            rest.append(arg)
        i += 1
    args = _parser().parse_args(rest)
    try:
        return trio.run(_run, args, options)
    except MicroError as err:
        print(err.to_json(), file=sys.stderr)
        return 1
