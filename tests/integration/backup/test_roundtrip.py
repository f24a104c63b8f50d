"""Backups that restore: every data type and TTL, RDB and AOF, local and S3, encrypted or not.

The restored data must equal the source (tests/datasets.py): every key of every db with its
type, value and TTL.
"""

import json
import os
import pty
import select
import subprocess
import time

import pyrage
import pytest
import redis
import zstandard

from tests import datasets
from tests.conftest import run_redkeep
from tests.integration.backup.conftest import FAST_SNAPSHOTS, admin
from tests.servers import free_port, require_binary


def backup(bundle, *args, env=None):
    result = run_redkeep("backup", "run", "--dir", bundle.root, "--json", *args, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def restore_and_compare(bundle, backup_id, redis_factory, before, *args, env=None):
    """Restore into a new server with --to-url; its data must equal the `before` snapshot."""
    target = redis_factory()
    url = f"redis://127.0.0.1:{target.port}"
    result = run_redkeep(
        "backup",
        "restore",
        backup_id,
        "--dir",
        bundle.root,
        "--to-url",
        url,
        "--json",
        *args,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    datasets.assert_same(before, datasets.snapshot(url))
    return json.loads(result.stdout)


@pytest.mark.parametrize("kind", ["rdb", "both"])
@pytest.mark.parametrize("where", ["local", "s3"])
def test_the_dataset_survives_backup_verify_and_restore(
    backup_bundle, redis_factory, s3_server, kind, where
):
    dest = (
        f"s3://{s3_server.bucket}/dataset-{kind}"
        if where == "s3"
        else str(backup_bundle.root / "backups")
    )
    before = datasets.snapshot(admin(backup_bundle))
    report = backup(backup_bundle, "--dest", dest, "--type", kind)
    verify = run_redkeep(
        "backup", "verify", report["id"], "--dir", backup_bundle.root, "--dest", dest, "--json"
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    per_db = {}
    for db, _ in before:
        per_db[f"db{db}"] = per_db.get(f"db{db}", 0) + 1
    for name, checks in json.loads(verify.stdout)["objects"].items():
        drill = checks["drill"]
        assert {db: v["keys"] for db, v in drill["keyspace"].items()} == per_db, name
        assert drill["sampled_keys"] == len(before), name  # every key went through the check
    listing = run_redkeep("backup", "list", "--dir", backup_bundle.root, "--dest", dest, "--json")
    (row,) = [row for row in json.loads(listing.stdout) if row["id"] == report["id"]]
    assert row["verified"] and row["complete"] and row["type"] == kind
    restore_and_compare(backup_bundle, report["id"], redis_factory, before, "--dest", dest)
    if kind == "both":
        restore_and_compare(
            backup_bundle, report["id"], redis_factory, before, "--dest", dest, "--content", "aof"
        )


def test_restore_to_a_file_loads_in_redis_as_the_dataset(backup_bundle, redis_factory, tmp_path):
    before = datasets.snapshot(admin(backup_bundle))
    report = backup(backup_bundle)
    data = tmp_path / "data"
    restored = run_redkeep(
        "backup",
        "restore",
        report["id"],
        "--dir",
        backup_bundle.root,
        "--to-file",
        data / "dump.rdb",
    )
    assert restored.returncode == 0, restored.stderr
    server = redis_factory([f"dir {data}", "dbfilename dump.rdb"])
    # The file keeps absolute expiry times: the deadlines match to the millisecond.
    datasets.assert_same(before, datasets.snapshot(f"redis://127.0.0.1:{server.port}"), 0)


def test_rdb_encrypted_local_verify_and_restore(backup_bundle, redis_factory):
    before = datasets.snapshot(admin(backup_bundle))
    report = backup(backup_bundle)
    assert report["result"] == "success"
    assert report["encryption"] == "age-recipients"  # a new bundle encrypts from the start
    assert report["rdb"]["checksum"] == "ok" and report["rdb"]["version"] == 10
    verify = run_redkeep("backup", "verify", report["id"], "--dir", backup_bundle.root, "--json")
    assert verify.returncode == 0, verify.stderr
    checks = json.loads(verify.stdout)["objects"][report["objects"][0]]
    assert checks["redis_check_rdb"] == "ok"
    assert checks["drill"]["keyspace"]["db15"]["keys"] == 2
    restored = restore_and_compare(backup_bundle, report["id"], redis_factory, before)
    assert restored["restored"]["db0"] > 10


def test_the_standard_age_tool_decrypts_our_files(backup_bundle, tmp_path):
    report = backup(backup_bundle)
    stored = backup_bundle.root / "backups" / report["source"] / report["id"] / report["objects"][0]
    assert stored.read_bytes().startswith(b"age-encryption.org/v1\n")
    decrypted = subprocess.run(
        [require_binary("age"), "-d", "-i", str(backup_bundle.backup_key_path), str(stored)],
        capture_output=True,
        check=True,
    ).stdout
    rdb = zstandard.ZstdDecompressor().decompressobj().decompress(decrypted)
    assert rdb.startswith(b"REDIS0010")


def test_rdb_to_s3_unencrypted_gzip(backup_bundle, redis_factory, s3_server):
    dest = f"s3://{s3_server.bucket}/plain"
    before = datasets.snapshot(admin(backup_bundle))
    report = backup(backup_bundle, "--dest", dest, "--no-encrypt", "--compress", "gzip")
    assert report["encryption"] == "none"
    head = (
        s3_server.client()
        .get_object(
            Bucket=s3_server.bucket, Key=f"plain/{report['source']}/{report['id']}/dump.rdb.gz"
        )["Body"]
        .read(2)
    )
    assert head == b"\x1f\x8b"
    listing = run_redkeep("backup", "list", "--dir", backup_bundle.root, "--dest", dest, "--json")
    (row,) = [row for row in json.loads(listing.stdout) if row["id"] == report["id"]]
    assert row["complete"] and not row["encrypted"]
    restore_and_compare(backup_bundle, report["id"], redis_factory, before, "--dest", dest)


def test_aof_with_a_passphrase(backup_bundle, redis_factory, tmp_path):
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse battery staple\n")
    passphrase.chmod(0o600)
    before = datasets.snapshot(admin(backup_bundle))
    report = backup(backup_bundle, "--type", "aof", "--passphrase-file", passphrase, "--no-encrypt")
    assert report["encryption"] == "none"  # --no-encrypt wins over everything
    report = backup(backup_bundle, "--type", "aof", "--passphrase-file", passphrase)
    assert report["encryption"] == "age-recipients+passphrase"
    assert report["objects"] == ["appendonlydir.tar.zst.age"]
    verify = run_redkeep("backup", "verify", report["id"], "--dir", backup_bundle.root)
    assert verify.returncode == 0, verify.stderr
    # The passphrase alone opens it: an unrelated identity replaces the bundle's key.
    stranger = tmp_path / "stranger.key"
    stranger.write_text(str(pyrage.x25519.Identity.generate()) + "\n")
    alone = run_redkeep(
        "backup",
        "restore",
        report["id"],
        "--dir",
        backup_bundle.root,
        "--to-file",
        tmp_path / "aof",
        "--passphrase-file",
        passphrase,
        "--age-identity",
        stranger,
    )
    assert alone.returncode == 0, alone.stderr
    without = run_redkeep(
        "backup",
        "restore",
        report["id"],
        "--dir",
        backup_bundle.root,
        "--to-file",
        tmp_path / "aof2",
        "--age-identity",
        stranger,
    )
    assert without.returncode == 1
    assert "none of the given identities matches" in without.stderr
    assert not (tmp_path / "aof2").exists()
    assert sorted(p.name.split(".")[-1] for p in (tmp_path / "aof").iterdir()) == [
        "aof",
        "manifest",
        "rdb",
    ]
    restore_and_compare(backup_bundle, report["id"], redis_factory, before)


def test_both_to_s3_encrypted_and_verified(backup_bundle, s3_server):
    dest = f"s3://{s3_server.bucket}/both"
    report = backup(backup_bundle, "--dest", dest, "--type", "both")
    assert sorted(report["objects"]) == ["appendonlydir.tar.zst.age", "dump.rdb.zst.age"]
    verify = run_redkeep("backup", "verify", "latest", "--dir", backup_bundle.root, "--dest", dest)
    assert verify.returncode == 0, verify.stderr
    listing = run_redkeep("backup", "list", "--dir", backup_bundle.root, "--dest", dest, "--json")
    (row,) = [row for row in json.loads(listing.stdout) if row["id"] == report["id"]]
    assert row["verified"] and row["encrypted"] and row["type"] == "both"


@pytest.mark.parametrize("where", ["local", "s3"])
def test_restore_refuses_a_non_empty_target_and_dry_run_changes_nothing(
    backup_bundle, redis_factory, s3_server, where
):
    dest = (
        f"s3://{s3_server.bucket}/refuse" if where == "s3" else str(backup_bundle.root / "backups")
    )
    report = backup(backup_bundle, "--dest", dest)
    target = redis_factory()
    redis.Redis(port=target.port).set("mine", "keep me")
    url = f"redis://127.0.0.1:{target.port}"
    refused = run_redkeep(
        "backup",
        "restore",
        report["id"],
        "--dir",
        backup_bundle.root,
        "--dest",
        dest,
        "--to-url",
        url,
    )
    assert refused.returncode == 2
    assert "is not empty (db0: 1 keys); pass --replace" in refused.stderr
    dry = run_redkeep(
        "backup",
        "restore",
        report["id"],
        "--dir",
        backup_bundle.root,
        "--dest",
        dest,
        "--to-url",
        url,
        "--replace",
        "--dry-run",
    )
    assert dry.returncode == 0, dry.stderr
    assert "dry run: would restore" in dry.stdout
    assert redis.Redis(port=target.port).dbsize() == 1


def test_up_runs_backups_on_a_schedule_and_down_stops_it(tmp_path, redis_binary):
    env = {**FAST_SNAPSHOTS, "REDKEEP_BACKUP__INTERVAL_MINUTES": "0"}
    root = tmp_path / "scheduled"
    assert run_redkeep("init", root, "--tls-port", free_port(), env=env).returncode == 0
    config = root / "redkeep.yaml"
    config.write_text(config.read_text().replace("interval_minutes: 0", "interval_minutes: 1"))
    up = run_redkeep("up", root, "--detach", env=FAST_SNAPSHOTS)
    try:
        assert up.returncode == 0, up.stderr
        assert "backups every 1 min" in up.stdout
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listing = json.loads(run_redkeep("backup", "list", "--dir", root, "--json").stdout)
            if any(row["complete"] for row in listing):
                break
            time.sleep(0.3)
        else:
            pytest.fail(
                "no scheduled backup within 30 s: " + (root / "run" / "backup.log").read_text()
            )
        status = json.loads(run_redkeep("status", root, "--json").stdout)
        assert "UTC" in status["last_backup"] and "FAILED" not in status["last_backup"]
    finally:
        down = run_redkeep("down", root)
    assert "stopped the backup schedule" in down.stdout
    assert not (root / "run" / "backup.pid").exists()


def age_decrypt_with_passphrase(path, out, passphrase: str) -> None:
    """Run `age -d` on a passphrase-encrypted file, typing the passphrase at its tty prompt."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: age reads the passphrase from its terminal only
        os.execvp(require_binary("age"), ["age", "-d", "-o", str(out), str(path)])
    seen, typed, deadline = b"", False, time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 1024)
            except OSError:
                break
            if not data:
                break
            seen += data
            if b"passphrase" in seen.lower() and not typed:
                os.write(fd, passphrase.encode() + b"\n")
                typed = True
    _, status = os.waitpid(pid, 0)
    assert status == 0, seen


def test_passphrase_backups_open_with_the_age_tool(redis_factory, tmp_path):
    server = redis_factory(["repl-diskless-sync-delay 0"])
    redis.Redis(port=server.port).set("hello", "world")
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("a long passphrase for testing\n")
    dest = tmp_path / "dest"
    result = run_redkeep(
        "backup",
        "run",
        "--url",
        f"redis://127.0.0.1:{server.port}",
        "--dest",
        dest,
        "--passphrase-file",
        passphrase,
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["encryption"] == "age-passphrase"
    folder = dest / f"127.0.0.1-{server.port}" / report["id"]
    age_decrypt_with_passphrase(
        folder / "key.age", tmp_path / "key.txt", "a long passphrase for testing"
    )
    data = subprocess.run(
        [
            require_binary("age"),
            "-d",
            "-i",
            str(tmp_path / "key.txt"),
            str(folder / "dump.rdb.zst.age"),
        ],
        capture_output=True,
        check=True,
    ).stdout
    rdb = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    assert rdb.startswith(b"REDIS") and b"hello" in rdb
