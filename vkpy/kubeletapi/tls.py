"""TLS for the kubelet API: server contexts, and swapping certificates under a live listener.

The listener is created once with a context that holds no certificate of its own.
Its SNI callback, which OpenSSL runs for every ClientHello (with or without a server
name), moves the new connection onto the context of the certificate that is current
at that moment. Installing a renewed certificate is therefore one assignment: the
next handshake gets it, open connections keep theirs, and the listener never closes.
Until a first certificate is installed, handshakes fail, as the kubelet's do while its
serving certificate is not yet issued.

Every context requests a client certificate and verifies it against the client CA
(``CERT_OPTIONAL``): requests without one fall through to bearer tokens.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from datetime import datetime
from pathlib import Path

from cryptography import x509

logger = logging.getLogger(__name__)

REFUSED_LOG_SECONDS = 60.0  # how often refused handshakes are logged while no certificate


def server_context(
    client_ca: bytes | None, certificate: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2+) that verifies optional client certificates
    against ``client_ca`` (PEM), serving the certificate chain in the PEM file
    ``certificate`` with its private key from ``key`` (default: the same file);
    without a certificate, a listening context."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_ca:
        context.load_verify_locations(cadata=client_ca.decode("ascii"))
        context.verify_mode = ssl.CERT_OPTIONAL
    if certificate is not None:
        context.load_cert_chain(certificate, key)
    return context


def read_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle (which may also hold a private key)."""
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        return []


class ServingTls:
    """Holds the current serving certificate and hands out the listening context."""

    def __init__(self, client_ca: bytes | None) -> None:
        self.client_ca = client_ca
        self.certificate: x509.Certificate | None = None
        self._context: ssl.SSLContext | None = None
        self._listening: ssl.SSLContext | None = None
        self._ready = asyncio.Event()
        self._refused_logged = -REFUSED_LOG_SECONDS

    def listening_context(self) -> ssl.SSLContext:
        if self._listening is None:
            listening = server_context(self.client_ca)
            listening.sni_callback = self._select
            self._listening = listening
        return self._listening

    def _select(
        self, connection: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext
    ) -> int | None:
        current = self._context
        if current is None:
            now = time.monotonic()
            if now - self._refused_logged >= REFUSED_LOG_SECONDS:
                self._refused_logged = now
                logger.warning("TLS handshakes refused: no serving certificate yet")
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        connection.context = current
        return None

    def install(self, certificate: Path, key: Path | None = None) -> x509.Certificate:
        """Serve the certificate chain in the PEM file ``certificate`` with the private key
        in ``key`` (default: the same file) from the next handshake on. Raises
        ssl.SSLError or OSError when they cannot be loaded or do not match."""
        context = server_context(self.client_ca, certificate, key)  # checks the pair
        certificates = read_certificates(certificate.read_bytes())
        if not certificates:
            raise ssl.SSLError(f"{certificate}: no certificate found")
        self._context = context
        self.certificate = certificates[0]
        self._ready.set()
        logger.info(
            "serving certificate %s, serial %x, valid until %s",
            self.certificate.subject.rfc4514_string(),
            self.certificate.serial_number,
            self.certificate.not_valid_after_utc.isoformat(),
        )
        return self.certificate

    async def wait_ready(self) -> None:
        """Return once a certificate is being served."""
        await self._ready.wait()

    @property
    def not_after(self) -> datetime | None:
        return None if self.certificate is None else self.certificate.not_valid_after_utc
