"""The sources that obtain their serving certificate themselves (`CsrCertificate`,
`SelfSignedCertificate`): one PEM file in ``state_dir`` (chain, then key), reused at start
while it is valid for the node, and a loop that renews it at ``renew_fraction`` of its
lifetime and swaps it in under the running listener, backing off when that fails.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import ssl
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from vkpy.aio import backoff
from vkpy.errors import ConfigError, KubeApiError
from vkpy.kubeletapi.issuing import RENEW_FRACTION, covers, renewal_time, write_private
from vkpy.kubeletapi.tls import ServingTls, read_certificates

logger = logging.getLogger("vkpy.kubeletapi.certificates")  # one logger for every source

MAX_SLEEP = 3600.0  # re-check at least hourly, so a changed clock cannot strand a renewal


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class RenewingCertificate(ServingTls, ABC):
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
            return now()  # signed by a CA the cluster no longer uses: replace it now
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
        if not chain or chain[0].not_valid_after_utc <= now():
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
        if renew_at is not None and renew_at <= now():
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
            renew_at, current = self.renew_at, now()
            if renew_at is not None and renew_at > current:
                await asyncio.sleep(min((renew_at - current).total_seconds(), MAX_SLEEP))
            elif await self._renew_quietly():
                failures = 0
            else:
                await asyncio.sleep(
                    backoff(failures, first=self.retry_seconds, cap=self.max_retry_seconds)
                )
                failures = min(failures + 1, 16)
