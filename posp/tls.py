"""TLS for the terminal listener and the HSM link (and the HSM simulator's port).

Terminals reach a switch over public mobile networks, and payShield offers TLS
on its host port; both links can be wrapped.  The settings name files (PEM); a
section whose certificate (listener) or CA (client) is unset means plain TCP,
which stays the default for a lab.  HAProxy can terminate terminal TLS instead
(docs/deploying.md).

Invariants: contexts are built once at start from files; a missing or bad file
is a ``ConfigError`` naming the setting and the path; TLS 1.2 is the floor; a
listener with a client CA requires and verifies client certificates.
"""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

from cryptography import x509
from pydantic import BaseModel, ConfigDict

from posp.errors import ConfigError


class ListenerTls(BaseModel):
    """TLS of a listening port (the terminal listener, the HSM simulator)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cert_file: Path | None = None  # server certificate chain (PEM); unset = plain TCP
    key_file: Path | None = None  # its private key (PEM)
    client_ca_file: Path | None = None  # set: clients must show a certificate it signed

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None


class ClientTls(BaseModel):
    """TLS of an outgoing link (the switch's HSM connections)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: Path | None = None  # CA that signed the server's certificate; unset = plain TCP
    cert_file: Path | None = None  # client certificate, when the server asks for one
    key_file: Path | None = None
    server_name: str = ""  # name to verify in the server's certificate (default: the host)

    @property
    def enabled(self) -> bool:
        return self.ca_file is not None


def server_context(tls: ListenerTls, what: str) -> ssl.SSLContext | None:
    """The listener's context, None for plain TCP.  ``what`` names the settings
    section in errors (``tls``, ``hsm-sim --tls-cert`` ...)."""
    if not tls.enabled:
        return None
    if tls.key_file is None:
        raise ConfigError(f"{what}.key_file is required with {what}.cert_file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    assert tls.cert_file is not None
    _load_chain(context, tls.cert_file, tls.key_file, what)
    if tls.client_ca_file is not None:
        _load_ca(context, tls.client_ca_file, f"{what}.client_ca_file")
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(tls: ClientTls, what: str) -> ssl.SSLContext | None:
    """The outgoing link's context (server certificate verified), None for plain TCP."""
    if not tls.enabled:
        return None
    assert tls.ca_file is not None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_ca(context, tls.ca_file, f"{what}.ca_file")
    if tls.cert_file is not None:
        if tls.key_file is None:
            raise ConfigError(f"{what}.key_file is required with {what}.cert_file")
        _load_chain(context, tls.cert_file, tls.key_file, what)
    return context


def certificate_expiry(cert_file: Path) -> dt.datetime:
    """notAfter of the first certificate in a PEM file (for the expiry metric)."""
    try:
        certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the certificate {cert_file}: {exc}") from None
    return certificate.not_valid_after_utc


def _load_chain(context: ssl.SSLContext, cert_file: Path, key_file: Path, what: str) -> None:
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{what}: cannot load the certificate {cert_file} with the key {key_file}: {exc}"
        ) from None


def _load_ca(context: ssl.SSLContext, ca_file: Path, what: str) -> None:
    try:
        context.load_verify_locations(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{what}: cannot load the CA file {ca_file}: {exc}") from None
