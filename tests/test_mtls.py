"""Mutual TLS between services, on loopback, with certificates made here: the server presents
``server_tls_cert`` and, with ``server_tls_client_ca``, requires a client certificate signed by that
CA; a client presents ``client_tls_cert``/``client_tls_key``. Over mucp/HTTP and gRPC (one port).

A client without a certificate, or with one from another CA, is refused with a TransportError naming
TLS and the certificate, and the server keeps serving the clients it trusts. Options that cannot work
are refused at start with one line naming the option.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import trimicro
from tests.conftest import Greeter
from tests.protos.greeter_pb2 import HelloRequest, HelloResponse
from trimicro.config import Options
from trimicro.transport import _tls

pytestmark = pytest.mark.loopback


@attrs.define
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path  # signed by another CA
    rogue_key: Path


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.with_suffix(".key").write_bytes(key_bytes)
    return path.with_suffix(".crt"), path.with_suffix(".key")


def _cert(
    name: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *, ca: bool = False, server: bool = False,
) -> x509.Certificate:  # fmt: skip
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, signer = issuer if issuer else (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
    if not ca:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), False)
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    tmp = tmp_path_factory.mktemp("pki")
    ca_key, rogue_ca_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("trimicro test CA", ca_key, None, ca=True)
    rogue_ca = _cert("rogue CA", rogue_ca_key, None, ca=True)
    ca_path, _ = _write(tmp / "ca", ca, ca_key)
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
    server = _write(tmp / "server", _cert("greeter", keys[0], (ca.subject, ca_key), server=True), keys[0])
    client = _write(tmp / "client", _cert("caller", keys[1], (ca.subject, ca_key)), keys[1])
    rogue = _write(tmp / "rogue", _cert("rogue", keys[2], (rogue_ca.subject, rogue_ca_key)), keys[2])
    return Pki(ca_path, *server, *client, *rogue)


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
