"""What the snapshot holds is counted by `verify` and `restore` in the stored RDB, not during
the capture: the manifest records no counts now, verify still judges the drill by the
snapshot's own keys (and fails when the drill holds fewer), and manifests from an older
redkeep, which recorded counts, are still held to them."""

import json
import shutil

import pytest
import redis

from redkeep.actions.verify import compare_keyspace
from redkeep.backup import drill
from redkeep.backup.manifest import Manifest
from redkeep.backup.unpack import read_snapshot
from redkeep.errors import DamagedBackup
from tests.conftest import run_redkeep

KEYS = 50


@pytest.fixture
def stored(redis_factory, tmp_path):
    """A backup of 50 keys in db0 and 3 with a TTL in db3; its dest, id and directory."""
    server = redis_factory(["repl-diskless-sync-delay 0"])
    client = redis.Redis(port=server.port)
    for i in range(KEYS):
        client.set(f"k{i}", i)
    for i in range(3):
        redis.Redis(port=server.port, db=3).set(f"t{i}", i, ex=3600)
    dest = tmp_path / "dest"
    url = f"redis://127.0.0.1:{server.port}"
    run = run_redkeep("backup", "run", "--url", url, "--dest", dest, "--source", "s", "--json")
    assert run.returncode == 0, run.stderr
    backup_id = json.loads(run.stdout)["id"]
    return dest, backup_id, dest / "s" / backup_id


def restore_file(dest, backup_id, path):
    return run_redkeep("backup", "restore", backup_id, "--dest", dest, "--to-file", path)


def test_verify_judges_the_drill_by_the_stored_snapshot(stored):
    dest, backup_id, where = stored
    manifest = json.loads((where / "manifest.json").read_text())
    assert "keyspace" not in manifest["rdb"]  # the capture did not walk the RDB
    verify = run_redkeep("backup", "verify", backup_id, "--dest", dest, "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    (checks,) = json.loads(verify.stdout)["objects"].values()
    assert checks["drill"]["expected_from"] == "snapshot"
    assert checks["drill"]["keyspace"] == {
        "db0": {"keys": KEYS, "expires": 0},
        "db3": {"keys": 3, "expires": 3},
    }


def test_a_drill_holding_fewer_keys_than_the_snapshot_fails(stored, tmp_path):
    """The check verify runs, on real files and a real drill server: the snapshot walked from
    the stored RDB holds 53 keys; a drill that loaded one fewer is damage."""
    dest, backup_id, where = stored
    full = tmp_path / "full.rdb"
    assert restore_file(dest, backup_id, full).returncode == 0
    snapshot = read_snapshot(full)
    assert snapshot.keyspace == {
        "db0": {"keys": KEYS, "expires": 0},
        "db3": {"keys": 3, "expires": 3},
    }
    manifest = Manifest.from_json((where / "manifest.json").read_bytes())
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(full, data / "dump.rdb")
    with drill.scratch_server(data) as drilled:
        assert compare_keyspace(drilled, manifest, snapshot).keyspace["db0"]["keys"] == KEYS
        drilled.client().delete("k0")  # the drill now holds less than the snapshot
        with pytest.raises(DamagedBackup, match=f"db0 keys: {KEYS - 1} loaded, {KEYS} expected"):
            compare_keyspace(drilled, manifest, snapshot)


def record_counts(where, counts) -> None:
    """Make the manifest look like one from a redkeep that counted while capturing."""
    path = where / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["rdb"]["keyspace"] = counts
    path.write_text(json.dumps(manifest))


def test_an_older_manifest_with_its_counts_still_verifies_and_restores(stored, tmp_path):
    dest, backup_id, where = stored
    record_counts(where, {"db0": {"keys": KEYS, "expires": 0}, "db3": {"keys": 3, "expires": 3}})
    verify = run_redkeep("backup", "verify", backup_id, "--dest", dest)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    restored = restore_file(dest, backup_id, tmp_path / "dump.rdb")
    assert restored.returncode == 0, restored.stderr
    assert read_snapshot(tmp_path / "dump.rdb").keyspace["db0"]["keys"] == KEYS


def test_an_older_manifest_whose_counts_the_rdb_does_not_hold_fails(stored, tmp_path):
    dest, backup_id, where = stored
    record_counts(
        where, {"db0": {"keys": KEYS + 1, "expires": 0}, "db3": {"keys": 3, "expires": 3}}
    )
    out = tmp_path / "dump.rdb"
    refused = restore_file(dest, backup_id, out)
    assert refused.returncode == 1
    assert f"db0 keys: {KEYS} in the file, {KEYS + 1} in the manifest" in refused.stderr
    assert not out.exists()
    verify = run_redkeep("backup", "verify", backup_id, "--dest", dest)
    assert verify.returncode == 1
    assert f"db0 keys: {KEYS} loaded, {KEYS + 1} expected" in verify.stdout + verify.stderr
