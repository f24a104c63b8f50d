"""The version matrix's servers themselves: each build starts from our config, is the version
and flavour the registry says, takes ACL users, writes the RDB version the registry says, and
has TLS exactly when the registry says so. Other tests rely on these facts."""

import subprocess
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests import datasets
from tests.conftest import ACL_USERS
from tests.servers import BUILDS, RedisServer, free_port, rdb_version, tls_lines


def client(server: RedisServer, **kwargs) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=server.port,
        socket_timeout=5,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        **kwargs,
    )


def version_text(version: tuple[int, int, int]) -> str:
    return ".".join(map(str, version))


def test_info_and_hello_name_the_version_and_flavour(server_build, server_factory):
    server = server_factory(server_build)
    info = client(server).info("server")

    if server_build.flavour == "valkey":
        assert info["server_name"] == "valkey"
        assert info["valkey_version"] == version_text(server_build.version)
        # Valkey reports a fixed Redis compatibility version in redis_version.
        assert info["redis_version"] == "7.2.4"
    else:
        assert info["redis_version"] == version_text(server_build.version)
        assert "valkey_version" not in info
        assert "server_name" not in info
    hello = client(server, protocol=3).execute_command("HELLO", "3")
    assert (hello["server"], hello["version"], hello["proto"]) == (
        server_build.flavour,
        version_text(server_build.version),
        3,
    )


def test_acl_users_with_the_default_user_off(server_build, server_factory):
    server = server_factory(server_build, ACL_USERS)

    with pytest.raises(redis.AuthenticationError):
        client(server).ping()
    with pytest.raises(redis.AuthenticationError):
        client(server, username="admin", password="wrong").ping()
    admin = client(server, username="admin", password="admin-secret")
    assert admin.acl_whoami() == "admin"
    admin.set("key", "value")
    reader = client(server, username="reader", password="reader-secret")
    assert reader.get("key") == "value"
    with pytest.raises(redis.exceptions.NoPermissionError):
        reader.set("key", "changed")
    assert admin.get("key") == "value"


def test_save_writes_the_rdb_version_and_its_checker_reads_it(server_build, server_factory):
    server = server_factory(server_build)
    writer = client(server)
    writer.set("string", "value")
    writer.hset("hash", mapping={"field": "value"})
    writer.rpush("list", "a", "b")
    writer.save()

    dump = server.workdir / "dump.rdb"
    assert rdb_version(dump) == server_build.rdb_version
    check = subprocess.run(
        [server_build.check_rdb, dump], capture_output=True, text=True, timeout=30, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "3 keys read" in check.stdout


def test_tls_ping_with_client_certificate(tls_server_build, server_factory, pki):
    server = server_factory(
        tls_server_build, [*ACL_USERS, *tls_lines(pki.directory, "yes")], tls=True
    )
    tls_client = redis.Redis(
        host="localhost",
        port=server.tls_port,
        username="admin",
        password="admin-secret",
        ssl=True,
        ssl_ca_certs=str(pki.ca_cert),
        ssl_certfile=str(pki.client_cert()),
        ssl_keyfile=str(pki.client_key()),
        socket_timeout=5,
        retry=Retry(NoBackoff(), 0),
    )

    # The server listens on its TLS port only (port 0): this PING went over TLS.
    assert tls_client.ping() is True
    assert tls_client.acl_whoami() == "admin"


def test_tls_support_is_what_the_registry_says(server_build, pki, tmp_path):
    """A build marked without TLS refuses a tls-port (so TLS tests rightly leave it out)."""
    binary = server_build.require()
    log = tmp_path / "server.log"
    conf = tmp_path / "tls.conf"
    lines = ["port 0", f"tls-port {free_port()}", "bind 127.0.0.1", f"dir {tmp_path}"]
    conf.write_text("\n".join([*lines, f"logfile {log}", "save ''", *tls_lines(pki.directory)]))
    process = subprocess.Popen(
        [binary, str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            if log.exists() and "Ready to accept connections" in log.read_text():
                break
            time.sleep(0.02)
        started = process.poll() is None
        output = (log.read_text() if log.exists() else "") + (
            "" if started else process.stdout.read().decode()
        )
    finally:
        process.kill()
        process.wait()
    assert started == server_build.tls, output
    if not server_build.tls:
        assert "TLS" in output or "tls-port" in output, output


SINCE_7_0 = {"redis-7.0.15", "valkey-8.1.8", "redis-8.2.3", "valkey-9.1.2"}
# Which builds have what, as docs/versions.md records it; the probes ask the running server.
FEATURES = {
    "ACL DRYRUN": SINCE_7_0,
    "CLIENT NO-EVICT": SINCE_7_0,
    "config maxmemory-clients": SINCE_7_0,
    "config enable-debug-command": SINCE_7_0,
    "config hide-user-data-from-log": {"valkey-8.1.8", "redis-8.2.3", "valkey-9.1.2"},
    "config sanitize-dump-payload": {"redis-6.2.14", "redis-7.0.15", "valkey-8.1.8", "redis-8.2.3"},
    "INFO listener0": {"valkey-8.1.8", "redis-8.2.3", "valkey-9.1.2"},
    "INFO acl_access_denied_auth": {"valkey-8.1.8", "redis-8.2.3", "valkey-9.1.2"},
    "INFO redis_mode": {"redis-6.2.14", "redis-7.0.15", "redis-8.2.3"},
    "COMMANDLOG": {"valkey-8.1.8", "valkey-9.1.2"},
}
# DEBUG DIGEST of the dataset below: the same on every build, so digests compare across versions.
DATASET_DIGEST = "71c68ab45bc8"


def answers(call) -> bool:
    try:
        call()
    except redis.ResponseError:
        return False
    return True


def test_version_gated_features(server_build, server_factory):
    debug = [] if server_build.version < (7, 0, 0) else ["enable-debug-command yes"]
    probe = client(server_factory(server_build, debug))
    info = probe.info("everything")

    found = {
        "ACL DRYRUN": answers(lambda: probe.execute_command("ACL", "DRYRUN", "default", "PING")),
        "CLIENT NO-EVICT": answers(lambda: probe.execute_command("CLIENT", "NO-EVICT", "on")),
        "INFO listener0": "listener0" in info,
        "INFO acl_access_denied_auth": "acl_access_denied_auth" in info,
        "INFO redis_mode": "redis_mode" in info,
        "COMMANDLOG": answers(lambda: probe.execute_command("COMMANDLOG", "LEN", "slow")),
    }
    for name in FEATURES:
        if name.startswith("config "):
            found[name] = bool(probe.config_get(name.removeprefix("config ")))
    expected = {name: server_build.name in builds for name, builds in FEATURES.items()}
    assert found == expected

    probe.set("string", "value")
    probe.hset("hash", mapping={"field": "value"})
    probe.zadd("zset", {"member": 1.5})
    probe.xadd("stream", {"field": "value"}, id="1-1")
    assert probe.execute_command("DEBUG", "DIGEST")[:12] == DATASET_DIGEST


DEFAULT = next(build for build in BUILDS if build.source.startswith("Debian"))
# Where the dataset's 44-byte string lands (tests/datasets.py says why).
STR_44 = {"redis-6.2.14": "embstr", "redis-7.0.15": "embstr", "valkey-8.1.8": "raw",
          "redis-8.2.3": "raw", "valkey-9.1.2": "embstr"}  # fmt: skip


def test_the_shared_dataset_on_each_build(server_build, server_factory):
    """`datasets.load` reaches every encoding the build has (it asserts each key's encoding
    for this build), and the data reads back as it does on the default build."""
    url = f"redis://127.0.0.1:{server_factory(server_build).port}"
    loaded = datasets.load(url)

    assert loaded.server == (server_build.flavour, server_build.version[:2])
    small = "ziplist" if server_build.version < (7, 0, 0) else "listpack"
    expected = {"int", "embstr", "raw", "quicklist", "intset", "hashtable", "skiplist", "stream"}
    expiring_fields = datasets.field_ttls(loaded.server)  # Redis 8.2, Valkey 9.1 here
    if expiring_fields and server_build.flavour == "redis":
        expected.add("listpackex")  # a small hash with a field TTL
    assert set(loaded.encodings.values()) == {*expected, small}
    assert loaded.encodings[(0, b"str:44")] == STR_44[server_build.name]
    here = datasets.snapshot(url)
    exact = server_build.version >= (7, 0, 0)  # PEXPIRETIME; before, this clock plus PTTL
    assert datasets.compare(here, datasets.snapshot(url), 0 if exact else 1000) == []

    default_url = f"redis://127.0.0.1:{server_factory(DEFAULT).port}"
    datasets.load(default_url)
    differences = datasets.compare(datasets.snapshot(default_url), here)
    expected_differences = []
    if expiring_fields:  # the default build has no field TTLs
        expected_differences += [
            "db0 b'hash:field-ttl': not expected",
            "db0 b'hash:field-ttl:big': not expected",
        ]
        deadlines = here[(0, b"hash:field-ttl:big")].value[1]
        assert [field for field, _ in deadlines] == [b"field-1", b"field-7"]
    if server_build.version < (7, 0, 0):  # XINFO has no entries-added, entries-read before 7.0
        expected_differences += [
            "db0 b'stream': the stream value differs",
            "db1 b'stream:\\x00bin': the stream value differs",
        ]
    assert differences == sorted(expected_differences)
