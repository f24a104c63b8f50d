"""Connecting on every server build, both ways redkeep talks to a server (redis-py for the CLI
commands, the raw RESP connection for the exporter, audit and backups): plain, ACL users and
their one-line errors, and TLS with client certificates on the TLS-capable builds."""

import pytest

from redkeep.actions.status import server_summary
from redkeep.errors import ConnectError, ErrorKind, RedisCommandError
from redkeep.redis.client import connect
from redkeep.redis.client import explain_failure as explain_command_error
from redkeep.redis.raw import RawConnection
from redkeep.redis.target import ConnectionOptions, resolve_target
from tests.conftest import ACL_USERS
from tests.servers import tls_lines


def target(url, pki=None, cert=True):
    options = ConnectionOptions(
        url=url,
        tls_ca=pki.ca_cert if pki else None,
        tls_cert=pki.client_cert() if pki and cert else None,
        tls_key=pki.client_key() if pki and cert else None,
        timeout=3,
    )
    return resolve_target(options, {})


def raw_info(url, pki=None) -> str:
    """INFO server over the raw connection, after its login."""
    connection = RawConnection(target(url, pki), idle_timeout=3)
    try:
        connection.login()
        return connection.bulk("INFO", "server")
    finally:
        connection.close()


def refused(url, **kwargs) -> ConnectError:
    with pytest.raises(ConnectError) as caught:
        connect(target(url, **kwargs))
    assert "\n" not in caught.value.message
    return caught.value


def test_plain_server(server_build, server_factory, cli):
    server = server_factory(server_build)
    url = f"redis://127.0.0.1:{server.port}"
    assert connect(target(url)).ping()
    version = ".".join(map(str, server_build.version))
    assert f"{server_build.flavour}_version:{version}" in raw_info(url)
    assert server_summary(target(url)).to_json()["version"] == version  # `redkeep status`
    health = cli("health", "--url", url)
    assert health.code == 0, health.err


def test_acl_users_and_their_errors(server_build, server_factory, cli):
    server = server_factory(server_build, ACL_USERS)
    where = f"127.0.0.1:{server.port}"
    admin = f"redis://admin:admin-secret@{where}"
    assert connect(target(admin)).acl_whoami() == "admin"
    assert "tcp_port:" in raw_info(admin)

    noauth = refused(f"redis://{where}")
    assert "requires authentication (NOAUTH)" in noauth.message
    wrong = refused(f"redis://admin:not-the-secret@{where}")
    assert "refused user 'admin' (WRONGPASS)" in wrong.message
    assert "not-the-secret" not in wrong.message
    assert wrong.kind == ErrorKind.AUTH
    assert "WRONGPASS" in refused(f"redis://default:anything@{where}").message  # default is off
    with pytest.raises(ConnectError) as caught:
        raw_info(f"redis://reader:wrong@{where}")
    assert "refused user 'reader' (WRONGPASS)" in caught.value.message

    reader = target(f"redis://reader:reader-secret@{where}")
    with pytest.raises(Exception) as caught:
        connect(reader).flushall()
    error = explain_command_error(caught.value, reader, "FLUSHALL")
    assert isinstance(error, RedisCommandError) and error.kind == ErrorKind.PERMISSION
    assert error.message.startswith(f"user 'reader' may not run FLUSHALL on {where} (NOPERM)")
    health = cli("health", "--url", f"redis://{where}")
    assert health.code == 1 and "NOAUTH" in health.err


def test_tls_with_client_certificates(tls_server_build, server_factory, pki):
    server = server_factory(
        tls_server_build, [*ACL_USERS, *tls_lines(pki.directory, "yes")], tls=True
    )
    url = f"rediss://admin:admin-secret@localhost:{server.tls_port}"
    assert connect(target(url, pki)).ping()
    version = ".".join(map(str, tls_server_build.version))
    assert f"redis_version:{version}" in raw_info(url, pki)  # the server has no plain port
    without = refused(url, pki=pki, cert=False)
    assert "requires a client certificate" in without.message
    assert "server certificate not trusted" in refused(url).message
