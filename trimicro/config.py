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


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


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
    # server
    server_name: str = ""
    server_version: str = "latest"
    server_id: str = ""
    server_address: str = "127.0.0.1:0"
    server_advertise: str = ""
    server_metadata: dict[str, str] = attrs.field(factory=dict, converter=_metadata)
    server_max_header_size: int = 64 * 1024
    server_max_body_size: int = 4 * 1024 * 1024
    server_header_timeout: float = attrs.field(default=10.0, converter=_float)
    server_idle_timeout: float = attrs.field(default=300.0, converter=_float)
    server_grace_period: float = attrs.field(default=10.0, converter=_float)
    server_tls_cert: str = ""
    server_tls_key: str = ""
    # transport
    transport: str = "http"
    transport_address: list[str] = attrs.field(factory=list, converter=_addresses)
    # broker
    broker: str = "http"
    broker_address: list[str] = attrs.field(factory=list, converter=_addresses)
    # selector / client
    selector: str = "random"
    selector_cache_ttl: float = attrs.field(default=60.0, converter=_float)
    client_request_timeout: float = attrs.field(default=5.0, converter=_float)
    client_retries: int = 1
    client_pool_size: int = 100
    client_pool_ttl: float = attrs.field(default=60.0, converter=_float)
    client_content_type: str = "application/protobuf"
    client_tls_ca: str = ""
    proxy: str = ""
    log_level: str = "info"
    # observability (trimicro/observability): all off by default, and nothing imported while off
    log_format: str = "text"  # or "json": one object a line, with trace_id/span_id during a call
    tracing: bool = attrs.field(default=False, converter=_bool)  # OpenTelemetry spans + traceparent
    metrics_address: str = ""  # "host:port" (":9090" = 127.0.0.1:9090): /metrics, /health/*

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
        return int(value)
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
