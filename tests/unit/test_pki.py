import stat

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from vkpy.testing import pki


def test_leaf_is_signed_by_the_ca_and_carries_its_sans(tmp_path):
    ca = pki.create_ca(tmp_path, "ca")
    leaf = pki.issue(
        ca,
        tmp_path / "node",
        common_name="system:node:n1",
        organizations=("system:nodes",),
        server=True,
        dns_names=("n1",),
        ip_addresses=("127.0.0.1",),
    )
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    cert = x509.load_pem_x509_certificate(leaf.cert.read_bytes())
    cert.verify_directly_issued_by(ca_cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["n1"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.subject.rfc4514_string() == "CN=system:node:n1,O=system:nodes"
    assert isinstance(ca_cert.public_key(), ec.EllipticCurvePublicKey)


def test_private_keys_are_owner_only_and_reused(tmp_path):
    ca = pki.create_ca(tmp_path, "ca")
    first = ca.cert.read_bytes()
    assert stat.S_IMODE(ca.key.stat().st_mode) == 0o600
    assert pki.create_ca(tmp_path, "ca").cert.read_bytes() == first
    sa = pki.service_account_keys(tmp_path)
    assert stat.S_IMODE(sa.key.stat().st_mode) == 0o600
    assert b"PUBLIC KEY" in sa.cert.read_bytes()
