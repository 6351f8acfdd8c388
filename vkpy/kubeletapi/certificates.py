"""The kubelet API's serving certificate: from files, from a CSR the cluster signs, or self-signed.

``serving_certificate`` builds the one the configuration asks for. Each is a
`ServingTls` (give it to the server as its TLS provider) with ``run()``, a loop the
agent runs as a task for the agent's lifetime:

- `FileCertificate` serves ``cert_file``/``key_file`` and reloads them when they change
  (a half-written pair is refused and retried; the old pair is served meanwhile);
- `CsrCertificate` generates an EC P-256 key and asks for a certificate with a
  ``kubernetes.io/kubelet-serving`` CertificateSigningRequest: CN ``system:node:<node>``,
  O ``system:nodes``, the node's IP and DNS names as SANs, usages digital signature
  and server auth. The cluster (an operator, or an approver controller) must approve
  it; with ``approve_own`` the agent approves it itself through the ``approval``
  subresource where RBAC lets it. It waits for the signed certificate, renews at 80 %
  of its lifetime and swaps the new one in under the running listener;
- `SelfSignedCertificate` is the last resort: the apiserver cannot verify it, so
  ``kubectl logs`` fails; it says so loudly.

Certificates and keys live in ``state_dir`` as one PEM file per source (chain, then
key), written with mode 0600 and replaced atomically; a valid one is reused at start.
Keys are never logged.

The renewal loop the CSR and self-signed sources share is `renewing.RenewingCertificate`;
the CSR flow is in `csr`. Their names are re-exported here.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from vkpy.config import KubeletApiConfig
from vkpy.errors import ConfigError
from vkpy.kubeletapi.csr import CSRS, MIN_EXPIRATION_SECONDS, CsrCertificate
from vkpy.kubeletapi.issuing import key_pem, self_signed
from vkpy.kubeletapi.protocols import KubeRequests
from vkpy.kubeletapi.renewing import RenewingCertificate, now
from vkpy.kubeletapi.tls import ServingTls

__all__ = [
    "CSRS",
    "MIN_EXPIRATION_SECONDS",
    "CsrCertificate",
    "FileCertificate",
    "SelfSignedCertificate",
    "ServingCertificate",
    "serving_certificate",
]

logger = logging.getLogger(__name__)


class ServingCertificate(Protocol):
    """A serving certificate source: a TLS provider with a loop that keeps it current."""

    def listening_context(self) -> ssl.SSLContext: ...

    async def wait_ready(self) -> None: ...

    async def run(self) -> None: ...


# ---------------------------------------------------------------- sources


class FileCertificate(ServingTls):
    """A certificate and key an operator (or cert-manager) keeps in two files."""

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        *,
        client_ca: bytes | None,
        reload_seconds: float = 10.0,
    ) -> None:
        super().__init__(client_ca)
        self.cert_file = cert_file
        self.key_file = key_file
        self.reload_seconds = reload_seconds
        self._seen: tuple[tuple[int, int, int], ...] | None = None

    def _stamp(self) -> tuple[tuple[int, int, int], ...]:
        stats = (self.cert_file.stat(), self.key_file.stat())
        return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)

    def load(self) -> None:
        """Serve the files as they are now. Raises ConfigError when they are unusable."""
        try:
            stamp = self._stamp()
            self.install(self.cert_file, self.key_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"kubelet_api: {self.cert_file} and {self.key_file} are not a usable "
                f"certificate and key: {exc}"
            ) from exc
        self._seen = stamp

    async def run(self) -> None:
        if self._seen is None:
            self.load()
        while True:
            await asyncio.sleep(self.reload_seconds)
            try:
                changed = self._stamp() != self._seen
            except OSError as exc:
                logger.warning("serving certificate files unreadable, keeping the old: %s", exc)
                continue
            if changed:
                try:
                    self.load()
                except ConfigError as exc:  # caught mid-rotation, most likely: retry later
                    logger.warning("serving certificate not reloaded, keeping the old: %s", exc)


class SelfSignedCertificate(RenewingCertificate):
    """A self-signed certificate: TLS works, but nobody can verify who serves it."""

    file_name = "kubelet-server-self-signed.pem"

    async def obtain(self) -> bytes | None:
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = self_signed(
            key,
            node_name=self.node_name,
            ip_addresses=self.ip_addresses,
            dns_names=self.dns_names,
            now=now(),
        )
        return certificate.public_bytes(serialization.Encoding.PEM) + key_pem(key)

    async def run(self) -> None:
        logger.warning(
            "THE KUBELET API SERVES A SELF-SIGNED CERTIFICATE: the apiserver cannot verify "
            "it, so kubectl logs/exec to this node fail when the apiserver checks kubelet "
            "certificates (--kubelet-certificate-authority). Use serving_certificate 'csr' "
            "or 'files' instead."
        )
        await super().run()


def serving_certificate(
    config: KubeletApiConfig,
    *,
    kube: KubeRequests,
    node_name: str,
    ip_addresses: Sequence[str],
    state_dir: Path,
    client_ca: bytes | None,
) -> FileCertificate | CsrCertificate | SelfSignedCertificate:
    """The serving certificate source ``config.serving_certificate`` names."""
    dns_names = tuple(config.serving_dns_names)
    if config.serving_certificate == "files":
        if config.cert_file is None or config.key_file is None:
            raise ConfigError(
                "kubelet_api: serving_certificate 'files' needs cert_file and key_file"
            )
        return FileCertificate(config.cert_file, config.key_file, client_ca=client_ca)
    if config.serving_certificate == "csr":
        return CsrCertificate(
            kube,
            node_name=node_name,
            ip_addresses=ip_addresses,
            dns_names=dns_names,
            state_dir=state_dir,
            client_ca=client_ca,
            approve_own=config.approve_own_csr,
            expiration_seconds=config.csr_expiration_seconds,
        )
    return SelfSignedCertificate(
        node_name=node_name,
        ip_addresses=ip_addresses,
        dns_names=dns_names,
        state_dir=state_dir,
        client_ca=client_ca,
    )
