"""Mutual TLS between services, on loopback, with certificates made here: the server presents
``server_tls_cert`` and, with ``server_tls_client_ca``, requires a client certificate signed by that
CA; a client presents ``client_tls_cert``/``client_tls_key``. Over mucp/HTTP and gRPC (one port).

A client without a certificate, or with one from another CA, is refused with a TransportError naming
TLS and the certificate, and the server keeps serving the clients it trusts. Options that cannot work
are refused at start with one line naming the option.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

import trimicro
from tests._tls import Pki, make_pki
from tests.conftest import Greeter
from tests.protos.greeter_pb2 import HelloRequest, HelloResponse
from trimicro.config import Options
from trimicro.transport import _tls

pytestmark = pytest.mark.loopback


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(params=["http", "grpc"])
async def served(
    request: pytest.FixtureRequest, pki: Pki, greeter: Greeter
) -> AsyncIterator[tuple[str, str]]:
    """A greeter requiring client certificates; yields (transport, address)."""
    service = trimicro.Service(
        "greeter", registry="memory", handlers=[greeter], argv=[], handle_signals=False,
        transport=request.param, server_tls_cert=str(pki.server_cert), server_tls_key=str(pki.server_key),
        server_tls_client_ca=str(pki.ca),
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        yield request.param, service.address
        service.stop()


async def _hello(transport: str, address: str, **tls: Any) -> str:
    async with trimicro.open_client(
        registry="memory", transport=transport, client_retries=0, **tls
    ) as client:
        rsp = await client.call(
            "greeter", "Greeter.Hello", HelloRequest(name="m"), response_type=HelloResponse,
            address=address, timeout=5,
        )  # fmt: skip
        return str(rsp.greeting)


async def test_trusted_client_is_served_others_refused_with_a_tls_error(
    served: tuple[str, str], pki: Pki
) -> None:
    transport, address = served
    trusted = {"client_tls_ca": str(pki.ca), "client_tls_cert": str(pki.client_cert), "client_tls_key": str(pki.client_key)}  # fmt: skip
    assert "m" in await _hello(transport, address, **trusted)
    for bad in (
        {"client_tls_ca": str(pki.ca)},  # no certificate
        {**trusted, "client_tls_cert": str(pki.rogue_cert), "client_tls_key": str(pki.rogue_key)},
    ):
        with pytest.raises(trimicro.errors.MicroError) as info:
            await _hello(transport, address, **bad)
        text = str(info.value).lower()
        assert "tls" in text and "certificate" in text, info.value
    assert "m" in await _hello(transport, address, **trusted)  # still serving


async def test_client_not_trusting_the_server_is_told_so(served: tuple[str, str], pki: Pki) -> None:
    transport, address = served
    with pytest.raises(trimicro.errors.MicroError) as info:
        await _hello(
            transport, address, client_tls_cert=str(pki.client_cert), client_tls_key=str(pki.client_key)
        )
    assert "certificate" in str(info.value).lower()


def test_options_are_checked_at_start(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="option server_tls_client_ca: cannot read"):
        Options(server_tls_client_ca=str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError, match="option client_tls_cert: cannot read"):
        Options(client_tls_cert=str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError, match="server_tls_client_ca needs server_tls_cert"):
        _tls.server_context(Options(server_tls_client_ca=str(pki.ca)))
    with pytest.raises(ValueError, match="client_tls_key is set without client_tls_cert"):
        _tls.client_context(Options(client_tls_key=str(pki.client_key)), ["h2"])
    with pytest.raises(ValueError, match="option server_tls_cert: cannot load"):
        _tls.server_context(Options(server_tls_cert=str(pki.ca), server_tls_key=str(pki.client_key)))
