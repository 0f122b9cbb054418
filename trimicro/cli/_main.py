"""``trimicro services | describe | call | stream | health | stats | publish | api``.

Global options are Go Micro's flags/env (``--registry etcd --registry_address 127.0.0.1:2379``,
``MICRO_REGISTRY=...``): anything that looks like ``--x_y`` naming an option is one, wherever it stands.
They are listed in every ``--help``. Every failure is one line on stderr and a non-zero exit status
(2 for a usage error, 1 for a failed call; a MicroError prints its Go Micro JSON), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from .._util import collapse_excgroups
from ..config import Options
from ..errors import MicroError, TrimicroError
from ..service import open_client
from ._output import CliError, print_json, print_table

__all__ = ["main"]

_OPTION_FIELDS = [f for f in attrs.fields(Options)]
_OPTION_NAMES = {f.name for f in _OPTION_FIELDS}


def _default(field: Any) -> Any:
    default = field.default
    return default.factory() if isinstance(default, attrs.Factory) else default  # type: ignore[arg-type]


def _global_options() -> argparse.ArgumentParser:
    """Only for ``--help``: the Go Micro flags are split off before argparse sees the rest."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("global options (Go Micro flags; each also read from MICRO_<NAME> env)")
    for f in _OPTION_FIELDS:
        g.add_argument("--" + f.name, metavar="VALUE", help=f"default: {_default(f)!r}")
    return p


def _parser() -> argparse.ArgumentParser:
    common = _global_options()
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument(
        "--output", choices=["table", "json"], default="table",
        help="json: one JSON document on stdout, nothing else",
    )  # fmt: skip
    p = argparse.ArgumentParser(
        prog="trimicro",
        usage="trimicro [global options] COMMAND [args]",
        description="Inspect and call trimicro / Go Micro services.",
        parents=[common],
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str, *, listing: bool = False) -> argparse.ArgumentParser:
        parents = [output, common] if listing else [common]
        return sub.add_parser(name, help=help, description=help, parents=parents)

    add("services", "list registered services", listing=True)
    d = add("describe", "print a service's registry record (Go Micro JSON)", listing=True)
    d.add_argument("service")
    for name, help in (
        ("call", "call an endpoint with a JSON request, print the JSON response"),
        ("stream", "open a stream: JSON lines from stdin are sent, responses printed as JSON lines"),
    ):
        c = add(name, help)
        c.add_argument("service")
        c.add_argument("endpoint", help="Handler.Method")
        if name == "call":
            c.add_argument("request", nargs="?", default="{}", help="JSON (default {})")
        else:
            c.add_argument("request", nargs="?", default=None, help="a first JSON request (server streaming)")
        c.add_argument("--timeout", type=float, default=None, help="seconds")
        c.add_argument("--address", default=None, help="call this host:port, bypassing discovery")
        c.add_argument("--metadata", action="append", default=[], help="k=v, repeatable")
    h = add("health", "call Debug.Health on a service")
    h.add_argument("service")
    h.add_argument("--address", default=None)
    s = add("stats", "Debug.Stats of every node of a service", listing=True)
    s.add_argument("service")
    pub = add("publish", "publish a JSON message on a topic")
    pub.add_argument("topic")
    pub.add_argument("message")
    sub.add_parser("new", help="scaffold a service package (trimicro new NAME --help)", add_help=False)
    a = add("api", "run the HTTP/websocket gateway (Go Micro's `micro api`)")
    a.add_argument(
        "--address", default=os.environ.get("MICRO_API_ADDRESS", "127.0.0.1:8080"),
        help="host:port to listen on (':8080' is loopback); env MICRO_API_ADDRESS",
    )  # fmt: skip
    a.add_argument(
        "--namespace", default=os.environ.get("MICRO_API_NAMESPACE", ""),
        help="prefix for service names, e.g. go.micro.api; env MICRO_API_NAMESPACE",
    )  # fmt: skip
    a.add_argument(
        "--allow", action="append", default=None, metavar="PATTERNS",
        help="expose only SERVICE or SERVICE:Endpoint.Method glob patterns ('*' wildcard); repeatable "
        "or comma-separated; env MICRO_API_ALLOW (default: every service)",
    )  # fmt: skip
    a.add_argument(
        "--expose_debug", action="store_true", default=_env_flag("MICRO_API_EXPOSE_DEBUG"),
        help="let Debug.* and grpc.* endpoints through (refused by default); env MICRO_API_EXPOSE_DEBUG",
    )  # fmt: skip
    a.add_argument(
        "--miss_ttl", type=float, default=None, metavar="SECONDS",
        help="how long an unknown service name is remembered (default 5); env MICRO_API_MISS_TTL",
    )  # fmt: skip
    for name, subparser in sub.choices.items():  # argparse would spell out every global flag
        own = [a for a in subparser._actions if a.dest not in _OPTION_NAMES]
        flags = " ".join(f"[{a.option_strings[0]}]" for a in own if a.option_strings and a.dest != "help")
        args = " ".join(a.dest if a.nargs != "?" else f"[{a.dest}]" for a in own if not a.option_strings)
        subparser.usage = " ".join(p for p in (f"trimicro {name}", flags, "[global options]", args) if p)
    return p


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _api_policy(args: argparse.Namespace) -> dict[str, Any]:
    """The gateway's exposure options from flags/env, checked before anything connects."""
    from ..api import AllowList

    patterns = args.allow if args.allow is not None else [os.environ.get("MICRO_API_ALLOW", "")]
    try:
        allow = AllowList.parse(patterns) if any(p.strip() for p in patterns) else None
    except ValueError as exc:
        raise CliError(f"--allow: {exc}", 2) from None
    miss_ttl = args.miss_ttl
    if miss_ttl is None:
        text = os.environ.get("MICRO_API_MISS_TTL") or "5"
        try:
            miss_ttl = float(text)
        except ValueError:
            raise CliError(f"MICRO_API_MISS_TTL must be seconds, got {text!r}", 2) from None
    if not 0 <= miss_ttl < float("inf"):
        raise CliError(f"--miss_ttl must be >= 0 seconds, got {miss_ttl}", 2)
    return {"allow": allow, "expose_debug": args.expose_debug, "miss_ttl": miss_ttl}


def _json_arg(what: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CliError(f"{what} is not valid JSON ({exc}): {text!r}", 2) from None


def _metadata(items: Sequence[str]) -> dict[str, str]:
    bad = [m for m in items if "=" not in m]
    if bad:
        raise CliError(f"--metadata takes k=v, got {bad[0]!r}", 2)
    return dict(m.split("=", 1) for m in items)


async def _api(client: Any, args: argparse.Namespace, policy: dict[str, Any]) -> None:
    """Serve the gateway until SIGINT/SIGTERM, then drain (``server_grace_period``) and return."""
    try:
        import hypercorn  # noqa: F401  (the gateway imports them when it starts serving)
        import trio_websocket  # noqa: F401

        from ..api import Gateway
    except ImportError as exc:
        raise CliError(
            f"trimicro api needs the gateway extra ({exc}): pip install 'trimicro[gateway]'"
        ) from None

    gateway = Gateway(client, namespace=args.namespace, grace=client.options.server_grace_period, **policy)
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
            raise CliError(f"trimicro api: cannot listen on {args.address}: {exc}") from None


async def _stream(client: Any, args: argparse.Namespace) -> None:
    """stdin JSON lines -> requests; responses -> stdout JSON lines; stdin EOF half-closes."""
    first = _json_arg("request", args.request) if args.request is not None else None
    md = _metadata(args.metadata)
    async with client.stream(
        args.service, args.endpoint, request=first, timeout=args.timeout, address=args.address, metadata=md
    ) as stream:
        async with trio.open_nursery() as nursery:

            async def pump_stdin() -> None:
                stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
                buf = b""
                async with stdin:
                    while chunk := await stdin.receive_some(65536):
                        buf += chunk
                        *lines, buf = buf.split(b"\n")
                        for line in lines:
                            if line.strip():
                                await stream.send(_json_arg("stdin line", line.decode()))
                if buf.strip():
                    await stream.send(_json_arg("stdin line", buf.decode()))
                await stream.close_send()

            if first is None or not sys.stdin.isatty():
                nursery.start_soon(pump_stdin)
            else:
                await stream.close_send()
            async for rsp in stream:
                print(json.dumps(rsp), flush=True)
            nursery.cancel_scope.cancel()


async def _stats(client: Any, registry: Any, args: argparse.Namespace) -> None:
    services = await registry.get_service(args.service)
    nodes = [n for s in services for n in s.nodes]
    if not nodes:
        raise CliError(f"service {args.service} not found")
    results: list[dict[str, Any]] = []

    async def one(node: Any) -> None:
        row: dict[str, Any] = {"node": node.id, "address": node.address}
        try:
            with trio.fail_after(5):
                row.update(
                    await client.call(args.service, "Debug.Stats", {}, address=node.address, retries=0)
                )
        except (MicroError, trio.TooSlowError) as exc:
            row["error"] = str(exc) or "no answer within 5 s"
        results.append(row)

    async with trio.open_nursery() as nursery:
        for node in nodes:
            nursery.start_soon(one, node)
    results.sort(key=lambda r: r["node"])
    if args.output == "json":
        print_json(results)
        return
    cols = ["node", "address", "uptime", "memory", "threads", "gc", "requests", "errors", "in_flight"]
    cols += [c for c in ("p50_ms", "p99_ms") if any(c in r for r in results)]  # when metrics are on
    print_table(
        [c.upper() for c in cols] + ["ERROR"],
        [[r.get(c, "") for c in cols] + [r.get("error", "")] for r in results],
    )


async def _run(args: argparse.Namespace, options: list[str]) -> int:
    policy = _api_policy(args) if args.command == "api" else {}
    async with open_client(argv=options, client_content_type="application/json") as client:
        selector: Any = client.selector
        registry: Any = getattr(selector, "registry", None)
        if args.command in ("services", "describe", "stats") and registry is None:
            raise CliError("this selector has no registry to ask")
        if args.command == "services":
            services = await registry.list_services()
            names = sorted({s.name for s in services})
            if args.output == "json":
                print_json(names)
            elif not names:
                print(f"no services registered (registry {client.options.registry})", file=sys.stderr)
            else:
                print_table(["NAME"], [[n] for n in names], names_only=True)
        elif args.command == "describe":
            services = await registry.get_service(args.service)
            if not services:
                raise CliError(f"service {args.service} not found")
            print_json([s.to_dict() for s in services])
        elif args.command == "call":
            rsp = await client.call(
                args.service, args.endpoint, _json_arg("request", args.request),
                timeout=args.timeout, address=args.address, metadata=_metadata(args.metadata),
            )  # fmt: skip
            print_json(rsp)
        elif args.command == "stream":
            await _stream(client, args)
        elif args.command == "health":
            print(json.dumps(await client.call(args.service, "Debug.Health", {}, address=args.address)))
        elif args.command == "stats":
            await _stats(client, registry, args)
        elif args.command == "publish":
            message = _json_arg("message", args.message)
            await client.publish(args.topic, message, content_type="application/json")
        elif args.command == "api":
            await _api(client, args, policy)
    return 0


def _split(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Go Micro style options (``--registry etcd``, ``--registry=etcd``) apart from the rest."""
    options: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--") and arg[2:].split("=", 1)[0] in _OPTION_NAMES:
            options.append(arg)
            if "=" not in arg and i + 1 < len(argv):
                options.append(argv[i + 1])
                i += 1
        else:
            rest.append(arg)
        i += 1
    return options, rest


def _quiet_logs(options: Sequence[str]) -> None:
    """Background warnings (a registry watch retrying) would add lines to a one-line error: the CLI
    logs errors only, unless ``--log_level`` / ``MICRO_LOG_LEVEL`` asks for more."""
    level = os.environ.get("MICRO_LOG_LEVEL") or "error"
    for i, opt in enumerate(options):
        if opt.startswith("--log_level"):
            level = opt.partition("=")[2] or (options[i + 1] if i + 1 < len(options) else level)
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.ERROR), format="%(levelname)s %(message)s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["new"]:  # works offline: no client, no registry
        from ._new import main as new

        return new(argv[1:])
    options, rest = _split(argv)
    args = _parser().parse_args(rest)
    _quiet_logs(options)
    try:
        with collapse_excgroups():
            return trio.run(_run, args, options)
    except MicroError as err:
        print(err.to_json(), file=sys.stderr)
        return 1
    except CliError as err:
        print(f"trimicro {args.command}: {err}", file=sys.stderr)
        return err.status
    except (ValueError, TypeError) as err:  # bad option values, unknown plugin names
        print(f"trimicro {args.command}: {err}", file=sys.stderr)
        return 2
    except (TrimicroError, OSError) as err:  # registry/broker down, connection refused ...
        print(f"trimicro {args.command}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
