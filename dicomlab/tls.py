"""Demo certificates for TLS: a CA, a server and a client certificate.

For notebooks, tests and teaching, never for production (the keys are written
unencrypted beside the certificates)::

    certs = dl.tls.make_demo_certificates("certs")
    local = dl.LocalPACS("archive", tls=certs.server(), tls_port=0).start()
    node = local.tls_node.replace(tls=certs.client())
    dl.echo(node)

The certificates are what BCP 195 (DICOM PS3.15 Annex B.9) expects of a TLS
peer: RSA 2048 keys, SHA-256 signatures, the server certificate naming its
hosts in subjectAltName (``localhost`` and ``127.0.0.1`` by default) and marked
for server authentication, the client certificate for client authentication.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dicomlab.core.nodes import TLS
from dicomlab.errors import ValidationError

__all__ = ["DemoCertificates", "make_demo_certificates"]


@dataclass(frozen=True, slots=True)
class DemoCertificates:
    """Paths of the PEM files written by :func:`make_demo_certificates`."""

    folder: str
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str

    def server(self, require_client_cert: bool = False) -> TLS:
        """TLS settings for a LocalPACS serving with the server certificate."""
        return TLS(
            ca=self.ca,
            cert=self.server_cert,
            key=self.server_key,
            require_client_cert=require_client_cert,
        )

    def client(self, with_certificate: bool = True, server_hostname: str | None = None) -> TLS:
        """TLS settings for a node: trust the demo CA, present the client certificate."""
        if with_certificate:
            return TLS(
                ca=self.ca,
                cert=self.client_cert,
                key=self.client_key,
                server_hostname=server_hostname,
            )
        return TLS(ca=self.ca, server_hostname=server_hostname)


def _name(common_name: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dicomlab demo"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _alt_name(host: str) -> Any:
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write(path: Path, data: bytes, private: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    with os.fdopen(os.open(tmp, flags, 0o600 if private else 0o644), "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def make_demo_certificates(
    folder: str | os.PathLike[str],
    hostnames: tuple[str, ...] = ("localhost", "127.0.0.1"),
    days: int = 365,
    not_before: datetime | None = None,
) -> DemoCertificates:
    """Write ``ca.pem``, ``server.pem``/``server.key`` and ``client.pem``/``client.key``.

    Parameters
    ----------
    folder
        Where the files go (created if needed; existing files are replaced).
    hostnames
        Names and IP addresses the server certificate is valid for.
    days
        Validity from ``not_before`` (default: now, minus a minute for clock skew).
        An already expired set, for demonstrating the error, is
        ``not_before=datetime.now(UTC) - timedelta(days=30), days=1``.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID

    if not hostnames or not all(isinstance(h, str) and h for h in hostnames):
        raise ValidationError(f"hostnames {hostnames!r} must be non-empty names or addresses")
    if days < 1:
        raise ValidationError(f"days {days!r} must be at least 1")
    start = (not_before or datetime.now(UTC)) - timedelta(minutes=1)
    end = start + timedelta(days=days)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)

    def key() -> Any:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def builder(subject: str, issuer: Any, public: Any) -> Any:
        return (
            x509.CertificateBuilder()
            .subject_name(_name(subject))
            .issuer_name(issuer)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
        )

    ca_key = key()
    ca_name = _name("dicomlab demo CA")
    ca_cert = (
        builder("dicomlab demo CA", ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common_name: str, usage: Any, alt_names: list[Any]) -> tuple[bytes, bytes]:
        k = key()
        b = (
            builder(common_name, ca_name, k.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if alt_names:
            b = b.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        pem_key = k.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1: read by dcmtk and Python
            serialization.NoEncryption(),
        )
        return cert.public_bytes(serialization.Encoding.PEM), pem_key

    server_pem, server_key = leaf(
        hostnames[0], ExtendedKeyUsageOID.SERVER_AUTH, [_alt_name(h) for h in hostnames]
    )
    client_pem, client_key = leaf("dicomlab demo client", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    certs = DemoCertificates(
        folder=str(out),
        ca=str(out / "ca.pem"),
        server_cert=str(out / "server.pem"),
        server_key=str(out / "server.key"),
        client_cert=str(out / "client.pem"),
        client_key=str(out / "client.key"),
    )
    _write(Path(certs.ca), ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(Path(certs.server_cert), server_pem)
    _write(Path(certs.server_key), server_key, private=True)
    _write(Path(certs.client_cert), client_pem)
    _write(Path(certs.client_key), client_key, private=True)
    return certs
