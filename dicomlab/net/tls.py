"""SSL contexts from :class:`~dicomlab.core.nodes.TLS` settings, for both roles.

TLS 1.2 is the minimum (BCP 195, DICOM PS3.15 Annex B.9); Python's default
cipher list already excludes what BCP 195 forbids. A file that cannot be used
gives a :class:`~dicomlab.errors.ConfigError` naming the file and what is wrong
with it (missing, not a certificate, a key that does not match), raised when the
context is built: before any connection is made or any port is opened.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from dicomlab.core.nodes import TLS
from dicomlab.errors import ConfigError

__all__ = ["client_context", "server_context"]


def _check_file(path: str, what: str) -> None:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"TLS {what} file {path!r} does not exist",
            hint="give the path of a PEM file (dl.tls.make_demo_certificates writes a demo set)",
        )


def _load_chain(ctx: ssl.SSLContext, cert: str, key: str) -> None:
    _check_file(cert, "certificate")
    _check_file(key, "private key")
    try:
        ctx.load_cert_chain(certfile=cert, keyfile=key)
    except ssl.SSLError as exc:
        text = str(exc).lower()
        if "key values mismatch" in text:
            msg = f"TLS private key {key!r} does not belong to certificate {cert!r}"
        elif "pem" in text or "no start line" in text or "ee key too small" in text:
            msg = f"TLS certificate {cert!r} or key {key!r} is not a usable PEM file ({exc})"
        else:
            msg = f"TLS certificate {cert!r} with key {key!r} cannot be used ({exc})"
        raise ConfigError(msg, hint="pair each certificate with its own key, in PEM") from None


def _load_ca(ctx: ssl.SSLContext, ca: str) -> None:
    _check_file(ca, "CA certificate")
    try:
        ctx.load_verify_locations(cafile=ca)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"TLS CA file {ca!r} holds no usable certificate ({exc})",
            hint="give the PEM certificate of the CA that signed the peer's certificate",
        ) from None


def _base(protocol: int) -> ssl.SSLContext:
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def client_context(tls: TLS) -> ssl.SSLContext:
    """Connecting to a node: verify its certificate (unless ``verify=False``), ours if given."""
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT)
    if tls.verify:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = True
        if tls.ca:
            _load_ca(ctx, tls.ca)
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert and tls.key:
        _load_chain(ctx, tls.cert, tls.key)
    return ctx


def server_context(tls: TLS) -> ssl.SSLContext:
    """Serving TLS: our certificate; client certificates verified against ``ca``.

    With ``require_client_cert`` a client without a certificate the CA signed is
    refused in the handshake; with only ``ca``, a client certificate is checked
    when one is sent.
    """
    if not (tls.cert and tls.key):
        raise ConfigError(
            "a TLS server needs TLS(cert=..., key=...): its certificate and private key",
            hint="dl.tls.make_demo_certificates(folder).server() gives a demo set",
        )
    ctx = _base(ssl.PROTOCOL_TLS_SERVER)
    _load_chain(ctx, tls.cert, tls.key)
    if tls.ca:
        _load_ca(ctx, tls.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    return ctx
