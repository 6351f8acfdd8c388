"""Serving certificates without a cluster: CSR contents, renewal times, files, self-signed,
and certificates swapped under a live listener. The CSR flow against the real
apiserver and controller-manager is in tests/integration/test_kubelet_api.py."""

import asyncio
import base64
import datetime
import ipaddress
import logging
import ssl
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import ValidationError

from vkpy.config import KubeletApiConfig
from vkpy.errors import ConfigError
from vkpy.kubeletapi.certificates import (
    CsrCertificate,
    FileCertificate,
    SelfSignedCertificate,
    serving_certificate,
)
from vkpy.kubeletapi.issuing import (
    SIGNER,
    approved,
    build_csr,
    covers,
    csr_object,
    key_pem,
    renewal_time,
    usages_for,
    write_private,
)
from vkpy.kubeletapi.tls import ServingTls
from vkpy.testing import pki
from vkpy.testing.waiting import eventually

UTC = datetime.UTC


def certificate(
    ca: pki.KeyPair,
    *,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    ips: tuple[str, ...] = ("127.0.0.1",),
    common_name: str = "system:node:n",
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    if ips:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(a)) for a in ips]),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256()), key


def bundle(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM) + key_pem(key)


@pytest.fixture
def ca(tmp_path: Path) -> pki.KeyPair:
    return pki.create_ca(tmp_path / "ca", "test-ca")


async def served(port: int, ca: pki.KeyPair) -> x509.Certificate:
    """The certificate a new connection to ``port`` is served."""
    context = ssl.create_default_context(cafile=str(ca.cert))
    context.check_hostname = False
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    return x509.load_der_x509_certificate(der)


@pytest.fixture
async def listener() -> AsyncIterator[list]:
    """Start an HTTPS listener for a TLS provider: ``port = await start(provider)``."""
    runners: list[web.AppRunner] = []

    async def start(provider: ServingTls) -> int:
        runner = web.AppRunner(web.Application())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=provider.listening_context())
        await site.start()
        runners.append(runner)
        return int(runner.addresses[0][1])

    yield [start]
    for runner in runners:
        await runner.cleanup()


# ---------------------------------------------------------------- pure helpers


def test_renewal_is_at_80_percent_of_the_lifetime(ca):
    start = datetime.datetime(2026, 1, 1, tzinfo=UTC)
    cert, _ = certificate(ca, not_before=start, not_after=start + datetime.timedelta(seconds=1000))
    assert renewal_time(cert) == start + datetime.timedelta(seconds=800)
    assert renewal_time(cert, 0.5) == start + datetime.timedelta(seconds=500)


def test_csr_names_the_node_as_the_kubelet_serving_signer_requires():
    key = ec.generate_private_key(ec.SECP256R1())
    pem = build_csr(key, node_name="hpc-1", ip_addresses=["10.0.0.5"], dns_names=["hpc-1.example"])
    request = x509.load_pem_x509_csr(pem)
    assert request.is_signature_valid
    assert request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "system:node:hpc-1"
    )
    organizations = request.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [o.value for o in organizations] == ["system:nodes"]
    sans = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    assert sans.get_values_for_type(x509.DNSName) == ["hpc-1.example"]


def test_key_encipherment_only_for_rsa():
    assert usages_for(ec.generate_private_key(ec.SECP256R1())) == [
        "digital signature",
        "server auth",
    ]
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert usages_for(rsa_key) == ["digital signature", "key encipherment", "server auth"]


def test_csr_object():
    obj = csr_object(b"PEM", node_name="n", usages=["digital signature", "server auth"])
    assert obj == {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": "n-serving-"},
        "spec": {
            "request": base64.b64encode(b"PEM").decode(),
            "signerName": SIGNER,
            "usages": ["digital signature", "server auth"],
        },
    }
    assert (
        csr_object(b"", node_name="n", usages=[], expiration_seconds=600)["spec"][
            "expirationSeconds"
        ]
        == 600
    )


def test_approval_adds_a_condition_and_keeps_the_rest():
    csr = {"metadata": {"name": "x"}, "status": {"conditions": [{"type": "Other"}]}}
    now = datetime.datetime(2026, 11, 25, 8, 30, tzinfo=UTC)
    result = approved(csr, node_name="n", now=now)
    assert [c["type"] for c in result["status"]["conditions"]] == ["Other", "Approved"]
    assert result["status"]["conditions"][1]["lastUpdateTime"] == "2026-11-25T08:30:00Z"
    assert result["status"]["conditions"][1]["status"] == "True"
    assert csr["status"]["conditions"] == [{"type": "Other"}]  # not modified in place


def test_covers(ca):
    now = datetime.datetime.now(UTC)
    cert, _ = certificate(ca, not_before=now, not_after=now + datetime.timedelta(days=1))
    assert covers(cert, ["127.0.0.1"], [])
    assert not covers(cert, ["10.0.0.1"], [])
    assert not covers(cert, ["127.0.0.1"], ["node.example"])
    bare, _ = certificate(ca, not_before=now, not_after=now + datetime.timedelta(days=1), ips=())
    assert not covers(bare, ["127.0.0.1"], [])


def test_private_files_are_0600_and_replaced_whole(tmp_path):
    target = tmp_path / "state" / "key.pem"
    write_private(target, b"one")
    write_private(target, b"two")
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["key.pem"]  # no temporary left


# ---------------------------------------------------------------- hot swap


async def test_no_handshake_before_a_certificate_then_swaps_without_a_restart(
    ca, tmp_path, listener
):
    provider = ServingTls(ca.cert.read_bytes())
    port = await listener[0](provider)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await served(port, ca)
    first = pki.issue(ca, tmp_path / "a", common_name="a", server=True, ip_addresses=("127.0.0.1",))
    provider.install(first.cert, first.key)
    await asyncio.wait_for(provider.wait_ready(), 1)
    assert (await served(port, ca)).subject.rfc4514_string() == "CN=a"
    second = pki.issue(
        ca, tmp_path / "b", common_name="b", server=True, ip_addresses=("127.0.0.1",)
    )
    provider.install(second.cert, second.key)
    assert (await served(port, ca)).subject.rfc4514_string() == "CN=b"


def test_a_mismatched_pair_is_refused_and_the_old_one_kept(ca, tmp_path):
    provider = ServingTls(None)
    first = pki.issue(ca, tmp_path / "a", common_name="a", server=True, ip_addresses=("127.0.0.1",))
    other = pki.issue(ca, tmp_path / "b", common_name="b", server=True, ip_addresses=("127.0.0.1",))
    provider.install(first.cert, first.key)
    with pytest.raises(ssl.SSLError):
        provider.install(first.cert, other.key)
    assert provider.certificate is not None
    assert provider.certificate.subject.rfc4514_string() == "CN=a"


# ---------------------------------------------------------------- files


async def test_files_are_reloaded_when_they_change(ca, tmp_path, listener, caplog):
    issued = pki.issue(
        ca, tmp_path / "one", common_name="one", server=True, ip_addresses=("127.0.0.1",)
    )
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_file.write_bytes(issued.cert.read_bytes())
    key_file.write_bytes(issued.key.read_bytes())
    source = FileCertificate(cert_file, key_file, client_ca=None, reload_seconds=0.05)
    source.load()
    port = await listener[0](source)
    task = asyncio.create_task(source.run())
    try:
        assert (await served(port, ca)).subject.rfc4514_string() == "CN=one"
        # A rotation caught half-way (new certificate, old key) is refused, the old kept.
        renewed = pki.issue(
            ca, tmp_path / "two", common_name="two", server=True, ip_addresses=("127.0.0.1",)
        )
        cert_file.write_bytes(renewed.cert.read_bytes())
        await eventually(lambda: "not reloaded" in caplog.text, timeout=10, what="the warning")
        assert "not reloaded" in caplog.text
        assert (await served(port, ca)).subject.rfc4514_string() == "CN=one"
        key_file.write_bytes(renewed.key.read_bytes())

        async def swapped() -> bool:
            return (await served(port, ca)).subject.rfc4514_string() == "CN=two"

        assert await eventually(swapped, timeout=10, what="the new certificate served")
        assert not task.done()
    finally:
        task.cancel()


def test_unusable_files_refuse_to_start(tmp_path):
    source = FileCertificate(tmp_path / "no.crt", tmp_path / "no.key", client_ca=None)
    with pytest.raises(ConfigError, match=r"no\.crt"):
        source.load()


# ---------------------------------------------------------------- self-signed


async def test_self_signed_is_stored_reused_and_loud(tmp_path, caplog, listener):
    caplog.set_level(logging.WARNING)
    kwargs = {
        "node_name": "n",
        "ip_addresses": ["127.0.0.1"],
        "dns_names": ["n.local"],
        "state_dir": tmp_path / "state",
        "client_ca": None,
    }
    source = SelfSignedCertificate(**kwargs)
    port = await listener[0](source)
    task = asyncio.create_task(source.run())
    try:
        await asyncio.wait_for(source.wait_ready(), 5)
        assert "SELF-SIGNED" in caplog.text
        stored = tmp_path / "state" / "kubelet-server-self-signed.pem"
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600
        context = ssl.create_default_context(cafile=None)
        context.load_verify_locations(cadata=stored.read_text().split("-----BEGIN PRIVATE")[0])
        context.check_hostname = False
        _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        cert = x509.load_der_x509_certificate(der)
        assert cert.serial_number == source.certificate.serial_number
        assert cert.subject.rfc4514_string() == "CN=system:node:n,O=system:nodes"
        assert covers(cert, ["127.0.0.1"], ["n.local"])
    finally:
        task.cancel()
    again = SelfSignedCertificate(**kwargs)
    assert again.load_existing()
    assert again.certificate.serial_number == source.certificate.serial_number


async def test_a_stored_certificate_past_its_renewal_time_is_served_then_renewed(
    ca, tmp_path, listener
):
    state = tmp_path / "state"
    now = datetime.datetime.now(UTC)
    old, key = certificate(
        ca,
        not_before=now - datetime.timedelta(days=90),
        not_after=now + datetime.timedelta(days=10),
    )
    write_private(state / "kubelet-server-self-signed.pem", bundle(old, key))
    source = SelfSignedCertificate(
        node_name="n", ip_addresses=["127.0.0.1"], dns_names=[], state_dir=state, client_ca=None
    )
    assert source.load_existing()
    assert source.certificate.serial_number == old.serial_number
    assert source.renew_at < now
    task = asyncio.create_task(source.run())
    try:
        await eventually(
            lambda: source.certificate.serial_number != old.serial_number,
            timeout=10,
            what="a renewed certificate",
        )
        assert source.certificate.serial_number != old.serial_number
        assert source.renew_at > now + datetime.timedelta(days=200)
    finally:
        task.cancel()


def test_stored_certificates_that_expired_or_name_other_addresses_are_not_used(ca, tmp_path):
    state = tmp_path / "state"
    now = datetime.datetime.now(UTC)
    kwargs = {
        "node_name": "n",
        "ip_addresses": ["127.0.0.1"],
        "dns_names": [],
        "state_dir": state,
        "client_ca": None,
    }
    expired, key = certificate(
        ca, not_before=now - datetime.timedelta(days=2), not_after=now - datetime.timedelta(days=1)
    )
    write_private(state / "kubelet-server-self-signed.pem", bundle(expired, key))
    assert not SelfSignedCertificate(**kwargs).load_existing()
    elsewhere, key = certificate(
        ca, not_before=now, not_after=now + datetime.timedelta(days=1), ips=("10.1.1.1",)
    )
    write_private(state / "kubelet-server-self-signed.pem", bundle(elsewhere, key))
    assert not SelfSignedCertificate(**kwargs).load_existing()
    assert SelfSignedCertificate(**{**kwargs, "ip_addresses": ["10.1.1.1"]}).load_existing()


# ---------------------------------------------------------------- configuration


def test_factory_builds_what_the_config_names(tmp_path):
    common = {
        "kube": None,
        "node_name": "n",
        "ip_addresses": ["127.0.0.1"],
        "state_dir": tmp_path,
        "client_ca": None,
    }
    csr = serving_certificate(
        KubeletApiConfig(approve_own_csr=True, csr_expiration_seconds=3600), **common
    )
    assert isinstance(csr, CsrCertificate)
    assert (csr.approve_own, csr.expiration_seconds) == (True, 3600)
    files = KubeletApiConfig(
        serving_certificate="files", cert_file=tmp_path / "c", key_file=tmp_path / "k"
    )
    assert isinstance(serving_certificate(files, **common), FileCertificate)
    assert isinstance(
        serving_certificate(KubeletApiConfig(serving_certificate="self-signed"), **common),
        SelfSignedCertificate,
    )


def test_config_refuses_what_cannot_work():
    with pytest.raises(ValidationError, match="needs cert_file and key_file"):
        KubeletApiConfig(serving_certificate="files")
    with pytest.raises(ValidationError, match="csr_expiration_seconds"):
        KubeletApiConfig(csr_expiration_seconds=60)
    with pytest.raises(ConfigError, match="IP address or DNS name"):
        SelfSignedCertificate(
            node_name="n", ip_addresses=[], dns_names=[], state_dir=Path("/nowhere"), client_ca=None
        )
    with pytest.raises(ConfigError, match="expirationSeconds"):
        CsrCertificate(
            None,
            node_name="n",
            ip_addresses=["127.0.0.1"],
            state_dir=Path("/nowhere"),
            client_ca=None,
            expiration_seconds=599,
        )


# ---------------------------------------------------------------- another cluster's CA


class SigningCluster:
    """A cluster whose signer issues every kubelet-serving CSR at once with ``ca``."""

    def __init__(self, ca: pki.KeyPair) -> None:
        self.ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
        self.ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
        self.issued: dict[str, bytes] = {}

    async def request(self, method: str, path: str, *, body: Any = None) -> dict[str, Any]:
        if method == "POST":
            name = f"csr-{len(self.issued)}"
            pem = base64.b64decode(body["spec"]["request"])
            csr = x509.load_pem_x509_csr(pem)
            now = datetime.datetime.now(UTC)
            cert = (
                x509.CertificateBuilder()
                .subject_name(csr.subject)
                .issuer_name(self.ca_cert.subject)
                .public_key(csr.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now)
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(
                    csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value,
                    critical=False,
                )
                .sign(self.ca_key, hashes.SHA256())
            )
            self.issued[name] = cert.public_bytes(serialization.Encoding.PEM)
            return {"metadata": {"name": name}}
        name = path.rsplit("/", 1)[-1]
        return {"status": {"certificate": base64.b64encode(self.issued[name]).decode()}}


async def test_a_certificate_signed_by_another_clusters_ca_is_replaced(tmp_path, caplog):
    old_cluster = pki.create_ca(tmp_path / "old", "old-cluster-ca")
    new_cluster = pki.create_ca(tmp_path / "new", "new-cluster-ca")
    state = tmp_path / "state"
    now = datetime.datetime.now(UTC)
    stale, key = certificate(
        old_cluster, not_before=now, not_after=now + datetime.timedelta(days=300)
    )
    write_private(state / CsrCertificate.file_name, bundle(stale, key))
    cluster = SigningCluster(new_cluster)
    common = {"node_name": "n", "ip_addresses": ["127.0.0.1"], "state_dir": state}
    source = CsrCertificate(
        cluster, **common, client_ca=new_cluster.cert.read_bytes(), poll_seconds=0.01
    )
    assert not source.load_existing()
    assert "signed by a CA this cluster does not use" in caplog.text
    # The same certificate is fine for the cluster whose CA signed it.
    same = CsrCertificate(cluster, **common, client_ca=old_cluster.cert.read_bytes())
    assert same.load_existing()
    task = asyncio.create_task(source.run())
    try:
        await eventually(lambda: source.certificate is not None, timeout=10, what="a certificate")
        assert source.certificate.issuer.rfc4514_string() == "CN=new-cluster-ca"
        assert source.renew_at > now + datetime.timedelta(days=20)
    finally:
        task.cancel()
    # Served by an agent that started before the CA changed: renewal is due at once.
    same.client_ca = new_cluster.cert.read_bytes()
    assert same.renew_at is not None and same.renew_at <= datetime.datetime.now(UTC)
