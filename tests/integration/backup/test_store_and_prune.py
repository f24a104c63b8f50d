"""Retention on real stores, S3 upload options, and the never-plaintext guard."""

import json

import pytest

from redkeep.actions.backup import _prove_encrypted
from redkeep.backup.manifest import Manifest, StoredObject
from redkeep.backup.store_local import LocalStore
from redkeep.errors import StoreError
from tests.conftest import run_redkeep


def backup(bundle, *args, env=None):
    result = run_redkeep("backup", "run", "--dir", bundle.root, "--json", *args, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_prune_is_per_source_and_dry_run_deletes_nothing(backup_bundle, tmp_path):
    dest = str(tmp_path / "shared")
    ids = {
        source: [backup(backup_bundle, "--dest", dest, "--source", source)["id"] for _ in range(3)]
        for source in ("alpha", "beta")
    }
    dry = run_redkeep(
        "backup",
        "prune",
        "--dest",
        dest,
        "--source",
        "alpha",
        "--keep-last",
        "1",
        "--dry-run",
        "--json",
    )
    assert dry.returncode == 0, dry.stderr
    plan = {row["id"]: row for row in json.loads(dry.stdout)}
    assert set(plan) == set(ids["alpha"])
    assert plan[ids["alpha"][-1]]["action"] == "keep"
    assert [plan[i]["action"] for i in ids["alpha"][:2]] == ["delete", "delete"]
    assert all(plan[i]["reason"] == "not selected by any rule" for i in ids["alpha"][:2])
    listed = json.loads(run_redkeep("backup", "list", "--dest", dest, "--json").stdout)
    assert len(listed) == 6  # dry run: nothing gone

    done = run_redkeep("backup", "prune", "--dest", dest, "--source", "alpha", "--keep-last", "1")
    assert done.returncode == 0, done.stderr
    assert "deleted" in done.stdout
    listed = json.loads(run_redkeep("backup", "list", "--dest", dest, "--json").stdout)
    assert sorted(row["id"] for row in listed) == sorted([ids["alpha"][-1], *ids["beta"]])
    assert not any((tmp_path / "shared" / "alpha" / i).exists() for i in ids["alpha"][:2])


def test_prune_without_a_policy_outside_a_bundle_is_a_usage_error(tmp_path):
    result = run_redkeep("backup", "prune", "--dest", str(tmp_path))
    assert result.returncode == 2
    assert "no retention policy" in result.stderr


def test_s3_storage_class_and_sse_are_applied(backup_bundle, s3_server):
    env = {"REDKEEP_BACKUP__S3__STORAGE_CLASS": "STANDARD_IA", "REDKEEP_BACKUP__S3__SSE": "AES256"}
    report = backup(backup_bundle, "--dest", f"s3://{s3_server.bucket}/options", env=env)
    head = s3_server.client().head_object(
        Bucket=s3_server.bucket,
        Key=f"options/{report['source']}/{report['id']}/{report['objects'][0]}",
    )
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["ServerSideEncryption"] == "AES256"


def test_plaintext_where_ciphertext_was_promised_is_deleted_and_fails(tmp_path):
    store = LocalStore.at(str(tmp_path))
    store.put_bytes("src/20261127T000000Z-0000/dump.rdb.zst.age", b"REDIS0010 not encrypted at all")
    manifest = Manifest("20261127T000000Z-0000", "src", "rdb", "2026-11-27T00:00:00+00:00")
    manifest.objects.append(
        StoredObject("dump.rdb.zst.age", "rdb", 30, "x", 30, "x", "zstd", "age")
    )
    with pytest.raises(StoreError, match="does not start with the age header"):
        _prove_encrypted(store, manifest)
    assert store.list_objects() == {}


def test_a_verified_backup_is_kept_as_the_newest_verified(backup_bundle, tmp_path):
    """`verify` passes on real data (the shared dataset), so retention keeps that backup."""
    dest = str(tmp_path / "kept")
    verified, middle, newest = (backup(backup_bundle, "--dest", dest)["id"] for _ in range(3))
    check = run_redkeep("backup", "verify", verified, "--dir", backup_bundle.root, "--dest", dest)
    assert check.returncode == 0, check.stderr
    pruned = run_redkeep("backup", "prune", "--dest", dest, "--keep-last", "1", "--json")
    assert pruned.returncode == 0, pruned.stderr
    plan = {row["id"]: (row["action"], row["reason"]) for row in json.loads(pruned.stdout)}
    assert plan == {
        newest: ("keep", "newest backup"),
        verified: ("keep", "newest verified backup"),
        middle: ("delete", "not selected by any rule"),
    }
    listed = json.loads(run_redkeep("backup", "list", "--dest", dest, "--json").stdout)
    assert {row["id"]: row["verified"] for row in listed} == {verified: True, newest: False}
