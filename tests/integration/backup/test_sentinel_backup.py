"""Backups of a real Sentinel deployment (tests/hanodes.py: redis-0 primary, redis-1 its
replica, three Sentinels; TLS and ACLs everywhere), started from a Sentinel's URL.

Judged by the manifest on disk (which node was captured, what the snapshot holds) against what
the servers hold, and by `backup list`."""

import json
import signal
import threading
from collections.abc import Iterator

import pytest

from tests import datasets
from tests.conftest import run_redkeep
from tests.hanodes import PASSWORDS, HADeployment, make_pki, start_sentinel_group, wait_until
from tests.snapshots import stored_keyspace

ADMIN_ENV = {"REDIS_PASSWORD": PASSWORDS["admin"]}


@pytest.fixture(scope="module")
def group(tmp_path_factory, redis_binary) -> Iterator[HADeployment]:
    pki = make_pki(tmp_path_factory.mktemp("ha-pki") / "tls")
    deployment = start_sentinel_group(redis_binary, tmp_path_factory.mktemp("sentinel"), pki)
    try:
        datasets.load(deployment.client("redis-0"))
        offset = deployment.client("redis-0").info("replication")["master_repl_offset"]
        wait_until(
            lambda: deployment.client("redis-1").info("replication")["slave_repl_offset"] >= offset,
            "the replica to have the dataset",
        )
    except BaseException:
        deployment.stop()
        raise
    yield deployment
    deployment.stop()


def run_backup(group: HADeployment, dest, *args: str):
    result = run_redkeep(
        "backup", "run", "--url", group.url("sentinel-0"), *map(str, group.tls_options()),
        "--dest", str(dest), "--source", "ha", "--json", *args, env=ADMIN_ENV, timeout=120,
    )  # fmt: skip
    return result, json.loads(result.stdout)


def stored_manifest(dest, report) -> dict:
    return json.loads((dest / "ha" / report["id"] / "manifest.json").read_text())


def keyspace(group: HADeployment, name: str) -> dict:
    info = group.client(name).info("keyspace")
    return {db: {"keys": v["keys"], "expires": v["expires"]} for db, v in info.items()}


def test_a_replica_in_sync_is_captured_a_lagging_one_never(group, tmp_path):
    result, report = run_backup(group, tmp_path / "a")
    assert result.returncode == 0, result.stderr
    server = stored_manifest(tmp_path / "a", report)["server"]
    replica, primary = (f"127.0.0.1:{group.nodes[n].tls_port}" for n in ("redis-1", "redis-0"))
    assert (server["captured_from"], server["captured_role"]) == (replica, "replica")
    assert (
        server["capture_reason"].startswith("in sync: ")
        and "bytes behind" in server["capture_reason"]
    )
    snapshot = stored_keyspace(tmp_path / "a", report["id"], tmp_path, env=ADMIN_ENV)
    assert snapshot == keyspace(group, "redis-0")

    # The replica's link down (it cannot log in to the primary any more): not in sync.
    replica_client = group.client("redis-1")
    replica_client.config_set("masterauth", "not-the-password")
    group.client("redis-0").client_kill_filter(_type="replica")
    wait_until(
        lambda: replica_client.info("replication")["master_link_status"] == "down",
        "the replica's link to go down",
    )
    try:
        result, report = run_backup(group, tmp_path / "b")
        assert result.returncode == 0, result.stderr
        server = stored_manifest(tmp_path / "b", report)["server"]
        assert (server["captured_from"], server["captured_role"]) == (primary, "primary")
        assert "link to the primary down" in server["capture_reason"]
        assert any("link to the primary down" in warning for warning in report["warnings"])
    finally:
        replica_client.config_set("masterauth", PASSWORDS["replication"])
        wait_until(
            lambda: replica_client.info("replication")["master_link_status"] == "up",
            "the replica's link to come back",
        )


def test_sigkill_of_the_primary_during_a_backup(group, tmp_path):
    """redis-0 is killed while its capture waits for the snapshot: the run ends complete from
    the new primary (after Sentinel's failover, retried) with the same keys, or failed; `backup
    list` says which."""
    expected = keyspace(group, "redis-0")
    victim = group.client("redis-0")
    victim.config_set("repl-diskless-sync", "yes")
    victim.config_set("repl-diskless-sync-delay", 3)

    def kill_when_capturing() -> None:
        wait_until(
            lambda: victim.info("replication")["connected_slaves"] >= 2,
            "the backup's capture to connect to redis-0",
        )
        group.nodes["redis-0"].process.send_signal(signal.SIGKILL)

    killer = threading.Thread(target=kill_when_capturing)
    killer.start()
    result, report = run_backup(group, tmp_path, "--from", "primary")
    killer.join()
    listing = json.loads(run_redkeep("backup", "list", "--dest", tmp_path, "--json").stdout)
    assert [(row["id"], row["complete"]) for row in listing] == [
        (report["id"], report["result"] == "success")
    ]
    if report["result"] == "failure":
        assert result.returncode == 1, result.stderr
        return
    assert any("retried" in warning for warning in report["warnings"]), report
    manifest = stored_manifest(tmp_path, report)
    new_primary = f"127.0.0.1:{group.nodes['redis-1'].tls_port}"
    assert manifest["server"]["captured_from"] == new_primary
    assert stored_keyspace(tmp_path, report["id"], tmp_path, env=ADMIN_ENV) == expected


def test_an_aof_backup_of_a_sentinel_deployment_is_refused_with_the_reason(group, tmp_path):
    result, report = run_backup(group, tmp_path, "--type", "aof")
    assert result.returncode == 2, result.stderr
    assert "not --type aof: an AOF is copied from the data directory" in report["error"]
    assert not list(tmp_path.glob("ha/*/manifest.json"))
