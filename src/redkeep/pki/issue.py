"""Create keys and certificates: a CA, a server certificate and client certificates.

ECDSA P-256 by default (small, fast handshakes); RSA 3072 when asked. Leaf certificates get
the key usage and extended key usage their role needs and nothing more. Pure functions: they
return objects; `pki.files` writes them.
"""

import datetime as dt
import ipaddress
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyType = Literal["ecdsa-p256", "rsa-3072"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
# Accept certificates a few minutes before "now": the client's clock may run behind ours.
CLOCK_SKEW = dt.timedelta(minutes=5)


def new_key(key_type: KeyType) -> PrivateKey:
    """Return a new private key of `key_type`."""
    if key_type == "rsa-3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    return ec.generate_private_key(ec.SECP256R1())


def make_ca(
    common_name: str, key_type: KeyType, days: int, now: dt.datetime
) -> tuple[x509.Certificate, PrivateKey]:
    """Return a self-signed CA certificate and its key; it may sign leaves only (pathlen 0)."""
    key = new_key(key_type)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        _base(name, name, key.public_key(), days, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True
        )
    )
    return builder.sign(key, hashes.SHA256()), key


def make_server_cert(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    names: list[str],
    key_type: KeyType,
    days: int,
    now: dt.datetime,
) -> tuple[x509.Certificate, PrivateKey]:
    """Return a server certificate for `names` (DNS names and IP addresses) and its key.

    Its extended key usage is serverAuth and clientAuth: Redis presents `tls-cert-file` also
    as its client certificate on replication links (unless tls-client-cert-file is set).
    """
    key = new_key(key_type)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    builder = (
        _leaf(ca_cert, ca_key, subject, key, days, now)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(_general_names(names)), critical=False)
    )
    return builder.sign(ca_key, hashes.SHA256()), key


def make_client_cert(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    common_name: str,
    key_type: KeyType,
    days: int,
    now: dt.datetime,
) -> tuple[x509.Certificate, PrivateKey]:
    """Return a client certificate (extended key usage clientAuth only) and its key."""
    key = new_key(key_type)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = _leaf(ca_cert, ca_key, subject, key, days, now).add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
    )
    return builder.sign(ca_key, hashes.SHA256()), key


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM without a passphrase: redis-server must read it unattended (files are 0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _base(
    subject: x509.Name, issuer: x509.Name, public_key, days: int, now: dt.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _leaf(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    subject: x509.Name,
    key: PrivateKey,
    days: int,
    now: dt.datetime,
) -> x509.CertificateBuilder:
    # RSA key exchange needs keyEncipherment; ECDSA (ECDHE) signs only.
    encipher = isinstance(key, rsa.RSAPrivateKey)
    return (
        _base(subject, ca_cert.subject, key.public_key(), days, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True, key_encipherment=encipher), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )


def _key_usage(**enabled: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    flags.update(enabled)
    return x509.KeyUsage(**flags)


def _general_names(names: list[str]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in names:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            result.append(x509.DNSName(name))
    return result
