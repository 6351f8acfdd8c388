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
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import ssl
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from vkpy.aio import backoff
from vkpy.config import KubeletApiConfig
from vkpy.errors import ConfigError, KubeApiError
from vkpy.jsontypes import JSON
from vkpy.kubeletapi.issuing import (
    RENEW_FRACTION,
    SIGNER,
    approved,
    build_csr,
    covers,
    csr_object,
    issued_by,
    key_pem,
    matches_key,
    renewal_time,
    self_signed,
    usages_for,
    write_private,
)
from vkpy.kubeletapi.protocols import KubeRequests
from vkpy.kubeletapi.tls import ServingTls, read_certificates

logger = logging.getLogger(__name__)

CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
MIN_EXPIRATION_SECONDS = 600  # the API's minimum for spec.expirationSeconds
_MAX_SLEEP = 3600.0  # re-check at least hourly, so a changed clock cannot strand a renewal


class ServingCertificate(Protocol):
    """A serving certificate source: a TLS provider with a loop that keeps it current."""

    def listening_context(self) -> ssl.SSLContext: ...

    async def wait_ready(self) -> None: ...

    async def run(self) -> None: ...


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


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


class _RenewingCertificate(ServingTls, ABC):
    """A certificate the agent obtains itself, kept in ``state_dir`` and renewed."""

    file_name = "kubelet-server.pem"

    def __init__(
        self,
        *,
        node_name: str,
        ip_addresses: Sequence[str],
        dns_names: Sequence[str],
        state_dir: Path,
        client_ca: bytes | None,
        renew_fraction: float = RENEW_FRACTION,
        retry_seconds: float = 5.0,
        max_retry_seconds: float = 300.0,
    ) -> None:
        super().__init__(client_ca)
        if not ip_addresses and not dns_names:
            raise ConfigError(
                "kubelet_api: the serving certificate needs an IP address or DNS name"
            )
        self.node_name = node_name
        self.ip_addresses = tuple(ip_addresses)
        self.dns_names = tuple(dns_names)
        self.path = state_dir / self.file_name
        self.renew_fraction = renew_fraction
        self.retry_seconds = retry_seconds
        self.max_retry_seconds = max_retry_seconds
        # A fresh certificate the cluster signed outside the configured CA: served (a
        # second request would get the same), not renewed in a loop.
        self._untrusted_accepted = False

    @property
    def renew_at(self) -> datetime.datetime | None:
        if self.certificate is None:
            return None
        if not self.trusted(self.certificate) and not self._untrusted_accepted:
            return _now()  # signed by a CA the cluster no longer uses: replace it now
        return renewal_time(self.certificate, self.renew_fraction)

    def load_existing(self) -> bool:
        """Serve the stored certificate if it is still valid for this node."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return False
        except OSError as exc:
            logger.warning("cannot read %s: %s", self.path, exc)
            return False
        chain = read_certificates(data)
        if not chain or chain[0].not_valid_after_utc <= _now():
            logger.info("stored serving certificate %s has expired", self.path)
            return False
        if not covers(chain[0], self.ip_addresses, self.dns_names):
            logger.info("stored serving certificate does not name this node's addresses")
            return False
        if not self.trusted(chain[0]):
            logger.warning(
                "stored serving certificate %s was signed by a CA this cluster does not use "
                "(issuer %s): requesting a new one",
                self.path,
                chain[0].issuer.rfc4514_string(),
            )
            return False
        try:
            self.install(self.path)
        except (ssl.SSLError, OSError) as exc:
            logger.warning("stored serving certificate %s unusable: %s", self.path, exc)
            return False
        return True

    def trusted(self, certificate: x509.Certificate) -> bool:
        """Whether the apiserver can verify ``certificate``; see `CsrCertificate`."""
        return True

    @abstractmethod
    async def obtain(self) -> bytes | None:
        """A new certificate chain and key as one PEM bundle, or None to retry later."""

    async def renew(self) -> bool:
        """Obtain a new certificate, store it and serve it. False: retry later."""
        bundle = await self.obtain()
        if bundle is None:
            return False
        write_private(self.path, bundle)
        try:
            self.install(self.path)
        except (ssl.SSLError, OSError) as exc:
            logger.error("new serving certificate unusable: %s", exc)
            return False
        if self.certificate is not None and not self.trusted(self.certificate):
            logger.warning(
                "the new serving certificate's issuer %s is not in the CA bundle the "
                "apiserver is expected to verify kubelets with (kubelet_api.client_ca_file, "
                "else the kubeconfig's CA): kubectl logs may fail with an unknown authority",
                self.certificate.issuer.rfc4514_string(),
            )
            self._untrusted_accepted = True
        else:
            self._untrusted_accepted = False
        logger.info("serving certificate renewed; next renewal at %s", self.renew_at)
        return True

    async def _renew_quietly(self) -> bool:
        try:
            if not await self.renew():
                return False
        except KubeApiError as exc:
            logger.warning("serving certificate request failed: %s", exc)
            return False
        renew_at = self.renew_at
        if renew_at is not None and renew_at <= _now():
            logger.warning(
                "the new serving certificate is due for renewal already "
                "(a very short lifetime, or a skewed clock)"
            )
            return False
        return True

    async def run(self) -> None:
        if self.certificate is None:
            self.load_existing()
        failures = 0
        while True:
            renew_at, now = self.renew_at, _now()
            if renew_at is not None and renew_at > now:
                await asyncio.sleep(min((renew_at - now).total_seconds(), _MAX_SLEEP))
            elif await self._renew_quietly():
                failures = 0
            else:
                await asyncio.sleep(
                    backoff(failures, first=self.retry_seconds, cap=self.max_retry_seconds)
                )
                failures = min(failures + 1, 16)


class CsrCertificate(_RenewingCertificate):
    """A serving certificate signed by the cluster through a kubelet-serving CSR."""

    file_name = "kubelet-server-current.pem"

    def __init__(
        self,
        kube: KubeRequests,
        *,
        node_name: str,
        ip_addresses: Sequence[str],
        dns_names: Sequence[str] = (),
        state_dir: Path,
        client_ca: bytes | None,
        approve_own: bool = False,
        expiration_seconds: int | None = None,
        poll_seconds: float = 2.0,
        renew_fraction: float = RENEW_FRACTION,
        retry_seconds: float = 5.0,
    ) -> None:
        super().__init__(
            node_name=node_name,
            ip_addresses=ip_addresses,
            dns_names=dns_names,
            state_dir=state_dir,
            client_ca=client_ca,
            renew_fraction=renew_fraction,
            retry_seconds=retry_seconds,
        )
        if expiration_seconds is not None and expiration_seconds < MIN_EXPIRATION_SECONDS:
            raise ConfigError(
                f"kubelet_api: a CSR's expirationSeconds must be >= {MIN_EXPIRATION_SECONDS}"
            )
        self.kube = kube
        self.approve_own = approve_own
        self.expiration_seconds = expiration_seconds
        self.poll_seconds = poll_seconds
        self.pending: str | None = None  # name of the CSR being waited for

    def trusted(self, certificate: x509.Certificate) -> bool:
        """Signed by the CA the apiserver verifies kubelets with: the agent knows it as
        ``client_ca`` (kubelet_api.client_ca_file, else the kubeconfig's cluster CA)."""
        return issued_by(certificate, self.client_ca)

    async def obtain(self) -> bytes | None:
        key = ec.generate_private_key(ec.SECP256R1())
        request = build_csr(
            key, node_name=self.node_name, ip_addresses=self.ip_addresses, dns_names=self.dns_names
        )
        body = csr_object(
            request,
            node_name=self.node_name,
            usages=usages_for(key),
            expiration_seconds=self.expiration_seconds,
        )
        created = await self.kube.request("POST", CSRS, body=body)
        name = created["metadata"]["name"]
        self.pending = name
        try:
            logger.info("created CertificateSigningRequest %s for the serving certificate", name)
            if self.approve_own:
                await self._approve(created)
            issued = await self._wait_issued(name)
        finally:
            self.pending = None
        if issued is None:
            return None
        chain = read_certificates(issued)
        if not chain or not matches_key(chain[0], key):
            logger.error("CSR %s was issued a certificate that does not match its key", name)
            return None
        return issued.rstrip(b"\n") + b"\n" + key_pem(key)

    async def _approve(self, csr: JSON) -> None:
        name = csr["metadata"]["name"]
        path = f"{CSRS}/{name}/approval"
        for _ in range(5):
            try:
                body = approved(csr, node_name=self.node_name, now=_now())
                await self.kube.request("PUT", path, body=body)
            except KubeApiError as exc:
                if exc.status == 409:  # changed meanwhile: approve the current version
                    csr = await self.kube.request("GET", f"{CSRS}/{name}")
                    continue
                if exc.status in (401, 403):
                    logger.error(
                        "cannot approve own CSR %s (RBAC: update certificatesigningrequests/"
                        "approval and approve signers/%s); waiting for the cluster: %s",
                        name,
                        SIGNER,
                        exc,
                    )
                    return
                raise
            logger.info("approved own CSR %s", name)
            return

    async def _wait_issued(self, name: str) -> bytes | None:
        """The issued chain (PEM), or None when the CSR was denied, failed or deleted."""
        next_reminder = 0.0
        waited = 0.0
        while True:
            try:
                csr = await self.kube.request("GET", f"{CSRS}/{name}")
            except KubeApiError as exc:
                if exc.status == 404:
                    logger.warning("CSR %s was deleted before it was issued", name)
                    return None
                logger.warning("cannot read CSR %s, retrying: %s", name, exc)
                csr = {}
            status = csr.get("status") or {}
            for condition in status.get("conditions") or ():
                if (
                    condition.get("type") in ("Denied", "Failed")
                    and condition.get("status") != "False"
                ):
                    logger.error(
                        "CSR %s %s: %s %s",
                        name,
                        condition["type"].lower(),
                        condition.get("reason", ""),
                        condition.get("message", ""),
                    )
                    return None
            if status.get("certificate"):
                return base64.b64decode(status["certificate"])
            if waited >= next_reminder:
                next_reminder = waited + 60.0
                logger.warning(
                    "waiting for CSR %s to be approved and signed "
                    "(an operator can run: kubectl certificate approve %s)",
                    name,
                    name,
                )
            await asyncio.sleep(self.poll_seconds)
            waited += self.poll_seconds


class SelfSignedCertificate(_RenewingCertificate):
    """A self-signed certificate: TLS works, but nobody can verify who serves it."""

    file_name = "kubelet-server-self-signed.pem"

    async def obtain(self) -> bytes | None:
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = self_signed(
            key,
            node_name=self.node_name,
            ip_addresses=self.ip_addresses,
            dns_names=self.dns_names,
            now=_now(),
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
