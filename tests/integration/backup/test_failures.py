"""Bad input gets a clear error, a non-zero exit, and nothing written to the target."""

import datetime as dt
import hashlib
import json
import os
import signal
import socket
import subprocess
import time

import pyrage
import pytest
import redis

from redkeep.actions.backup_catalog import prune
from redkeep.backup.manifest import Manifest
from redkeep.backup.rdb import crc64
from redkeep.backup.retention import Policy
from redkeep.backup.store_local import LocalStore
from tests import datasets
from tests.conftest import REDKEEP, run_redkeep
from tests.integration.conftest import client_as
from tests.servers import BUILDS


def backup(bundle, *args):
    result = run_redkeep("backup", "run", "--dir", bundle.root, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def stored(bundle, report, name=None):
    return (
        bundle.root / "backups" / report["source"] / report["id"] / (name or report["objects"][0])
    )


def restore_to_file(bundle, backup_id, path):
    return run_redkeep("backup", "restore", backup_id, "--dir", bundle.root, "--to-file", path)


def restore_to_url_leaves_target_alone(bundle, redis_factory, backup_id, *args):
    """Restore with --replace into a server that holds keys of its own (one of them with a
    name the backup has too): the restore must fail and the server hold exactly what it held."""
    url = f"redis://127.0.0.1:{redis_factory().port}"
    datasets.client_for(url, 0).set("str:embstr", "the target's own value")
    datasets.client_for(url, 2).set("mine", "keep me", ex=3600)
    before = datasets.snapshot(url)
    result = run_redkeep(
        "backup", "restore", backup_id, "--dir", bundle.root, "--to-url", url, "--replace", *args
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert datasets.compare(before, datasets.snapshot(url), ttl_slack_ms=0) == []
    return result


def verdict(bundle, report):
    path = stored(bundle, report, "verify.json")
    return json.loads(path.read_text())["result"] if path.exists() else None


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_object_fails_verify_and_restore(backup_bundle, redis_factory, tmp_path, damage):
    report = backup(backup_bundle)
    path = stored(backup_bundle, report)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x40
    else:
        del data[-100:]
    path.write_bytes(bytes(data))
    verify = run_redkeep("backup", "verify", report["id"], "--dir", backup_bundle.root)
    assert verify.returncode == 1
    assert "is damaged: its SHA-256" in verify.stderr
    assert len(verify.stderr.strip().splitlines()) == 1
    assert verdict(backup_bundle, report) == "failed"
    restore = restore_to_file(backup_bundle, report["id"], tmp_path / "dump.rdb")
    assert restore.returncode != 0
    assert "is damaged" in restore.stderr
    assert list(tmp_path.iterdir()) == []
    to_url = restore_to_url_leaves_target_alone(backup_bundle, redis_factory, report["id"])
    assert "is damaged" in to_url.stderr


def test_damaged_object_in_s3_fails_verify_and_restore(backup_bundle, redis_factory, s3_server):
    dest = f"s3://{s3_server.bucket}/damaged"
    report = backup(backup_bundle, "--dest", dest)
    s3 = s3_server.client()
    key = f"damaged/{report['source']}/{report['id']}/{report['objects'][0]}"
    data = bytearray(s3.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0x01
    s3.put_object(Bucket=s3_server.bucket, Key=key, Body=bytes(data))
    verify = run_redkeep(
        "backup", "verify", report["id"], "--dir", backup_bundle.root, "--dest", dest
    )
    assert verify.returncode == 1 and "is damaged: its SHA-256" in verify.stderr
    to_url = restore_to_url_leaves_target_alone(
        backup_bundle, redis_factory, report["id"], "--dest", dest
    )
    assert "is damaged" in to_url.stderr


def test_missing_manifest_means_incomplete(backup_bundle, redis_factory, tmp_path):
    report = backup(backup_bundle)
    stored(backup_bundle, report, "manifest.json").unlink()
    listing = json.loads(
        run_redkeep("backup", "list", "--dir", backup_bundle.root, "--json").stdout
    )
    (row,) = [row for row in listing if row["id"] == report["id"]]
    assert row["complete"] is False
    restore = restore_to_file(backup_bundle, report["id"], tmp_path / "dump.rdb")
    assert restore.returncode == 1
    assert "cannot be used: it is incomplete (no manifest)" in restore.stderr
    to_url = restore_to_url_leaves_target_alone(backup_bundle, redis_factory, report["id"])
    assert "it is incomplete (no manifest)" in to_url.stderr
    latest = run_redkeep("backup", "verify", "latest", "--dir", backup_bundle.root, "--json")
    assert json.loads(latest.stdout)["id"] != report["id"]  # latest means latest complete


def test_wrong_identity(backup_bundle, redis_factory, tmp_path):
    report = backup(backup_bundle)
    other = tmp_path / "other.key"
    other.write_text(str(pyrage.x25519.Identity.generate()) + "\n")
    verify = run_redkeep(
        "backup", "verify", report["id"], "--dir", backup_bundle.root, "--age-identity", other
    )
    assert verify.returncode == 1
    assert "none of the given identities matches its recipients" in verify.stderr
    assert verdict(backup_bundle, report) is None  # a wrong key says nothing about the backup
    restore = run_redkeep(
        "backup",
        "restore",
        report["id"],
        "--dir",
        backup_bundle.root,
        "--to-file",
        tmp_path / "out.rdb",
        "--age-identity",
        other,
    )
    assert restore.returncode == 1 and not (tmp_path / "out.rdb").exists()
    to_url = restore_to_url_leaves_target_alone(
        backup_bundle, redis_factory, report["id"], "--age-identity", other
    )
    assert "none of the given identities matches" in to_url.stderr


def test_unknown_rdb_version_from_a_newer_server(backup_bundle, tmp_path):
    """A backup whose RDB says version 99 (a future Redis): refused loudly, nothing restored."""
    report = backup(backup_bundle, "--no-encrypt", "--compress", "none")
    path = stored(backup_bundle, report)
    data = b"REDIS0099" + path.read_bytes()[9:-8]
    data += crc64(data).to_bytes(8, "little")
    path.write_bytes(data)
    manifest_path = stored(backup_bundle, report, "manifest.json")
    manifest = Manifest.from_json(manifest_path.read_bytes())
    digest = hashlib.sha256(data).hexdigest()
    manifest.objects[0].sha256 = manifest.objects[0].raw_sha256 = digest
    manifest.objects[0].size = manifest.objects[0].raw_size = len(data)
    manifest_path.write_bytes(manifest.to_json())
    restore = restore_to_file(backup_bundle, report["id"], tmp_path / "dump.rdb")
    assert restore.returncode == 1
    assert "unknown RDB version 99" in restore.stderr and "upgrade redkeep" in restore.stderr
    assert list(tmp_path.iterdir()) == []


def wait_for_replica(server, timeout: float = 30) -> None:
    """Until the backup is connected as a replica and its snapshot is streaming."""
    client = redis.Redis(port=server.port)
    deadline = time.monotonic() + timeout
    while not client.client_list(_type="replica"):
        assert time.monotonic() < deadline, "the backup never connected as a replica"
        time.sleep(0.05)
    time.sleep(0.2)  # a few keys into the stream


@pytest.fixture
def slow_server(redis_factory, tmp_path):
    """A plain server whose snapshots take seconds (rdb-key-save-delay), with enough keys."""
    server = redis_factory(["repl-diskless-sync-delay 0", "rdb-key-save-delay 200"])
    client = redis.Redis(port=server.port)
    pipe = client.pipeline(transaction=False)
    for i in range(20000):
        pipe.set(f"key:{i}", "x" * 50)
    pipe.execute()
    return server


@pytest.mark.parametrize("where", ["local", "s3"])
def test_server_dropping_mid_transfer(slow_server, tmp_path, s3_server, where):
    dest = str(tmp_path / "dest") if where == "local" else f"s3://{s3_server.bucket}/dropped"
    process = subprocess.Popen(
        [
            REDKEEP,
            "backup",
            "run",
            "--url",
            f"redis://127.0.0.1:{slow_server.port}",
            "--dest",
            dest,
            "--source",
            "slow",
            "--no-encrypt",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_replica(slow_server)
    slow_server.process.kill()  # the server dies while streaming its snapshot
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, out + err
    assert "closed the connection after" in err and "before the snapshot was complete" in err
    listing = run_redkeep("backup", "list", "--dest", dest, "--json")
    assert [row for row in json.loads(listing.stdout) if row["complete"]] == []
    if where == "s3":  # the multipart upload was aborted: no parts left behind
        uploads = s3_server.client().list_multipart_uploads(
            Bucket=s3_server.bucket, Prefix="dropped/"
        )
        assert uploads.get("Uploads", []) == []
    else:  # no temp file left behind either
        assert not [p for p in (tmp_path / "dest").rglob("*.partial")]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_backup_killed_mid_run_leaves_nothing_complete(slow_server, tmp_path, s3_server, where):
    dest = str(tmp_path / "dest") if where == "local" else f"s3://{s3_server.bucket}/killed"
    process = subprocess.Popen(
        [
            REDKEEP,
            "backup",
            "run",
            "--url",
            f"redis://127.0.0.1:{slow_server.port}",
            "--dest",
            dest,
            "--source",
            "killed",
            "--no-encrypt",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for_replica(slow_server)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    listing = run_redkeep("backup", "list", "--dest", dest, "--source", "killed", "--json")
    assert listing.returncode == 0, listing.stderr
    assert [row for row in json.loads(listing.stdout) if row["complete"]] == []


def test_a_killed_run_is_listed_incomplete_and_pruned_with_its_temp_file(slow_server, tmp_path):
    dest = tmp_path / "dest"
    process = subprocess.Popen(
        [
            REDKEEP,
            "backup",
            "run",
            "--url",
            f"redis://127.0.0.1:{slow_server.port}",
            "--dest",
            dest,
            "--source",
            "killed",
            "--no-encrypt",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not [p for p in dest.rglob("*.partial") if p.stat().st_size > 0]:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    listing = run_redkeep("backup", "list", "--dest", dest, "--json")
    (row,) = json.loads(listing.stdout)
    assert not row["complete"] and row["size"] > 0  # the temp file, seen and counted
    store = LocalStore.at(str(dest))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    (decision,) = prune(store, None, Policy(keep_last=5), later, dry_run=False).to_json()
    assert decision["action"] == "delete" and decision["reason"] == "incomplete (no manifest)"
    assert list(dest.rglob("*")) == [dest / "killed"]  # the source's directory, empty


def test_failure_keeps_last_success_time_in_metrics(backup_bundle):
    backup(backup_bundle)
    metrics = backup_bundle.root / "run" / "metrics" / "redkeep_backup.prom"
    before = metrics.read_text()
    success_line = next(
        line for line in before.splitlines() if line.startswith("redkeep_backup_last_success")
    )
    failed = run_redkeep(
        "backup",
        "run",
        "--dir",
        backup_bundle.root,
        "--url",
        f"rediss://backup:WrongPw-XYZ123@localhost:{backup_bundle.settings.redis.tls_port}",
    )
    assert failed.returncode == 3
    after = metrics.read_text()
    assert success_line in after
    assert 'redkeep_backup_last_result{source="' in after and after.count("} 0\n") >= 1


def test_notifications_on_failure_always_and_success_on_request(
    backup_bundle, http_sink, monkeypatch
):
    secret_token = "123456:TOKEN-SECRET-abc"
    env = {
        "SLACK_WEBHOOK_URL": f"{http_sink.url}/slack/T000/B000/SLACKSECRET",
        "TELEGRAM_BOT_TOKEN": secret_token,
        "TELEGRAM_CHAT_ID": "-1001",
        "BACKUP_WEBHOOK_URL": f"{http_sink.url}/hook?key=HOOKSECRET",
        "REDKEEP_BACKUP__NOTIFY__TELEGRAM_API_URL": f"{http_sink.url}/tg",
    }
    port = backup_bundle.settings.redis.tls_port
    bad = run_redkeep(
        "backup",
        "run",
        "--dir",
        backup_bundle.root,
        "--url",
        f"rediss://backup:WrongPw-XYZ123@localhost:{port}",
        env=env,
    )
    assert bad.returncode == 3
    paths = sorted(request["path"].split("?")[0] for request in http_sink.requests)
    assert paths == ["/hook", "/slack/T000/B000/SLACKSECRET", f"/tg/bot{secret_token}/sendMessage"]
    for request in http_sink.requests:
        text = json.dumps(request["body"])
        assert "FAILED" in text and "WRONGPASS" in text
        for secret in (
            "SLACKSECRET",
            "TOKEN-SECRET",
            "HOOKSECRET",
            "WrongPw-XYZ123",
            backup_bundle.password("backup"),
        ):
            assert secret not in text
    telegram = next(r for r in http_sink.requests if r["path"].startswith("/tg"))
    assert telegram["body"]["chat_id"] == "-1001"
    http_sink.requests.clear()
    assert run_redkeep("backup", "run", "--dir", backup_bundle.root, env=env).returncode == 0
    assert http_sink.requests == []  # success is quiet by default
    ok = run_redkeep("backup", "run", "--dir", backup_bundle.root, "--notify-on-success", env=env)
    assert ok.returncode == 0
    assert len(http_sink.requests) == 3
    hook = next(r for r in http_sink.requests if r["path"].startswith("/hook"))
    assert hook["body"]["report"]["result"] == "success"


def test_a_failing_notification_is_reported_not_fatal(backup_bundle, http_sink):
    http_sink.status = 500
    env = {"BACKUP_WEBHOOK_URL": f"{http_sink.url}/hook"}
    result = run_redkeep(
        "backup", "run", "--dir", backup_bundle.root, "--notify-on-success", env=env
    )
    assert result.returncode == 0
    assert "warning: webhook notification failed: HTTP 500" in result.stderr


def test_s3_errors_are_one_line(backup_bundle, s3_server):
    result = run_redkeep(
        "backup", "run", "--dir", backup_bundle.root, "--dest", "s3://no-such-bucket/x"
    )
    assert result.returncode == 1  # the store failed, not the command line
    assert result.stderr.strip().startswith(
        "redkeep: error: create_multipart_upload on s3://no-such-bucket/"
    )
    assert "(NoSuchBucket): create the bucket first" in result.stderr


def test_keys_that_expire_after_the_backup_do_not_fail_verify(backup_bundle):
    admin = client_as(backup_bundle, "admin")
    for i in range(20):
        admin.set(f"session:short:{i}", "x", px=1500)
    report = backup(backup_bundle)
    time.sleep(2.0)  # every short key is gone before the drill loads the backup
    verify = run_redkeep("backup", "verify", report["id"], "--dir", backup_bundle.root, "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    drill = json.loads(verify.stdout)["objects"][report["objects"][0]]["drill"]
    assert drill["expired_since_capture"] >= 20
    assert drill["sampled_keys"] > 0


def test_a_wrong_key_does_not_unverify_a_good_backup(backup_bundle, tmp_path):
    report = backup(backup_bundle)
    assert (
        run_redkeep("backup", "verify", report["id"], "--dir", backup_bundle.root).returncode == 0
    )
    other = tmp_path / "other.key"
    other.write_text(str(pyrage.x25519.Identity.generate()) + "\n")
    wrong = run_redkeep(
        "backup", "verify", report["id"], "--dir", backup_bundle.root, "--age-identity", other
    )
    assert wrong.returncode == 1
    listing = json.loads(
        run_redkeep("backup", "list", "--dir", backup_bundle.root, "--json").stdout
    )
    (row,) = [row for row in listing if row["id"] == report["id"]]
    assert row["verified"] is True


def test_many_databases_verify_and_a_smaller_target_is_refused_before_writing(
    redis_factory, tmp_path
):
    source = redis_factory(["databases 64", "repl-diskless-sync-delay 0"])
    redis.Redis(port=source.port, db=40).set("deep", "db 40")
    redis.Redis(port=source.port, db=0).set("top", "db 0")
    dest = tmp_path / "dest"
    url = f"redis://127.0.0.1:{source.port}"
    run = run_redkeep("backup", "run", "--url", url, "--dest", dest, "--source", "many", "--json")
    assert run.returncode == 0, run.stderr
    backup_id = json.loads(run.stdout)["id"]
    verify = run_redkeep("backup", "verify", backup_id, "--dest", dest, "--source", "many")
    assert verify.returncode == 0, verify.stderr
    small = redis_factory()  # 16 databases
    restore = run_redkeep(
        "backup",
        "restore",
        backup_id,
        "--dest",
        dest,
        "--source",
        "many",
        "--to-url",
        f"redis://127.0.0.1:{small.port}",
    )
    assert restore.returncode == 2
    assert "has 16 databases, but the backup uses db40" in restore.stderr
    assert redis.Redis(port=small.port).dbsize() == 0  # nothing written
    big = redis_factory(["databases 64"])
    restore = run_redkeep(
        "backup",
        "restore",
        backup_id,
        "--dest",
        dest,
        "--source",
        "many",
        "--to-url",
        f"redis://127.0.0.1:{big.port}",
    )
    assert restore.returncode == 0, restore.stderr
    assert redis.Redis(port=big.port, db=40).get("deep") == b"db 40"


def test_a_destination_that_fails_is_reported_notified_and_counted(
    backup_bundle, http_sink, tmp_path
):
    metrics = tmp_path / "metrics.prom"
    env = {"BACKUP_WEBHOOK_URL": f"{http_sink.url}/hook"}
    result = run_redkeep(
        "backup",
        "run",
        "--dir",
        backup_bundle.root,
        "--dest",
        "/proc/redkeep-cannot-write",
        "--metrics-file",
        metrics,
        "--json",
        env=env,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("redkeep: error: ")
    report = json.loads(result.stdout)
    assert report["result"] == "failure" and "/proc/redkeep-cannot-write" in report["error"]
    (request,) = http_sink.requests
    assert request["body"]["report"]["result"] == "failure"
    assert 'redkeep_backup_last_result{source="' in metrics.read_text()


def test_sigterm_during_the_aof_pause_puts_the_setting_back(redis_factory, tmp_path):
    server = redis_factory(
        ["appendonly yes", "rdb-key-save-delay 500", "repl-diskless-sync-delay 0"]
    )
    client = redis.Redis(port=server.port)
    pipe = client.pipeline(transaction=False)
    for i in range(5000):
        pipe.set(f"k{i}", "v")
    pipe.execute()
    client.bgrewriteaof()  # slow (rdb-key-save-delay): the backup waits for it, paused
    process = subprocess.Popen(
        [
            REDKEEP,
            "backup",
            "run",
            "--type",
            "aof",
            "--url",
            f"redis://127.0.0.1:{server.port}",
            "--dest",
            str(tmp_path / "dest"),
            "--source",
            "aof",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while client.config_get("auto-aof-rewrite-percentage")["auto-aof-rewrite-percentage"] != "0":
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert client.config_get("auto-aof-rewrite-percentage")["auto-aof-rewrite-percentage"] == "100"


def aof_backup(port, dest, env=None):
    return subprocess.Popen(
        [
            REDKEEP,
            "backup",
            "run",
            "--type",
            "aof",
            "--url",
            f"redis://127.0.0.1:{port}",
            "--dest",
            str(dest),
            "--source",
            "aof",
            "--no-encrypt",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_sigkill_during_the_aof_pause_is_repaired_by_the_next_run(redis_factory, tmp_path):
    server = redis_factory(
        ["appendonly yes", "rdb-key-save-delay 500", "repl-diskless-sync-delay 0"]
    )
    client = redis.Redis(port=server.port)
    client.config_set("auto-aof-rewrite-percentage", 77)
    pipe = client.pipeline(transaction=False)
    for i in range(5000):
        pipe.set(f"k{i}", "v")
    pipe.execute()
    client.bgrewriteaof()  # slow: the backup waits for it, paused
    process = aof_backup(server.port, tmp_path / "dest")
    deadline = time.monotonic() + 20
    while client.config_get("auto-aof-rewrite-percentage")["auto-aof-rewrite-percentage"] != "0":
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.kill()  # nothing can put the setting back now
    process.communicate()
    assert client.config_get("auto-aof-rewrite-percentage")["auto-aof-rewrite-percentage"] == "0"
    again = aof_backup(server.port, tmp_path / "dest")
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert client.config_get("auto-aof-rewrite-percentage")["auto-aof-rewrite-percentage"] == "77"


def test_links_left_by_a_killed_aof_backup_are_removed_by_the_next(redis_factory, tmp_path):
    server = redis_factory(["appendonly yes", "repl-diskless-sync-delay 0"])
    redis.Redis(port=server.port).set("k", "v")
    silent = socket.socket()  # an S3 endpoint that accepts and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{silent.getsockname()[1]}",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    process = aof_backup(server.port, "s3://bucket/aof", env)
    deadline = time.monotonic() + 20
    while not list(server.workdir.glob(".redkeep-aof-*/*.manifest")):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.kill()  # while the upload hangs, with the AOF files hard-linked
    process.communicate()
    silent.close()
    assert list(server.workdir.glob(".redkeep-aof-*"))
    again = aof_backup(server.port, tmp_path / "dest")
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert list(server.workdir.glob(".redkeep-aof-*")) == []


@pytest.mark.parametrize("source", ["a/b", ".", "..", 'a"b', "-x"])
def test_source_names_are_checked_before_anything_runs(tmp_path, source):
    result = run_redkeep(
        "backup", "run", "--url", "redis://127.0.0.1:1", "--dest", tmp_path, "--source", source
    )
    assert result.returncode == 2
    assert "source name" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_one_damaged_manifest_does_not_hide_the_others(backup_bundle, tmp_path):
    good = backup(backup_bundle)
    bad = backup(backup_bundle)
    stored(backup_bundle, bad, "manifest.json").write_text("{ not json")
    listing = run_redkeep("backup", "list", "--dir", backup_bundle.root, "--json")
    assert listing.returncode == 0, listing.stderr
    rows = {row["id"]: row for row in json.loads(listing.stdout)}
    assert rows[bad["id"]]["damaged"] and not rows[bad["id"]]["complete"]
    assert rows[good["id"]]["complete"]
    restore = restore_to_file(backup_bundle, good["id"], tmp_path / "dump.rdb")
    assert restore.returncode == 0, restore.stderr


@pytest.mark.parametrize("dest", ["", "file://", "ftp://host/x"])
def test_bad_destinations_are_usage_errors(dest):
    result = run_redkeep("backup", "list", "--dest", dest)
    assert result.returncode == 2
    assert "use a directory path, file:///path or s3://bucket/prefix" in result.stderr


def test_restore_to_file_never_replaces_a_directory_with_other_things(backup_bundle, tmp_path):
    report = backup(backup_bundle)
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    refused = restore_to_file(backup_bundle, report["id"], folder)
    assert refused.returncode == 2 and "is a directory" in refused.stderr
    refused = run_redkeep(
        "backup",
        "restore",
        report["id"],
        "--dir",
        backup_bundle.root,
        "--to-file",
        folder,
        "--replace",
    )
    assert refused.returncode == 2
    assert (folder / "keep.txt").read_text() == "mine"
    existing = tmp_path / "dump.rdb"
    existing.write_text("old")
    dry = run_redkeep(
        "backup",
        "restore",
        report["id"],
        "--dir",
        backup_bundle.root,
        "--to-file",
        existing,
        "--dry-run",
    )
    assert dry.returncode == 2 and "pass --replace" in dry.stderr
    replaced = run_redkeep(
        "backup",
        "restore",
        report["id"],
        "--dir",
        backup_bundle.root,
        "--to-file",
        existing,
        "--replace",
    )
    assert replaced.returncode == 0, replaced.stderr
    assert existing.read_bytes().startswith(b"REDIS")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump.rdb", "precious"]


def test_one_bad_created_time_breaks_neither_the_run_nor_its_prune(backup_bundle):
    first = backup(backup_bundle)
    path = stored(backup_bundle, first, "manifest.json")
    manifest = json.loads(path.read_text())
    manifest["created"] = "2026-11-30T13:00:00"  # no time zone
    path.write_text(json.dumps(manifest))
    metrics = backup_bundle.root / "run" / "metrics" / "redkeep_backup.prom"
    run = run_redkeep("backup", "run", "--dir", backup_bundle.root, "--json")
    assert run.returncode == 0, run.stderr  # stored, then pruned around the damaged one
    assert 'redkeep_backup_last_result{source="' in metrics.read_text()
    assert "} 1" in next(
        line for line in metrics.read_text().splitlines() if "last_result{" in line
    )
    listing = run_redkeep("backup", "list", "--dir", backup_bundle.root, "--json")
    rows = {row["id"]: row for row in json.loads(listing.stdout)}
    assert rows[first["id"]]["damaged"] and "no time zone" in rows[first["id"]]["problem"]
    path.unlink()  # the other tests of this module expect usable backups only


def test_the_drill_server_comes_from_the_setting(backup_bundle):
    report = backup(backup_bundle)
    valkey = next(build for build in BUILDS if build.flavour == "valkey")
    env = {"REDKEEP_BACKUP__SERVER_BINARY": str(valkey.require())}
    verify = run_redkeep(
        "backup", "verify", report["id"], "--dir", backup_bundle.root, "--json", env=env
    )
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["drill_server"] == "valkey 8.1.8"
    env = {"REDKEEP_BACKUP__SERVER_BINARY": "/nonexistent/redis-server"}
    wrong = run_redkeep("backup", "verify", report["id"], "--dir", backup_bundle.root, env=env)
    assert wrong.returncode == 2
    assert "backup.server_binary /nonexistent/redis-server: not an executable file" in wrong.stderr
