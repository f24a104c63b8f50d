"""One-line connection errors against real servers: plain, ACL, TLS and mutual TLS."""

import datetime as dt

import pytest

from redkeep.errors import ConnectError, ExitStatus, RedisCommandError
from redkeep.pki import issue
from redkeep.pki.files import TLSFiles, init_tls, load_ca, write_pair
from redkeep.redis.client import connect
from redkeep.redis.client import explain_failure as explain_command_error
from redkeep.redis.explain import STALLED_OR_PLAINTEXT
from redkeep.redis.target import ConnectionOptions, resolve_target
from tests.servers import free_port, tls_lines

NOW = dt.datetime.now(dt.UTC)


def target(url, pki=None, cert=True, password_file=None):
    options = ConnectionOptions(
        url=url,
        password_file=password_file,
        tls_ca=pki.ca_cert if pki else None,
        tls_cert=pki.client_cert() if pki and cert else None,
        tls_key=pki.client_key() if pki and cert else None,
        timeout=3,
    )
    return resolve_target(options, {})


def failure(url, **kwargs) -> ConnectError:
    with pytest.raises(ConnectError) as caught:
        connect(target(url, **kwargs))
    assert caught.value.status == ExitStatus.UNREACHABLE
    assert "\n" not in caught.value.message
    return caught.value


def test_plain_server_without_auth(plain_redis):
    assert connect(target(f"redis://127.0.0.1:{plain_redis.port}")).ping()


def test_connection_refused():
    port = free_port()
    error = failure(f"redis://127.0.0.1:{port}")
    assert error.message == (
        f"cannot connect to 127.0.0.1:{port}: connection refused; is Redis running and "
        "listening on that port?"
    )


def test_noauth(acl_redis):
    error = failure(f"redis://127.0.0.1:{acl_redis.port}")
    assert "requires authentication (NOAUTH)" in error.message


def test_wrongpass_names_user_and_password_source_but_not_the_password(acl_redis, tmp_path):
    password_file = tmp_path / "pw"
    password_file.write_text("not-the-password\n")
    error = failure(f"redis://admin@127.0.0.1:{acl_redis.port}", password_file=password_file)
    assert "refused user 'admin' (WRONGPASS)" in error.message
    assert str(password_file) in error.message
    assert "not-the-password" not in error.message


def test_default_user_is_off(acl_redis):
    error = failure(f"redis://default:anything@127.0.0.1:{acl_redis.port}")
    assert "WRONGPASS" in error.message


def test_noperm_is_explained(acl_redis):
    reader = target(f"redis://reader:reader-secret@127.0.0.1:{acl_redis.port}")
    client = connect(reader)
    with pytest.raises(Exception) as caught:
        client.flushall()
    error = explain_command_error(caught.value, reader, "FLUSHALL")
    assert isinstance(error, RedisCommandError)
    assert error.message.startswith(
        f"user 'reader' may not run FLUSHALL on 127.0.0.1:{acl_redis.port} (NOPERM)"
    )


def test_unix_socket(redis_factory, tmp_path):
    socket_path = tmp_path / "redis.sock"
    server = redis_factory([f"unixsocket {socket_path}", "unixsocketperm 700"])
    assert server.pid
    assert connect(target(f"unix://{socket_path}")).ping()
    error = failure(f"unix://{tmp_path}/absent.sock")
    assert error.message == f"cannot connect to {tmp_path}/absent.sock: no such socket"


def test_tls_with_ca(tls_redis, pki):
    assert connect(
        target(f"rediss://admin:admin-secret@localhost:{tls_redis.tls_port}", pki, cert=False)
    ).ping()


def test_plaintext_client_on_tls_port(tls_redis):
    error = failure(f"redis://admin:admin-secret@127.0.0.1:{tls_redis.tls_port}")
    assert (
        "closed the connection before answering; if it is a TLS port, use rediss://"
        in error.message
    )


def test_tls_client_on_plaintext_port(plain_redis, pki):
    # Redis reads the ClientHello as the start of a command and waits: a timeout, with a hint.
    with pytest.raises(ConnectError) as caught:
        connect(
            resolve_target(
                ConnectionOptions(
                    url=f"rediss://localhost:{plain_redis.port}", tls_ca=pki.ca_cert, timeout=0.5
                ),
                {},
            )
        )
    assert "timed out after 0.5s" + STALLED_OR_PLAINTEXT in caught.value.message


def test_unknown_ca(tls_redis):
    error = failure(f"rediss://admin:admin-secret@localhost:{tls_redis.tls_port}")
    assert "server certificate not trusted" in error.message
    assert "--tls-ca" in error.message


def test_hostname_not_in_certificate(redis_factory, pki, tmp_path):
    ca_cert, ca_key = load_ca(pki)
    cert, key = issue.make_server_cert(ca_cert, ca_key, ["elsewhere.example"], "ecdsa-p256", 5, NOW)
    write_pair(tmp_path / "server.crt", tmp_path / "server.key", cert, key)
    (tmp_path / "ca.crt").write_bytes(pki.ca_cert.read_bytes())
    server = redis_factory(tls_lines(tmp_path, "no"), tls=True)
    error = failure(f"rediss://127.0.0.1:{server.tls_port}", pki=pki, cert=False)
    assert "the server certificate is not valid for '127.0.0.1'" in error.message


def test_client_certificate_required(mtls_redis, pki):
    error = failure(
        f"rediss://admin:admin-secret@localhost:{mtls_redis.tls_port}", pki=pki, cert=False
    )
    assert "requires a client certificate" in error.message
    assert "pass --tls-cert and --tls-key" in error.message


def test_mutual_tls_works(mtls_redis, pki):
    assert connect(
        target(f"rediss://admin:admin-secret@localhost:{mtls_redis.tls_port}", pki)
    ).ping()


def test_client_certificate_from_another_ca(mtls_redis, pki, tmp_path):
    other = TLSFiles(tmp_path / "other")
    init_tls(other, "other", ["localhost"], "ecdsa-p256", 5, 5, NOW)
    options = ConnectionOptions(
        url=f"rediss://admin:admin-secret@localhost:{mtls_redis.tls_port}",
        tls_ca=pki.ca_cert,
        tls_cert=other.client_cert(),
        tls_key=other.client_key(),
    )
    with pytest.raises(ConnectError) as caught:
        connect(resolve_target(options, {}))
    assert "TLS handshake with localhost" in caught.value.message
    assert "unknown CA" in caught.value.message or "rejected our client" in caught.value.message
