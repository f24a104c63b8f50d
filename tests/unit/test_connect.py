from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redkeep.errors import UsageError
from redkeep.redis.target import ConnectionOptions, Target, mask_url, parse_url, resolve_target


def test_parse_rediss_url_with_user_password_and_db():
    target = parse_url("rediss://app:s%40cret@redis.internal:6380/2")
    assert (target.scheme, target.host, target.port, target.db) == (
        "rediss",
        "redis.internal",
        6380,
        2,
    )
    assert (target.username, target.password) == ("app", "s@cret")
    assert target.tls


def test_parse_unix_url():
    target = parse_url("unix://admin:pw@/run/redis/redis.sock?db=3")
    assert (target.socket_path, target.db, target.username) == ("/run/redis/redis.sock", 3, "admin")
    assert target.where == "/run/redis/redis.sock"


def test_ipv6_host_is_bracketed_in_messages():
    assert parse_url("redis://[::1]:7000").where == "[::1]:7000"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://localhost", "scheme must be redis://, rediss:// or unix://"),
        ("redis://localhost:notaport", "bad port or address"),
        ("redis://:pw@", "cannot find the host"),
        ("redis://localhost/abc", "database must be a number"),
        ("unix://", "unix:// needs a socket path"),
    ],
)
def test_invalid_urls_are_usage_errors(url, message):
    with pytest.raises(UsageError, match=message):
        parse_url(url)


def test_invalid_url_error_never_shows_the_password():
    with pytest.raises(UsageError) as caught:
        parse_url("http://app:topsecret@localhost")
    assert "topsecret" not in str(caught.value)


def test_display_url_and_repr_mask_the_password():
    target = parse_url("rediss://app:topsecret@localhost:6380")
    assert target.display_url == "rediss://app:****@localhost:6380"
    assert "topsecret" not in repr(target)


@given(
    user=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12),
    password=st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=30),
)
def test_mask_url_never_leaks_the_password_even_unencoded(user, password):
    # Users paste passwords with / # ? @ unencoded; the mask must hold for those too.
    url = f"rediss://{user}:{password}@host:6380"
    assert mask_url(url) == f"rediss://{user}:****@host:6380"


@given(
    password=st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=6, max_size=30)
)
def test_url_errors_never_quote_the_password(password):
    try:
        parse_url(f"redis://app:{password}@localhost:6379")
    except UsageError as error:
        assert password not in str(error)


def test_url_flag_beats_environment_and_bundle():
    fallback = Target("rediss", host="bundle", port=1, username="admin", password="b")
    target = resolve_target(
        ConnectionOptions(url="redis://flag:1"), {"REDIS_URL": "redis://env:2"}, fallback
    )
    assert target.host == "flag"


def test_environment_url_beats_bundle_unless_the_command_changes_the_bundle():
    fallback = Target("rediss", host="bundle", port=1, username="admin", password="b")
    env = {"REDIS_URL": "redis://env:2"}
    assert resolve_target(ConnectionOptions(), env, fallback).host == "env"
    assert resolve_target(ConnectionOptions(), env, fallback, prefer_fallback=True).host == "bundle"


BUNDLE = Target("rediss", host="h", port=1)  # a bundle's own server (its .env is `known`)


def test_password_sources_in_order(tmp_path):
    password_file = tmp_path / "pw"
    password_file.write_text("from-file\nignored\n")
    url = ConnectionOptions(url="rediss://app@h:1")
    env = {"REDIS_PASSWORD": "from-env"}
    known = {"app": "from-bundle"}
    with_file = ConnectionOptions(url="rediss://app@h:1", password_file=password_file)
    assert resolve_target(with_file, env, BUNDLE, known_passwords=known).password == "from-file"
    assert resolve_target(url, env, BUNDLE, known_passwords=known).password == "from-bundle"
    assert resolve_target(url, env).password == "from-env"
    in_url = ConnectionOptions(url="redis://app:from-url@h:1", password_file=password_file)
    assert resolve_target(in_url, env).password == "from-url"


def test_bundle_passwords_go_only_to_its_own_endpoints_over_tls():
    known = {"admin": "secret"}

    def password(url: str, **kwargs) -> str | None:
        options = ConnectionOptions(url=url)
        return resolve_target(options, {}, BUNDLE, known_passwords=known, **kwargs).password

    assert password("rediss://admin@h:1") == "secret"
    assert password("rediss://admin@proxy:2", own_endpoints=[("proxy", 2)]) == "secret"
    assert password("rediss://admin@other:1") is None  # another host
    assert password("rediss://admin@h:2") is None  # another port
    assert password("redis://admin@h:1") is None  # plain text: a bundle serves TLS only
    no_bundle = resolve_target(ConnectionOptions(url="rediss://admin@h:1"), {}, None, known)
    assert no_bundle.password is None


def test_bundle_tls_files_are_the_default_for_the_bundles_own_server():
    fallback = Target(
        "rediss",
        host="localhost",
        port=6380,
        tls_ca=Path("ca"),
        tls_cert=Path("c"),
        tls_key=Path("k"),
    )
    mine = ConnectionOptions(url="rediss://127.0.0.1:6380", tls_ca=Path("mine"))
    target = resolve_target(mine, {}, fallback)
    assert (target.tls_ca, target.tls_cert, target.tls_key) == (Path("mine"), Path("c"), Path("k"))
    elsewhere = resolve_target(
        ConnectionOptions(url="rediss://redis.example.com:6380"), {}, fallback
    )
    assert (elsewhere.tls_ca, elsewhere.tls_cert) == (None, None)


def test_bundle_password_beats_a_sourced_redis_password():
    known = {"admin": "admin-pw", "app": "app-pw"}
    env = {"REDIS_PASSWORD": "app-pw"}
    admin = resolve_target(
        ConnectionOptions(url="rediss://admin@h:1"), env, BUNDLE, known_passwords=known
    )
    assert admin.password == "admin-pw"
    stranger = resolve_target(
        ConnectionOptions(url="rediss://other@h:1"), env, BUNDLE, known_passwords=known
    )
    assert stranger.password == "app-pw"


def test_no_source_at_all_is_a_usage_error():
    with pytest.raises(UsageError, match="pass --url, set REDIS_URL, or run inside a bundle"):
        resolve_target(ConnectionOptions(), {})


def test_empty_password_file_is_rejected(tmp_path):
    empty = tmp_path / "pw"
    empty.write_text("\n")
    with pytest.raises(UsageError, match="is empty"):
        resolve_target(ConnectionOptions(url="redis://h", password_file=empty), {})
