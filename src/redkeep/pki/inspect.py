"""Read certificates back: what they say (`certs show`) and whether they hold (`certs verify`).

`verify_certificate` gives the verdicts `openssl verify -CAfile ca.crt cert` gives for a
certificate issued directly by the CA: trusted issuer and signature, validity window of the
certificate and of the CA, and the CA being a CA. It also checks that a key file matches.
"""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from redkeep.errors import UsageError


@dataclass(frozen=True)
class CertInfo:
    path: str
    subject: str
    issuer: str
    names: list[str]
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    days_left: int
    key: str
    is_ca: bool
    sha256: str

    def as_dict(self) -> dict:
        data = dict(self.__dict__)
        data["not_before"] = self.not_before.isoformat()
        data["not_after"] = self.not_after.isoformat()
        return data


def load_certificate(path: Path) -> x509.Certificate:
    """Read a PEM certificate; raise UsageError naming the file if it is missing or not PEM."""
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such certificate file") from None
    except ValueError:
        raise UsageError(f"{path}: not a PEM certificate") from None


def load_private_key(path: Path):
    """Read an unencrypted PEM private key; raise UsageError naming the file on failure."""
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such key file") from None
    except (ValueError, TypeError):
        raise UsageError(f"{path}: not an unencrypted PEM private key") from None


def describe(cert: x509.Certificate, path: str, now: dt.datetime) -> CertInfo:
    """Summarise `cert` for humans and JSON."""
    not_after = cert.not_valid_after_utc
    return CertInfo(
        path=path,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        names=subject_alt_names(cert),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=not_after,
        days_left=(not_after - now).days,
        key=key_description(cert.public_key()),
        is_ca=is_ca(cert),
        sha256=cert.fingerprint(hashes.SHA256()).hex(":"),
    )


def subject_alt_names(cert: x509.Certificate) -> list[str]:
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(name.value) for name in extension.value]


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def key_description(public_key) -> str:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"ECDSA {public_key.curve.name}"
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA {public_key.key_size}"
    return type(public_key).__name__


def verify_certificate(cert: x509.Certificate, ca: x509.Certificate, now: dt.datetime) -> list[str]:
    """Return the problems openssl verify would report for `cert` against `ca` (empty: OK)."""
    if cert == ca:
        return _validity_problems(ca, now)
    problems = []
    # OpenSSL finds the issuer by name and key identifier, so a certificate signed by another
    # key under the same CA name is "unable to get local issuer certificate" too.
    if cert.issuer != ca.subject or not _signed_by(cert, ca):
        problems.append("unable to get local issuer certificate")
    elif not is_ca(ca):
        problems.append("invalid CA certificate")
    problems += _validity_problems(cert, now)
    problems += [f"CA: {problem}" for problem in _validity_problems(ca, now)]
    return problems


def key_matches(cert: x509.Certificate, key) -> bool:
    """True if `key` is the private key of `cert`."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return cert.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _validity_problems(cert: x509.Certificate, now: dt.datetime) -> list[str]:
    if now < cert.not_valid_before_utc:
        return ["certificate is not yet valid"]
    if now > cert.not_valid_after_utc:
        return ["certificate has expired"]
    return []
