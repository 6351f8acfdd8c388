"""`CsrCertificate`: a serving certificate the cluster signs through a
``kubernetes.io/kubelet-serving`` CertificateSigningRequest, optionally approved by the
agent itself, waited for, checked against its key, and renewed by `RenewingCertificate`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from vkpy.errors import ConfigError, KubeApiError
from vkpy.jsontypes import JSON
from vkpy.kubeletapi.issuing import (
    RENEW_FRACTION,
    SIGNER,
    approved,
    build_csr,
    csr_object,
    issued_by,
    key_pem,
    matches_key,
    usages_for,
)
from vkpy.kubeletapi.protocols import KubeRequests
from vkpy.kubeletapi.renewing import RenewingCertificate, now
from vkpy.kubeletapi.tls import read_certificates

logger = logging.getLogger("vkpy.kubeletapi.certificates")  # one logger for every source

CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
MIN_EXPIRATION_SECONDS = 600  # the API's minimum for spec.expirationSeconds


class CsrCertificate(RenewingCertificate):
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
                body = approved(csr, node_name=self.node_name, now=now())
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
        # Approved by ourselves, it only waits for the signer: say so if that is slow.
        next_reminder = 10.0 if self.approve_own else 0.0
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
