"""Restoring a big key into a server whose clients are bounded (a bundle's maxmemory-clients):
refused up front when it cannot work, done with CLIENT NO-EVICT when allowed, and a connection
the server closes midway is reported as that, never as a TLS failure."""

import json
import os

import pytest
import redis

from tests.conftest import run_redkeep
from tests.servers import RedisServer, free_port, tls_lines

BIG = 8 << 20  # random bytes: DUMP cannot compress them
USERS = [
    "user default off",
    "user admin on >admin-secret ~* &* +@all",
    "user nonoevict on >secret ~* &* +@all -client",  # reads limits, may not CLIENT NO-EVICT
    "user blind on >secret ~* &* +@all -client -config",  # may not read the limits either
]
# As in a bundle: clients together may hold a tenth of maxmemory (6.4 MiB here).
LIMITED = ["maxmemory 64mb", "maxmemory-clients 10%", *USERS]


@pytest.fixture(scope="module")
def big_backup(tmp_path_factory, redis_binary):
    """A backup holding one 8 MiB value and a few small keys."""
    base = tmp_path_factory.mktemp("big")
    server = RedisServer(redis_binary, base / "source", ["repl-diskless-sync-delay 0"], free_port())
    server.start()
    try:
        client = redis.Redis(port=server.port)
        client.set("big", os.urandom(BIG))
        for i in range(20):
            client.set(f"small:{i}", i)
        dest = base / "dest"
        url = f"redis://127.0.0.1:{server.port}"
        run = run_redkeep("backup", "run", "--url", url, "--dest", dest, "--source", "b", "--json")
        assert run.returncode == 0, run.stderr
        yield dest, json.loads(run.stdout)["id"], client.get("big")
    finally:
        server.stop()


def restore(big_backup, target, user, pki):
    dest, backup_id, _ = big_backup
    password = target.workdir / f"{user}.pw"
    password.write_text("admin-secret" if user == "admin" else "secret")
    return run_redkeep(
        "backup",
        "restore",
        backup_id,
        "--dest",
        dest,
        "--to-url",
        f"rediss://{user}@127.0.0.1:{target.tls_port}",
        "--password-file",
        password,
        "--tls-ca",
        pki.ca_cert,
    )


def admin_client(target, pki) -> redis.Redis:
    """The test's own reader: it too would be evicted reading the 8 MiB value, without
    NO-EVICT (the readers the restore warns about)."""
    client = redis.Redis(
        port=target.tls_port,
        username="admin",
        password="admin-secret",
        ssl=True,
        ssl_ca_certs=str(pki.ca_cert),
    )
    client.execute_command("CLIENT", "NO-EVICT", "on")
    return client


@pytest.fixture
def target(redis_factory, pki):
    return redis_factory([*LIMITED, *tls_lines(pki.directory, "no")], tls=True)


def test_a_key_the_target_would_evict_the_restore_for_is_refused_up_front(big_backup, target, pki):
    result = restore(big_backup, target, "nonoevict", pki)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "the largest key of the backup is 8.0 MiB (key b'big' in db0)" in result.stderr
    assert "maxmemory-clients" in result.stderr and "CLIENT NO-EVICT" in result.stderr
    assert admin_client(target, pki).dbsize() == 0


def test_the_restore_runs_with_client_no_evict_when_allowed(big_backup, target, pki):
    result = restore(big_backup, target, "admin", pki)
    assert result.returncode == 0, result.stdout + result.stderr
    client = admin_client(target, pki)
    assert client.get("big") == big_backup[2]
    assert client.dbsize() == 21
    assert client.info("stats")["evicted_clients"] == 0
    assert "applications reading it will be" in result.stderr  # the warning about readers


def test_a_restore_the_server_evicts_midway_says_so(big_backup, target, pki):
    """A user that may read neither the limits nor use NO-EVICT: the restore starts and the
    server evicts it. The message says eviction (not TLS), exit 1 (not 3)."""
    result = restore(big_backup, target, "blind", pki)
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "broke off during RESTORE into db0: the server evicted this client" in line
    assert "TLS" not in line and "handshake" not in line
    assert admin_client(target, pki).info("stats")["evicted_clients"] >= 1
