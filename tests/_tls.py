"""A throwaway PKI for mTLS tests, made with ``cryptography``: a CA, a server certificate (valid for
the IP addresses given), a client certificate from that CA, and a client certificate from a rogue CA.

Shared by tests/test_mtls.py (loopback) and tests/cluster/test_mtls_netns.py (simulated hosts, whose
server certificate must name their 10.77.0.x addresses). Certificates live one day; keys are P-256.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Pki", "make_pki"]


@attrs.define
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path  # signed by another CA
    rogue_key: Path

    def server_env(self) -> dict[str, str]:
        """``MICRO_*`` env for a node that serves TLS and requires a client certificate from the CA."""
        return {
            "MICRO_SERVER_TLS_CERT": str(self.server_cert),
            "MICRO_SERVER_TLS_KEY": str(self.server_key),
            "MICRO_SERVER_TLS_CLIENT_CA": str(self.ca),
        }

    def client_env(self, who: str = "trusted") -> dict[str, str]:
        """``MICRO_*`` env for a client trusting the CA and presenting: ``trusted`` (the CA's client
        certificate), ``rogue`` (another CA's) or ``none`` (no certificate)."""
        env = {"MICRO_CLIENT_TLS_CA": str(self.ca)}
        if who == "trusted":
            env |= {
                "MICRO_CLIENT_TLS_CERT": str(self.client_cert),
                "MICRO_CLIENT_TLS_KEY": str(self.client_key),
            }
        elif who == "rogue":
            env |= {
                "MICRO_CLIENT_TLS_CERT": str(self.rogue_cert),
                "MICRO_CLIENT_TLS_KEY": str(self.rogue_key),
            }
        elif who != "none":
            raise ValueError(f"who must be trusted, rogue or none, got {who!r}")
        return env


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.with_suffix(".key").write_bytes(key_bytes)
    return path.with_suffix(".crt"), path.with_suffix(".key")


def _cert(
    name: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *, ca: bool = False, server_ips: Sequence[str] = (),
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
    if server_ips:
        names = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
    if not ca:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server_ips else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), False)
    return builder.sign(signer, hashes.SHA256())


def make_pki(directory: Path, server_ips: Sequence[str] = ("127.0.0.1",)) -> Pki:
    """Write the CA, server, client and rogue files into ``directory``; see the module docstring."""
    ca_key, rogue_ca_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("trimicro test CA", ca_key, None, ca=True)
    rogue_ca = _cert("rogue CA", rogue_ca_key, None, ca=True)
    ca_path, _ = _write(directory / "ca", ca, ca_key)
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
    server = _write(
        directory / "server", _cert("greeter", keys[0], (ca.subject, ca_key), server_ips=server_ips), keys[0]
    )
    client = _write(directory / "client", _cert("caller", keys[1], (ca.subject, ca_key)), keys[1])
    rogue = _write(directory / "rogue", _cert("rogue", keys[2], (rogue_ca.subject, rogue_ca_key)), keys[2])
    return Pki(ca_path, *server, *client, *rogue)
