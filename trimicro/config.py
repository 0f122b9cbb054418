"""Options from arguments, CLI flags and ``MICRO_*`` environment: one place for all of them.

Precedence (highest first): keyword arguments in code, ``--flag`` on the command line, ``MICRO_*``
environment variables, defaults. Names follow Go Micro (flag ``--x_y``, env ``MICRO_X_Y``) so that
deployment scripts carry over; trimicro's own additions keep the prefix (``MICRO_MDNS_INTERFACES``).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = ["Options", "load_options", "parse_duration"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | float | int) -> float:
    """Seconds from a number or a Go duration string (``5s``, ``1m30s``, ``250ms``)."""
    if isinstance(value, (int, float)):
        return float(value)
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {value!r}")
    return total


def _metadata(value: str | Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    items = value.split(",") if isinstance(value, str) else list(value)
    out: dict[str, str] = {}
    for item in items:
        item = item.strip()
        if not item:
            continue
        key, _, val = item.partition("=")
        out[key.strip()] = val.strip()
    return out


def _addresses(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [a.strip() for a in items if a.strip()]


def _float(value: Any) -> float:
    return parse_duration(value)


def _number(value: Any) -> float:
    return float(value)


def _at_least(low: float) -> Any:
    def check(_: Any, attribute: Any, value: float) -> None:
        if not value >= low:
            raise ValueError(f"option {attribute.name} must be >= {low:g}, got {value!r}")

    return check


def _between(low: float, high: float, *, open_low: bool = False) -> Any:
    def check(_: Any, attribute: Any, value: float) -> None:
        if not (low < value if open_low else low <= value) or not value <= high:
            lo = "(" if open_low else "["
            raise ValueError(f"option {attribute.name} must be in {lo}{low:g}, {high:g}], got {value!r}")

    return check


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r} (use true or false)")


def _compression(_: Any, attribute: Any, value: str) -> None:
    if value not in ("", "identity", "gzip", "deflate"):
        raise ValueError(f"option {attribute.name} must be gzip, deflate or identity, got {value!r}")


def _pem_file(_: Any, attribute: Any, value: str) -> None:
    """A TLS option names a readable file, checked at start so a typo is one line, not a handshake."""
    if value and not os.access(value, os.R_OK):
        raise ValueError(f"option {attribute.name}: cannot read {value!r}")


def _workers(value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"server_workers must be a whole number, got {value!r}") from None
    if number < 1:
        raise ValueError(f"server_workers must be at least 1, got {number}")
    return number


@attrs.define
class Options:
    """Every setting a service, client or plugin reads. Durations are seconds."""

    # registry
    registry: str = "mdns"
    registry_address: list[str] = attrs.field(factory=list, converter=_addresses)
    registry_timeout: float = attrs.field(default=10.0, converter=_float)
    register_ttl: float = attrs.field(default=90.0, converter=_float)
    register_interval: float = attrs.field(default=30.0, converter=_float)
    registry_username: str = ""
    registry_password: str = ""
    mdns_interfaces: list[str] = attrs.field(factory=lambda: ["127.0.0.1"], converter=_addresses)
    gossip_address: str = "127.0.0.1:0"  # the gossip registry's own UDP+TCP bind address
    # server
    server_name: str = ""
    server_version: str = "latest"
    server_id: str = ""
    server_address: str = "127.0.0.1:0"
    server_advertise: str = ""
    server_metadata: dict[str, str] = attrs.field(factory=dict, converter=_metadata)
    server_max_header_size: int = 64 * 1024
    server_max_body_size: int = 4 * 1024 * 1024
    #: gRPC message limits (RESOURCE_EXHAUSTED beyond): receive 0 = server_max_body_size
    server_max_recv_msg_size: int = attrs.field(default=0, validator=_at_least(0))
    server_max_send_msg_size: int = attrs.field(default=2**31 - 1, validator=_at_least(1))
    client_max_recv_msg_size: int = attrs.field(default=4 * 1024 * 1024, validator=_at_least(1))
    client_max_send_msg_size: int = attrs.field(default=2**31 - 1, validator=_at_least(1))
    #: gRPC message compression: the server's for clients that accept it (a compressed request is
    #: always answered in kind), the client's for every request ("" or identity: none)
    server_compression: str = attrs.field(default="", validator=_compression)
    client_compression: str = attrs.field(default="", validator=_compression)
    #: answer gRPC server reflection (grpcurl list/describe/call); off hides the schema
    grpc_reflection: bool = attrs.field(default=True, converter=_bool)
    server_header_timeout: float = attrs.field(default=10.0, converter=_float)
    server_idle_timeout: float = attrs.field(default=300.0, converter=_float)
    #: a frame's whole body must arrive within this (408 and close): a trickled body cannot hold a
    #: connection for ``server_idle_timeout`` per read
    server_body_timeout: float = attrs.field(default=60.0, converter=_float, validator=_at_least(1e-3))
    #: connections served at once per listener (0: the descriptor limit minus a reserve, at most
    #: 10,000); beyond it new ones are closed at accept (transport/http.py)
    server_max_connections: int = attrs.field(default=0, validator=_at_least(0))
    #: HTTP/2: PING after this long without reads, close if unanswered in the timeout; clients
    #: pinging more often than min_time get GOAWAY(ENHANCE_YOUR_CALM, too_many_pings)
    server_keepalive_time: float = attrs.field(default=7200.0, converter=_float)
    server_keepalive_timeout: float = attrs.field(default=20.0, converter=_float)
    server_keepalive_min_time: float = attrs.field(default=300.0, converter=_float)
    server_grace_period: float = attrs.field(default=10.0, converter=_float)
    server_workers: int = attrs.field(default=1, converter=_workers)
    server_reuse_port: bool = attrs.field(default=False, converter=_bool)
    server_tls_cert: str = attrs.field(default="", validator=_pem_file)
    server_tls_key: str = attrs.field(default="", validator=_pem_file)
    #: require a client certificate signed by this CA (mTLS; see transport/_tls.py)
    server_tls_client_ca: str = attrs.field(default="", validator=_pem_file)
    #: handlers running at once (0: no limit); beyond it calls wait in a queue of ``server_max_queue``,
    #: and beyond that get a fast 503 with ``Micro-Retry-After`` (see server/_limit.py)
    server_max_concurrent: int = attrs.field(default=0, validator=_at_least(0))
    server_max_queue: int = attrs.field(default=100, validator=_at_least(0))
    # transport
    transport: str = "http"
    transport_address: list[str] = attrs.field(factory=list, converter=_addresses)
    # broker
    broker: str = "http"
    broker_address: list[str] = attrs.field(factory=list, converter=_addresses)
    # selector / client
    selector: str = "random"
    selector_cache_ttl: float = attrs.field(default=60.0, converter=_float)
    # outlier ejection (selector/_outlier.py): failing nodes are taken out of rotation for a while
    selector_ejection_time: float = attrs.field(default=5.0, converter=_float, validator=_at_least(1e-3))
    selector_max_ejection_time: float = attrs.field(default=60.0, converter=_float, validator=_at_least(1e-3))
    selector_max_ejection_percent: float = attrs.field(
        default=50.0, converter=_number, validator=_between(0, 100)
    )
    selector_consecutive_failures: int = attrs.field(default=5, validator=_at_least(0))
    selector_failure_rate: float = attrs.field(
        default=0.5, converter=_number, validator=_between(0, 1, open_low=True)
    )
    client_request_timeout: float = attrs.field(default=5.0, converter=_float)
    client_retries: int = attrs.field(default=1, validator=_at_least(0))
    #: one attempt's timeout (0: automatic, a third of what is left while retries remain; see
    #: client/_retry.py); so a node that never answers costs one attempt, not the call
    client_attempt_timeout: float = attrs.field(default=0.0, converter=_float, validator=_at_least(0))
    #: retry budget per service (gRFC A6 throttling): tokens (0: no budget) and refill per success;
    #: 100 so the few failures before a bad node is ejected never throttle (see client/_retry.py)
    client_retry_budget: int = attrs.field(default=100, validator=_at_least(0))
    client_retry_budget_ratio: float = attrs.field(
        default=0.1, converter=_number, validator=_between(0, 1, open_low=True)
    )
    #: send a second attempt to another node after this long without an answer (0: off)
    client_hedge_delay: float = attrs.field(default=0.0, converter=_float, validator=_at_least(0))
    client_pool_size: int = 100
    client_pool_ttl: float = attrs.field(default=60.0, converter=_float)
    client_content_type: str = "application/protobuf"
    client_tls_ca: str = attrs.field(default="", validator=_pem_file)
    #: the certificate (and key) this client presents to servers that require one (mTLS)
    client_tls_cert: str = attrs.field(default="", validator=_pem_file)
    client_tls_key: str = attrs.field(default="", validator=_pem_file)
    proxy: str = ""
    log_level: str = "info"
    # observability (trimicro/observability): all off by default, and nothing imported while off
    log_format: str = "text"  # or "json": one object a line, with trace_id/span_id during a call
    tracing: bool = attrs.field(default=False, converter=_bool)  # OpenTelemetry spans + traceparent
    metrics_address: str = ""  # "host:port" (":9090" = 127.0.0.1:9090): /metrics, /health/*
    #: the same metrics as OpenTelemetry instruments, on the global (or OTEL_METRICS_EXPORTER's) provider
    otel_metrics: bool = attrs.field(default=False, converter=_bool)

    def evolve(self, **changes: Any) -> Options:
        return attrs.evolve(self, **changes)


_FIELDS = {f.name: f for f in attrs.fields(Options)}
# Go Micro flag/env spellings that differ from the attribute name.
_ALIASES = {
    "mdns_interfaces": "MICRO_MDNS_INTERFACES",
    "proxy": "MICRO_PROXY",
    "log_level": "MICRO_LOG_LEVEL",
}


def _coerce(name: str, value: Any) -> Any:
    field = _FIELDS[name]
    if field.type in ("int", int) and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"option {name} must be an integer, got {value!r}") from None
    return value


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _FIELDS:
        key = _ALIASES.get(name, "MICRO_" + name.upper())
        if key in env and env[key] != "":
            out[name] = _coerce(name, env[key])
    return out


def _from_argv(argv: Sequence[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for name in _FIELDS:
        flag = "--" + name
        if name == "server_metadata":
            parser.add_argument(flag, action="append", default=None)
        else:
            parser.add_argument(flag, default=None)
    known, _ = parser.parse_known_args(list(argv))
    return {k: _coerce(k, v) for k, v in vars(known).items() if v is not None}


def load_options(
    overrides: Mapping[str, Any] | None = None,
    *,
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Options:
    """Build :class:`Options` from env, then flags, then ``overrides`` (unknown keys raise TypeError).

    ``argv=None`` reads no flags (library use); pass ``sys.argv[1:]`` to honour the command line.
    """
    values: dict[str, Any] = _from_env(os.environ if env is None else env)
    if argv is not None:
        values.update(_from_argv(argv))
    for key, val in (overrides or {}).items():
        if key not in _FIELDS:
            raise TypeError(f"unknown option {key!r}")
        if val is not None:
            values[key] = val
    return Options(**values)
