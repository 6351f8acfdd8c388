"""Pure X.509 work for the serving certificate: CSRs, CSR objects, self-signed
certificates, renewal times, and private files. No I/O but `write_private`."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vkpy.jsontypes import JSON

SIGNER = "kubernetes.io/kubelet-serving"
RENEW_FRACTION = 0.8
SELF_SIGNED_VALIDITY = datetime.timedelta(days=365)


def node_subject(node_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node_name}"),
        ]
    )


def subject_alt_names(
    ip_addresses: Sequence[str], dns_names: Sequence[str]
) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    return x509.SubjectAlternativeName(names)


def build_csr(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    *,
    node_name: str,
    ip_addresses: Sequence[str],
    dns_names: Sequence[str] = (),
) -> bytes:
    """A PEM certificate request the kubelet-serving signer accepts."""
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(node_subject(node_name))
        .add_extension(subject_alt_names(ip_addresses, dns_names), critical=False)
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM)


def usages_for(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> list[str]:
    """Key usages to ask for: key encipherment only makes sense for RSA keys."""
    usages = ["digital signature", "server auth"]
    if isinstance(key, rsa.RSAPrivateKey):
        usages.insert(1, "key encipherment")
    return usages


def csr_object(
    request_pem: bytes,
    *,
    node_name: str,
    usages: Sequence[str],
    expiration_seconds: int | None = None,
) -> JSON:
    """The CertificateSigningRequest object for ``request_pem``."""
    spec: JSON = {
        "request": base64.b64encode(request_pem).decode("ascii"),
        "signerName": SIGNER,
        "usages": list(usages),
    }
    if expiration_seconds is not None:
        spec["expirationSeconds"] = expiration_seconds
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": f"{node_name[:200]}-serving-"},
        "spec": spec,
    }


def approved(csr: JSON, *, node_name: str, now: datetime.datetime) -> JSON:
    """``csr`` with an Approved condition added, for the approval subresource."""
    condition = {
        "type": "Approved",
        "status": "True",
        "reason": "VkpySelfApproved",
        "message": f"approved by the vkpy agent of node {node_name}",
        "lastUpdateTime": now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    status = dict(csr.get("status") or {})
    status["conditions"] = [*(status.get("conditions") or []), condition]
    return {**csr, "status": status}


def renewal_time(
    certificate: x509.Certificate, fraction: float = RENEW_FRACTION
) -> datetime.datetime:
    """When to renew: ``fraction`` of the way from notBefore to notAfter."""
    start = certificate.not_valid_before_utc
    return start + (certificate.not_valid_after_utc - start) * fraction


def covers(
    certificate: x509.Certificate, ip_addresses: Sequence[str], dns_names: Sequence[str]
) -> bool:
    """Whether the certificate names every address and DNS name the node is reached by."""
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    names = set(sans.get_values_for_type(x509.DNSName))
    wanted_ips = {str(ipaddress.ip_address(a)) for a in ip_addresses}
    return wanted_ips <= ips and set(dns_names) <= names


def issued_by(certificate: x509.Certificate, authorities: bytes | None) -> bool:
    """Whether one of the CA certificates in ``authorities`` (PEM) signed ``certificate``.

    No authorities: nothing to check against, so True. A certificate from another
    cluster's CA (a rebuilt cluster, a rotated CA) is False: the apiserver would refuse it.
    """
    if not authorities:
        return True
    for authority in x509.load_pem_x509_certificates(authorities):
        try:
            certificate.verify_directly_issued_by(authority)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def matches_key(
    certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
) -> bool:
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return certificate.public_key().public_bytes(der, spki) == key.public_key().public_bytes(
        der, spki
    )


def self_signed(
    key: ec.EllipticCurvePrivateKey,
    *,
    node_name: str,
    ip_addresses: Sequence[str],
    dns_names: Sequence[str],
    now: datetime.datetime,
    validity: datetime.timedelta = SELF_SIGNED_VALIDITY,
) -> x509.Certificate:
    subject = node_subject(node_name)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(subject_alt_names(ip_addresses, dns_names), critical=False)
        .sign(key, hashes.SHA256())
    )


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, atomically (a reader never sees half)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
