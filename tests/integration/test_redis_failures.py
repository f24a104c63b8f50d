"""One explanation per failure: the raw connection and redis-py say the same, with the same kind.

Against real servers: nothing listening, a wrong password, a user without the right, an
untrusted certificate, a TLS client at a plaintext port. The exporter's error label and its
re-login after a rotated password follow the kind.
"""

from dataclasses import replace

import pytest
import redis

from redkeep.errors import ConnectError, ErrorKind, RedisCommandError, RedkeepError
from redkeep.exporter.scrape import Scraper
from redkeep.redis.client import connect, explain_failure
from redkeep.redis.explain import STALLED_OR_PLAINTEXT
from redkeep.redis.raw import RawConnection
from redkeep.redis.target import ConnectionOptions, Target, resolve_target
from tests.integration.exporter.conftest import parse, value
from tests.servers import free_port


def target(url: str, pki=None, password_file=None, timeout: float = 3.0) -> Target:
    options = ConnectionOptions(
        url=url, password_file=password_file, tls_ca=pki.ca_cert if pki else None, timeout=timeout
    )
    return resolve_target(options, {})


def raw_failure(where: Target) -> RedkeepError:
    """Connect and log in over the raw connection; return what it raised."""
    with pytest.raises(RedkeepError) as caught:
        connection = RawConnection(where, where.timeout)
        try:
            connection.login()
        finally:
            connection.close()
    return caught.value


def client_failure(where: Target) -> RedkeepError:
    with pytest.raises(RedkeepError) as caught:
        connect(where)
    return caught.value


def scrape_error(where: Target) -> str:
    """The `err` label of redis_exporter_last_scrape_error after one scrape of `where`."""
    scraper = Scraper(where)
    try:
        families = parse(scraper.scrape(5.0))
    finally:
        scraper.close()
    assert value(families, "redis_up") == 0
    (labels,) = [text for text, number in families["redis_exporter_last_scrape_error"]]
    return labels.removeprefix('err="').removesuffix('"')


def assert_same(raw: RedkeepError, client: RedkeepError, kind: ErrorKind) -> None:
    assert raw.message == client.message
    assert raw.kind is client.kind is kind
    assert type(raw) is type(client)
    assert "\n" not in raw.message


def test_nothing_listening():
    where = target(f"redis://127.0.0.1:{free_port()}")
    raw = raw_failure(where)
    assert_same(raw, client_failure(where), ErrorKind.REFUSED)
    assert isinstance(raw, ConnectError)
    assert scrape_error(where) == "connection refused"


def test_wrong_password_is_one_message_on_both_paths(acl_redis, tmp_path):
    password_file = tmp_path / "pw"
    password_file.write_text("not-the-password\n")
    where = target(f"redis://admin@127.0.0.1:{acl_redis.port}", password_file=password_file)
    raw = raw_failure(where)
    assert_same(raw, client_failure(where), ErrorKind.AUTH)
    assert raw.message == (
        f"127.0.0.1:{acl_redis.port} refused user 'admin' (WRONGPASS): wrong password or the "
        f"user is disabled (password from {password_file})"
    )
    assert scrape_error(where) == "auth"


def test_noperm_names_user_command_and_endpoint_on_both_paths(acl_redis):
    where = target(f"redis://reader:reader-secret@127.0.0.1:{acl_redis.port}")
    connection = RawConnection(where, 3.0)
    try:
        connection.login()
        with pytest.raises(RedisCommandError) as raw:
            connection.bulk("INFO", "all")
    finally:
        connection.close()
    client = connect(where)
    try:
        with pytest.raises(redis.RedisError) as refused:
            client.info("all")
    finally:
        client.close()
    explained = explain_failure(refused.value, where, "INFO")
    assert_same(raw.value, explained, ErrorKind.PERMISSION)
    assert raw.value.message == (
        f"user 'reader' may not run INFO on 127.0.0.1:{acl_redis.port} (NOPERM); connect as a "
        "user that may, e.g. the bundle's admin"
    )
    # The server itself refused: its ACL LOG has the entry.
    admin = redis.Redis(port=acl_redis.port, username="admin", password="admin-secret")
    assert any(entry["object"] == "info" for entry in admin.acl_log())
    admin.close()


def test_untrusted_certificate(tls_redis):
    where = target(f"rediss://admin:admin-secret@localhost:{tls_redis.tls_port}")
    raw = raw_failure(where)
    assert_same(raw, client_failure(where), ErrorKind.TLS)
    assert "server certificate not trusted" in raw.message
    assert scrape_error(where) == "tls"


def test_client_certificate_refused_after_the_handshake(mtls_redis, pki):
    # TLS 1.3: the handshake completes and the refusal arrives with the first read (AUTH),
    # as an alert or, if the server closes first, as a bare EOF: the wording may differ.
    where = target(f"rediss://admin:admin-secret@localhost:{mtls_redis.tls_port}", pki)
    for failure in (raw_failure(where), client_failure(where)):
        assert failure.kind is ErrorKind.TLS
        assert isinstance(failure, ConnectError)
        assert "requires a client certificate" in failure.message
        assert "pass --tls-cert and --tls-key" in failure.message
    assert scrape_error(where) == "tls"


def test_tls_client_at_a_plaintext_port_times_out_with_a_hint(plain_redis, pki):
    where = target(f"rediss://localhost:{plain_redis.port}", pki, timeout=0.5)
    raw = raw_failure(where)
    assert_same(raw, client_failure(where), ErrorKind.TIMEOUT)
    assert raw.message.endswith("timed out after 0.5s" + STALLED_OR_PLAINTEXT)
    assert scrape_error(where) == "timeout"


def test_a_refused_login_reads_the_rotated_password_once(acl_redis):
    right = target(f"redis://admin:admin-secret@127.0.0.1:{acl_redis.port}")
    wrong = replace(right, password="old-secret")
    asked = []

    def refresh() -> Target:
        asked.append(True)
        return right

    scraper = Scraper(wrong, refresh=refresh)
    try:
        families = parse(scraper.scrape(5.0))
    finally:
        scraper.close()
    assert asked == [True]
    assert value(families, "redis_up") == 1
    assert scraper.target.password == "admin-secret"


def test_a_refused_connection_does_not_reread_the_password():
    where = target(f"redis://admin:secret@127.0.0.1:{free_port()}")
    asked = []
    scraper = Scraper(where, refresh=lambda: asked.append(True) or where)
    try:
        scraper.scrape(2.0)
    finally:
        scraper.close()
    assert asked == []
