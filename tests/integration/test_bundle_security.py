"""The proofs of the hardened bundle, against the real redis-server that `redkeep up` started:
TLS, ACL users, and a client that never reads its replies."""

import contextlib
import os
import socket
import ssl
import subprocess
import time

import pytest
import redis
import yaml

from redkeep.fsutil import mode_of
from redkeep.redis.handshake import handshake
from tests.integration.conftest import client_as, start_bundle, stop_bundle
from tests.servers import require_binary, tls_lines

LEGACY_CLIENT = {
    "min_version": ssl.TLSVersion.TLSv1,
    "max_version": ssl.TLSVersion.TLSv1_1,
    "ciphers": "DEFAULT:@SECLEVEL=0",  # OpenSSL 3 offers TLS < 1.2 only at security level 0
}


def port_of(bundle):
    return bundle.settings.redis.tls_port


def test_app_over_tls_with_client_certificate_works(running_bundle):
    app = client_as(running_bundle, "app")
    assert app.ping()
    assert app.set("session:1", "x", ex=60)
    assert app.get("session:1") == "x"
    assert app.hincrby("stats", "hits", 1) >= 1
    assert app.zadd("board", {"a": 1}) in (0, 1)
    assert app.xadd("events", {"k": "v"})
    assert app.expire("session:1", 30)
    assert app.ttl("session:1") > 0
    assert app.publish("news", "hello") == 0
    assert app.eval("return redis.call('GET', KEYS[1])", 1, "session:1") == "x"
    pipe = app.pipeline(transaction=True)
    pipe.incr("counter").incr("counter")
    assert pipe.execute()[-1] >= 2
    assert list(app.scan_iter(match="session:*"))


@pytest.mark.parametrize(
    "command",
    [
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("CONFIG", "GET", "maxmemory"),
        ("CONFIG", "SET", "maxmemory", "1"),
        ("DEBUG", "SLEEP", "0"),
        ("ACL", "LIST"),
        ("ACL", "SETUSER", "x"),
        ("KEYS", "*"),
        ("SHUTDOWN",),
        ("MODULE", "LIST"),
        ("MONITOR",),
        ("REPLICAOF", "NO", "ONE"),
    ],
    ids=" ".join,
)
def test_app_cannot_run_dangerous_or_admin_commands(running_bundle, command):
    app = client_as(running_bundle, "app")
    # DEBUG is also refused before the ACL check (enable-debug-command no): ask the ACL itself.
    with pytest.raises(redis.ResponseError):
        app.execute_command(*command)
    verdict = client_as(running_bundle, "admin").execute_command("ACL", "DRYRUN", "app", *command)
    assert verdict.startswith("This user has no permissions"), verdict


def test_plaintext_is_refused(running_bundle):
    admin = client_as(running_bundle, "admin")
    assert admin.config_get("port") == {"port": "0"}
    plain = redis.Redis(host="127.0.0.1", port=port_of(running_bundle), socket_timeout=3)
    with pytest.raises(redis.ConnectionError):
        plain.ping()


def test_tls_without_client_certificate_is_refused(running_bundle):
    with pytest.raises(redis.ConnectionError):
        client_as(running_bundle, "app", client_cert=False).ping()


def test_tls_1_1_handshake_is_refused(running_bundle):
    tls = running_bundle.tls
    common = {"ca": tls.ca_cert, "cert": tls.client_cert(), "key": tls.client_key()}
    modern = handshake("localhost", port_of(running_bundle), **common)
    assert modern.ok and modern.version in ("TLSv1.2", "TLSv1.3")
    legacy = handshake("localhost", port_of(running_bundle), **common, **LEGACY_CLIENT)
    assert not legacy.ok
    assert "VERSION" in legacy.error.upper() or "PROTOCOL" in legacy.error.upper()


def test_the_tls_1_1_probe_succeeds_where_tls_1_1_is_allowed(redis_factory, running_bundle):
    # Control for the test above: the same client completes a TLSv1.1 handshake with a server
    # that allows it, so the refusal above comes from the bundle's server, not the client.
    tls = running_bundle.tls
    server = redis_factory(
        [
            *tls_lines(tls.directory, "no"),
            'tls-protocols "TLSv1.1 TLSv1.2 TLSv1.3"',
            "tls-ciphers DEFAULT:@SECLEVEL=0",
        ],
        tls=True,
    )
    legacy = handshake("localhost", server.tls_port, ca=tls.ca_cert, **LEGACY_CLIENT)
    assert legacy.ok, legacy.error
    assert legacy.version == "TLSv1.1"


def test_default_user_cannot_authenticate(running_bundle):
    for password in ("", "nopass", running_bundle.password("admin")):
        with pytest.raises(redis.AuthenticationError):
            client_as(running_bundle, "default", password=password or "x").ping()
    anonymous = client_as(running_bundle, None)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()


def test_transactions_scripts_and_stream_groups_survive_a_restart_from_the_aof(tmp_path):
    """Redis 7.0 replays the AOF's MULTI/EXEC blocks (transactions, a Lua script's writes,
    XREADGROUP) under the default user's rules: the bundle's must not refuse them."""
    bundle = start_bundle(tmp_path / "stack")
    try:
        app = client_as(bundle, "app")
        app.set("plain", "1")
        app.pipeline(transaction=True).set("tx:a", "1").set("tx:b", "2").execute()
        app.eval("redis.call('SET', 'lua:d', '4'); redis.call('SET', 'lua:e', '5')", 0)
        app.xadd("jobs", {"n": 1})
        app.xadd("jobs", {"n": 2})
        app.xgroup_create("jobs", "workers", id="0")
        assert len(app.xreadgroup("workers", "w1", {"jobs": ">"})[0][1]) == 2
        stop_bundle(bundle)
        start_bundle(bundle.root)
        app = client_as(bundle, "app")
        assert client_as(bundle, "admin").info("persistence")["aof_enabled"] == 1
        for key in ("plain", "tx:a", "tx:b", "lua:d", "lua:e"):
            assert app.exists(key), key
        assert app.xpending("jobs", "workers")["pending"] == 2
        assert "AOF-loading-client" not in (bundle.run_dir / "redis.log").read_text()
    finally:
        stop_bundle(bundle)


def test_exporter_reads_server_state_but_no_values(running_bundle):
    exporter = client_as(running_bundle, "exporter")
    assert "redis_version" in exporter.info()
    assert "maxmemory" in exporter.config_get("maxmemory")
    assert isinstance(exporter.slowlog_len(), int)
    assert exporter.client_list()
    for command in (
        ("GET", "session:1"),
        ("SET", "k", "v"),
        ("SCAN", "0"),
        ("CONFIG", "SET", "timeout", "1"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            exporter.execute_command(*command)


def test_backup_fetches_an_rdb_but_cannot_write(running_bundle, tmp_path):
    client_as(running_bundle, "app").set("backup:probe", "value")
    tls = running_bundle.tls
    rdb = tmp_path / "dump.rdb"
    result = subprocess.run(
        [
            require_binary("redis-cli"),
            "--tls",
            "--cacert",
            str(tls.ca_cert),
            "--cert",
            str(tls.client_cert()),
            "--key",
            str(tls.client_key()),
            "-h",
            "localhost",
            "-p",
            str(port_of(running_bundle)),
            "--user",
            "backup",
            "--rdb",
            str(rdb),
        ],
        env={**os.environ, "REDISCLI_AUTH": running_bundle.password("backup")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = rdb.read_bytes()
    assert data.startswith(b"REDIS00")
    assert b"backup:probe" in data
    backup = client_as(running_bundle, "backup")
    for command in (("SET", "k", "v"), ("GET", "backup:probe"), ("FLUSHALL",)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            backup.execute_command(*command)


def test_certificates_verify_with_openssl(running_bundle):
    tls = running_bundle.tls
    result = subprocess.run(
        [
            require_binary("openssl"),
            "verify",
            "-CAfile",
            str(tls.ca_cert),
            str(tls.server_cert),
            str(tls.client_cert()),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": OK") == 2


def test_secret_files_are_0600(running_bundle):
    root = running_bundle.root
    secret_files = [root / ".env", root / "redis/users.acl", *root.glob("tls/*.key")]
    assert len(secret_files) == 5
    for path in secret_files:
        assert mode_of(path) == 0o600, path
    assert mode_of(root / "tls") == 0o700
    assert mode_of(root / "data") == 0o700
    for path in (root / "data").rglob("*"):
        assert mode_of(path) & 0o077 == 0, path


def test_compose_healthcheck_command_passes_and_the_plans_one_fails(running_bundle):
    """Run the healthcheck of docker-compose.yml against our server (paths mapped to the host)."""
    root = running_bundle.root
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    redis_service = compose["services"]["redis"]
    command = redis_service["healthcheck"]["test"][1].replace("/tls/", f"{root}/tls/")
    env = {**os.environ, "REDISCLI_AUTH": running_bundle.password("exporter")}
    healthy = subprocess.run(
        ["sh", "-c", command], env=env, capture_output=True, timeout=30, check=False
    )
    assert healthy.returncode == 0, healthy.stderr
    unauthenticated = subprocess.run(
        ["sh", "-c", command],
        env={**os.environ, "REDISCLI_AUTH": "wrong"},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert unauthenticated.returncode != 0
    plans = subprocess.run(
        ["sh", "-c", f"redis-cli -p {port_of(running_bundle)} ping | grep -q PONG"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert plans.returncode != 0
    assert redis_service["ports"] == [
        f"127.0.0.1:{port_of(running_bundle)}:{port_of(running_bundle)}"
    ]


# --- big values and a client that never reads its replies ----------------------------------


def test_values_of_tens_of_mib_get_through_with_the_defaults(running_bundle):
    """maxmemory 256mb, maxmemory-clients auto (64 MiB): a value of 24 MiB is written and read
    back on one connection (its query buffer and its reply at once), and a 48 MiB one read on
    a fresh connection, without any client evicted."""
    admin = client_as(running_bundle, "admin")
    evicted = admin.info("stats")["evicted_clients"]
    app = client_as(running_bundle, "app", decode_responses=False)
    value = os.urandom(24 << 20)
    try:
        assert app.set("big:24", value)
        assert app.get("big:24") == value
        for offset in range(0, 48 << 20, 8 << 20):
            app.setrange("big:48", offset, os.urandom(8 << 20))
        reader = client_as(running_bundle, "app", decode_responses=False)
        assert len(reader.get("big:48")) == 48 << 20
        assert admin.info("stats")["evicted_clients"] == evicted
    finally:
        admin.delete("big:24", "big:48")


# The slow-reader attack.

VALUE = 200 * 1024  # bytes per value: the issue's `GET big` of a 200 KB value
CLIENT_LIMITS = {
    # The bundle's defaults: maxmemory-clients auto (half of maxmemory here: 32 MiB; a quarter
    # of the default 256mb), 64mb per client.
    "bundle defaults": {},
    # What Redis does without them, and what a per-client limit alone does against two.
    "no limits": {"MAXMEMORY_CLIENTS": "0", "CLIENT_OUTPUT_BUFFER_LIMIT_NORMAL": "0"},
    "per-client limit only": {"MAXMEMORY_CLIENTS": "0"},
}


@pytest.fixture
def small_bundle(tmp_path, redis_binary, request):
    """A running bundle with maxmemory 64mb (the bundle's 256mb, scaled to this machine) and
    the client memory settings of `request.param`."""
    env = {"REDKEEP_REDIS__MAXMEMORY": "64mb"}
    env |= {f"REDKEEP_REDIS__{name}": value for name, value in CLIENT_LIMITS[request.param].items()}
    bundle = start_bundle(tmp_path / "stack", env=env)
    yield bundle
    stop_bundle(bundle)


def greedy_client(bundle, user: str = "app") -> ssl.SSLSocket:
    """A raw TLS connection that logs in, pipelines 2,000 `GET big` and never reads."""
    tls = bundle.tls
    context = ssl.create_default_context(cafile=str(tls.ca_cert))
    context.load_cert_chain(str(tls.client_cert()), str(tls.client_key()))
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # a slow reader's buffer
    raw.connect(("127.0.0.1", port_of(bundle)))
    client = context.wrap_socket(raw, server_hostname="localhost")
    password = bundle.password(user)
    auth = f"*3\r\n$4\r\nAUTH\r\n${len(user)}\r\n{user}\r\n${len(password)}\r\n{password}\r\n"
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        # Redis may drop it before the last request is sent: that is the outcome wanted;
        # closed_by_server() tells the cases apart.
        client.sendall(auth.encode() + b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * 2000)
    return client


def closed_by_server(client: ssl.SSLSocket) -> bool:
    """Read what is left: True once the server has closed the connection."""
    client.settimeout(10)
    try:
        while client.recv(1 << 20):
            pass
    except (ConnectionError, ssl.SSLError):
        return True
    except TimeoutError:
        return False  # still open: the server is holding the replies
    return True


def stats(admin: redis.Redis) -> dict:
    info = admin.info("all")
    fields = ("evicted_keys", "evicted_clients", "mem_clients_normal", "used_memory")
    return {name: info[name] for name in fields} | {"keys": admin.dbsize()}


@pytest.mark.parametrize(
    ("small_bundle", "greedy", "data_survives"),
    [
        ("bundle defaults", 1, True),
        ("bundle defaults", 2, True),
        ("no limits", 1, False),
        ("per-client limit only", 2, False),
    ],
    indirect=["small_bundle"],
    ids=["defaults, one greedy client", "defaults, two", "no limits", "per-client limit only"],
)
def test_clients_that_never_read_cannot_evict_the_data(small_bundle, greedy, data_survives):
    admin = client_as(small_bundle, "admin", decode_responses=False)
    pipe = admin.pipeline(transaction=False)
    for index in range(100):  # 20 MB of data, a third of maxmemory
        pipe.set(f"data:{index}", os.urandom(VALUE))
    pipe.set("big", os.urandom(VALUE)).execute()
    before = stats(admin)
    assert before["keys"] == 101 and before["evicted_keys"] == 0
    clients = [greedy_client(small_bundle) for _ in range(greedy)]
    try:
        deadline = time.monotonic() + 30
        while True:
            now = stats(admin)
            if now["evicted_keys"] or now["evicted_clients"] >= greedy:
                break
            assert time.monotonic() < deadline, f"neither keys nor clients evicted: {now}"
            time.sleep(0.1)
        if data_survives:
            assert now["keys"] == 101 and now["evicted_keys"] == 0, now
            assert now["evicted_clients"] == greedy, now
            assert all(closed_by_server(client) for client in clients)
            assert stats(admin)["mem_clients_normal"] < 2 * 2**20
        else:  # the attack of issue 10 works on such a server: the test can fail
            assert now["evicted_keys"] > 0 and now["keys"] < 101, now
    finally:
        for client in clients:
            client.close()
