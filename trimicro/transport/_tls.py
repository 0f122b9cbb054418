"""TLS contexts from service options, for every transport: server certificate, optional client
verification (mTLS), and the client's trust store and certificate.

One place so the mucp/HTTP and gRPC transports (which share the server's one port) agree: with
``server_tls_client_ca`` the server requires a client certificate signed by that CA, so a client
without one is refused during the handshake, and the server goes on serving everyone else. Option
combinations that cannot work are refused at start with one line naming the option.
"""

from __future__ import annotations

import ssl
from typing import Any

import trio

from ..errors import TransportError

__all__ = ["client_context", "describe_tls_error", "send_alert", "server_context"]


def _load_chain(ctx: ssl.SSLContext, cert: str, key: str, cert_option: str) -> None:
    try:
        ctx.load_cert_chain(cert, key or None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"option {cert_option}: cannot load certificate/key {cert!r}: {exc}") from None


def server_context(options: Any) -> ssl.SSLContext | None:
    """The listener's context, or None when ``server_tls_cert`` is not set."""
    cert, key = getattr(options, "server_tls_cert", ""), getattr(options, "server_tls_key", "")
    client_ca = getattr(options, "server_tls_client_ca", "")
    if not cert:
        if key:
            raise ValueError("option server_tls_key is set without server_tls_cert")
        if client_ca:
            raise ValueError("option server_tls_client_ca needs server_tls_cert and server_tls_key")
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _load_chain(ctx, cert, key, "server_tls_cert")
    if client_ca:
        try:
            ctx.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"option server_tls_client_ca: cannot load {client_ca!r}: {exc}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(options: Any, alpn: list[str]) -> ssl.SSLContext | None:
    """The dialler's context (trusting ``client_tls_ca``, presenting ``client_tls_cert``), or None
    when neither is set."""
    ca = getattr(options, "client_tls_ca", "")
    cert, key = getattr(options, "client_tls_cert", ""), getattr(options, "client_tls_key", "")
    if key and not cert:
        raise ValueError("option client_tls_key is set without client_tls_cert")
    if not ca and not cert:
        return None
    try:
        ctx = ssl.create_default_context(cafile=ca or None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"option client_tls_ca: cannot load {ca!r}: {exc}") from None
    if cert:
        _load_chain(ctx, cert, key, "client_tls_cert")
    ctx.set_alpn_protocols(alpn)
    return ctx


def describe_tls_error(address: str, exc: BaseException) -> TransportError | None:
    """A TransportError naming TLS and the certificate problem if ``exc`` (or its cause) is a TLS
    failure; None otherwise. With TLS 1.3 a server refusing the client's certificate says so only
    after the client's handshake finished, on the first read: this names it either way."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            reason = getattr(seen, "reason", None) or str(seen)
            text = str(reason).lower().replace("_", " ")
            if "certificate required" in text or "alert certificate" in text or "unknown ca" in text:
                hint = "the server requires a client certificate it trusts (client_tls_cert/client_tls_key)"
            elif "certificate verify failed" in text:
                hint = "the server's certificate is not trusted (client_tls_ca)"
            elif "unexpected eof" in text:
                # The server hung up during or right after the handshake (trio's server side closes
                # without flushing its alert): the usual reason is a client certificate it refused.
                hint = "the server closed the connection; it may require a client certificate it trusts (client_tls_cert/client_tls_key)"
            else:
                hint = "TLS failure"
            return TransportError(f"{address}: TLS handshake refused: {reason}: {hint}")
        seen = seen.__cause__ or seen.__context__
    return None


async def send_alert(ssl_stream: trio.SSLStream[Any], raw: trio.abc.Stream) -> None:
    """After a failed server-side handshake, send the TLS alert OpenSSL left unsent (trio marks the
    stream broken without flushing it), so the client learns *why* (``certificate required``, ``unknown
    ca``) instead of seeing a bare EOF. Best effort, bounded; reaches into trio's outgoing BIO."""
    outgoing = getattr(ssl_stream, "_outgoing", None)
    if not isinstance(outgoing, ssl.MemoryBIO):
        return
    data = outgoing.read()
    if not data:
        return
    with trio.move_on_after(0.5):
        try:
            await raw.send_all(data)
            # Read (and drop) what the client still sends until it hangs up: closing with its bytes
            # unread would answer them with an RST, which destroys the alert before it is read.
            while await raw.receive_some(4096):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
