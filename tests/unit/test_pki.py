import datetime as dt
import subprocess

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from redkeep.errors import UsageError
from redkeep.fsutil import mode_of
from redkeep.pki import issue
from redkeep.pki.files import TLSFiles, init_tls, issue_client, write_pair
from redkeep.pki.inspect import describe, key_matches, verify_certificate
from tests.servers import require_binary

NOW = dt.datetime.now(dt.UTC)


def extension(cert, kind):
    return cert.extensions.get_extension_for_class(kind).value


@pytest.fixture(scope="module")
def ca():
    return issue.make_ca("Test CA", "ecdsa-p256", 365, NOW)


def test_ca_may_sign_leaves_only(ca):
    cert, _ = ca
    constraints = extension(cert, x509.BasicConstraints)
    assert constraints.ca and constraints.path_length == 0
    usage = extension(cert, x509.KeyUsage)
    assert usage.key_cert_sign and usage.crl_sign


def test_server_certificate_names_and_usages(ca):
    cert, key = issue.make_server_cert(
        *ca, ["localhost", "127.0.0.1", "::1"], "ecdsa-p256", 30, NOW
    )
    info = describe(cert, "server.crt", NOW)
    assert info.names == ["localhost", "127.0.0.1", "::1"]
    assert info.key == "ECDSA secp256r1"
    assert not extension(cert, x509.BasicConstraints).ca
    assert list(extension(cert, x509.ExtendedKeyUsage)) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    usage = extension(cert, x509.KeyUsage)
    assert usage.digital_signature and not usage.key_encipherment and not usage.key_cert_sign
    assert key_matches(cert, key)


def test_client_certificate_is_for_clients_only(ca):
    cert, _ = issue.make_client_cert(*ca, "app", "ecdsa-p256", 30, NOW)
    assert list(extension(cert, x509.ExtendedKeyUsage)) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_rsa_3072_option_uses_key_encipherment():
    ca_cert, ca_key = issue.make_ca("RSA CA", "rsa-3072", 30, NOW)
    cert, key = issue.make_server_cert(ca_cert, ca_key, ["localhost"], "rsa-3072", 30, NOW)
    assert describe(cert, "x", NOW).key == "RSA 3072"
    assert extension(cert, x509.KeyUsage).key_encipherment


def test_init_tls_writes_keys_0600_in_a_0700_directory(tmp_path):
    files = TLSFiles(tmp_path / "tls")
    init_tls(files, "t", ["localhost"], "ecdsa-p256", 30, 30, NOW)
    assert files.complete()
    assert mode_of(files.directory) == 0o700
    for path in files.directory.iterdir():
        assert mode_of(path) == (0o600 if path.suffix == ".key" else 0o644), path


def test_issue_client_refuses_to_overwrite_and_reserved_names(tmp_path):
    files = TLSFiles(tmp_path / "tls")
    init_tls(files, "t", ["localhost"], "ecdsa-p256", 30, 30, NOW)
    cert_path, key_path = issue_client(files, "worker-1", "ecdsa-p256", 10, NOW)
    assert mode_of(key_path) == 0o600 and cert_path.exists()
    with pytest.raises(UsageError, match="already exists"):
        issue_client(files, "worker-1", "ecdsa-p256", 10, NOW)
    with pytest.raises(UsageError, match="reserved"):
        issue_client(files, "server", "ecdsa-p256", 10, NOW)
    with pytest.raises(UsageError, match="letters, digits"):
        issue_client(files, "../evil", "ecdsa-p256", 10, NOW)


def openssl_verdict(ca_path, cert_path) -> tuple[bool, str]:
    result = subprocess.run(
        [require_binary("openssl"), "verify", "-CAfile", str(ca_path), str(cert_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0, result.stdout + result.stderr


def make_case(tmp_path, name, ca_pair, signer_pair, issued_at, days):
    cert, key = issue.make_client_cert(
        signer_pair[0], signer_pair[1], name, "ecdsa-p256", days, issued_at
    )
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    write_pair(cert_path, key_path, cert, key)
    return cert, cert_path


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("good", []),
        ("expired", ["certificate has expired"]),
        ("not_yet_valid", ["certificate is not yet valid"]),
        ("other_ca", ["unable to get local issuer certificate"]),
        ("same_name_other_key", ["unable to get local issuer certificate"]),
    ],
)
def test_verify_gives_the_verdicts_of_openssl_verify(tmp_path, ca, case, expected):
    signer = {
        "other_ca": issue.make_ca("Other CA", "ecdsa-p256", 365, NOW),
        "same_name_other_key": issue.make_ca("Test CA", "ecdsa-p256", 365, NOW),
    }.get(case, ca)
    issued_at = {
        "expired": NOW - dt.timedelta(days=40),
        "not_yet_valid": NOW + dt.timedelta(days=2),
    }.get(case, NOW)
    cert, cert_path = make_case(tmp_path, case, ca, signer, issued_at, 30)
    ca_path = tmp_path / "ca.crt"
    ca_path.write_bytes(issue.cert_pem(ca[0]))

    problems = verify_certificate(cert, ca[0], NOW)
    openssl_ok, openssl_text = openssl_verdict(ca_path, cert_path)

    assert problems == expected
    assert openssl_ok == (not problems)
    for problem in problems:
        assert problem in openssl_text


def test_expired_ca_is_reported(tmp_path):
    old_ca = issue.make_ca("Old CA", "ecdsa-p256", 1, NOW - dt.timedelta(days=10))
    cert, _ = issue.make_client_cert(*old_ca, "c", "ecdsa-p256", 30, NOW - dt.timedelta(days=10))
    assert verify_certificate(cert, old_ca[0], NOW) == ["CA: certificate has expired"]


def test_key_mismatch_is_detected(ca):
    cert, _ = issue.make_client_cert(*ca, "a", "ecdsa-p256", 30, NOW)
    _, other_key = issue.make_client_cert(*ca, "b", "ecdsa-p256", 30, NOW)
    assert not key_matches(cert, other_key)
