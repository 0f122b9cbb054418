"""Go Micro's "rpc" path resolver: an HTTP path names a service and a ``Handler.Method`` endpoint.

Follows go-micro v2 ``api/resolver/micro/route.go`` (``apiRoute``, commit 49ffc60af) and
``api/resolver/micro/micro.go`` (namespace prefix, commit bf8ebf8ad), so a browser or ``curl`` that
works against ``micro api`` works here:

=========================  ==================  ==================
path                       service             endpoint
=========================  ==================  ==================
``/greeter``               ``greeter``         ``Greeter.Call``
``/greeter/hello``         ``greeter``         ``Greeter.Hello``
``/greeter/Greeter/Hello`` ``greeter``         ``Greeter.Hello``
``/v1/greeter/hello``      ``v1.greeter``      ``Greeter.Hello``
``/a/b/say-hi/hello``      ``a.b``             ``SayHi.Hello``
=========================  ==================  ==================

Pure functions, no I/O, so the rules are tested without sockets.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable

import attrs

__all__ = ["Resolver", "Route", "rpc_resolver", "title"]

_VERSION = re.compile(r"v[0-9]+\Z")


@attrs.frozen
class Route:
    """Where a request goes: a registered service name and an endpoint (``Handler.Method``)."""

    service: str
    endpoint: str


Resolver = Callable[[str, str], Route]
"""``resolver(path, namespace) -> Route``; ``path`` is the decoded URL path."""


def _is_separator(ch: str) -> bool:
    # Go's strings.Title word boundaries (unicode.IsLetter/IsDigit/'_' continue a word).
    if ch.isascii():
        return not (ch.isalnum() or ch == "_")
    return ch.isspace()


def title(word: str) -> str:
    """Go's ``strings.Title``: upper-case each word's first letter, leave the rest as it is."""
    out = []
    prev = " "
    for ch in word:
        out.append(ch.upper() if _is_separator(prev) else ch)
        prev = ch
    return "".join(out)


def _camel(part: str) -> str:
    # go-micro's toCamel: "say-hello" -> "SayHello".
    return "".join(title(w) for w in part.split("-"))


def _method(parts: list[str]) -> str:
    return ".".join(_camel(p) for p in parts)


def rpc_resolver(path: str, namespace: str = "") -> Route:
    """Map ``path`` to a route by Go Micro's rules (table above); ``namespace`` prefixes the service."""
    clean = posixpath.normpath("/" + path).lstrip("/")  # Go's path.Clean, then TrimPrefix "/"
    parts = clean.split("/") if clean not in ("", ".") else [""]
    if len(parts) == 1 and parts[0]:
        name, method = parts[0], _method([parts[0], "Call"])
    elif len(parts) <= 2:
        name, method = parts[0], _method(parts)
    elif len(parts) == 3 and _VERSION.match(parts[0]):
        name, method = ".".join(parts[:2]), _method(parts[1:])
    else:
        name, method = ".".join(parts[:-2]), _method(parts[-2:])
    if namespace and name:
        name = f"{namespace}.{name}"
    return Route(name, method)
