"""Explicit endpoint descriptions, used by generated code instead of reflection."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["MethodSpec"]


@attrs.frozen
class MethodSpec:
    """One RPC method: ``name`` is the method part of ``Handler.Method``.

    ``request``/``response`` are message classes (protobuf, attrs, dataclass, dict, bytes). The
    streaming flags follow the .proto: both False is unary; ``server_streaming`` alone is a server
    stream (the handler takes the request and the stream); ``client_streaming`` alone is a client
    stream; both is bidirectional.
    """

    name: str
    request: Any = None
    response: Any = None
    client_streaming: bool = False
    server_streaming: bool = False
    #: the handler's Python attribute name when it differs from ``name`` (keywords, builtins).
    attr: str | None = None
    doc: str = ""

    @property
    def streaming(self) -> bool:
        return self.client_streaming or self.server_streaming
