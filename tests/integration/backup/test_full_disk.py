"""A backup that fails part-way leaves nothing behind but its failure report: on a full disk
(a real 2 MiB tmpfs), and in S3 when the source dies after parts were uploaded."""

import json
import os
import subprocess
import time

import pyrage
import pytest
import redis

from redkeep.actions.backup_catalog import find_backup
from redkeep.backup.fetch import OutputError
from redkeep.backup.stores import open_store
from redkeep.backup.unpack import Decryption, download
from tests.conftest import REDKEEP, run_redkeep
from tests.servers import require_binary

MIB = 1 << 20


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs mounted for the test (the suite runs as root), unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        [require_binary("mount"), "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (the tests need root): {done.stderr}", pytrace=False)
    yield mount
    subprocess.run([require_binary("umount"), str(mount)], check=True)


def fill_random(port: int, values: int, size: int = 100_000) -> None:
    """Random values: they do not compress, so the capture needs their size on disk."""
    pipe = redis.Redis(port=port).pipeline(transaction=False)
    for i in range(values):
        pipe.set(f"random:{i}", os.urandom(size))
    pipe.execute()


def files_under(path):
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())


def empty_dirs_under(path):
    return [p for p in path.rglob("*") if p.is_dir() and not any(p.iterdir())]


def assert_only_failure_reports(root, run_ids):
    """Each failed run left its report.json (result: failure) and nothing else."""
    assert files_under(root) == sorted(f"full/{run}/report.json" for run in run_ids)
    for run in run_ids:
        report = json.loads((root / "full" / run / "report.json").read_text())
        assert report["result"] == "failure" and "no space left in" in report["error"]
    assert empty_dirs_under(root) == []


@pytest.mark.parametrize("kind", ["rdb", "rdb-encrypted", "both"])
def test_a_full_disk_leaves_nothing_behind(redis_factory, small_disk, tmp_path, kind):
    server = redis_factory(["repl-diskless-sync-delay 0", "appendonly yes"])
    # rdb: 4 MiB never fit. both: the 1.2 MiB RDB is stored, then the AOF does not fit, so
    # the stored RDB must go too.
    fill_random(server.port, 12 if kind == "both" else 40)
    store = small_disk / "store"
    args = ["--type", kind.split("-")[0], "--source", "full", "--json"]
    if kind == "rdb-encrypted":
        args += ["--age-recipient", str(pyrage.x25519.Identity.generate().to_public())]
    else:
        args.append("--no-encrypt")
    url = f"redis://127.0.0.1:{server.port}"
    run_ids = []
    for _ in range(2):  # a second run fails the same way: the first one freed its space
        result = run_redkeep("backup", "run", "--url", url, "--dest", store, *args)
        assert result.returncode == 1, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"redkeep: error: no space left in {store}/full/")
        assert line.endswith("free space there or choose another --dest")
        run_ids.append(json.loads(result.stdout)["id"])
    assert_only_failure_reports(store, run_ids)
    usage = os.statvfs(small_disk)
    assert (usage.f_blocks - usage.f_bfree) * usage.f_frsize < 64 * 1024
    listing = json.loads(run_redkeep("backup", "list", "--dest", store, "--json").stdout)
    assert sorted(row["id"] for row in listing) == sorted(run_ids)
    assert not any(row["complete"] for row in listing)
    # The disk is usable again: a backup that fits succeeds.
    redis.Redis(port=server.port).flushall()
    fill_random(server.port, 2, 1000)
    fits = run_redkeep("backup", "run", "--url", url, "--dest", store, *args)
    assert fits.returncode == 0, fits.stderr


def test_s3_upload_failing_after_parts_were_sent_leaves_nothing(redis_factory, s3_server, tmp_path):
    # 12 MiB of random data, one key every 5 ms: the first 8 MiB part goes up before the end.
    server = redis_factory(["repl-diskless-sync-delay 0", "rdb-key-save-delay 5000"])
    fill_random(server.port, 1200, 10_000)
    prefix = "midway"
    process = subprocess.Popen(
        [
            REDKEEP,
            "backup",
            "run",
            "--url",
            f"redis://127.0.0.1:{server.port}",
            "--dest",
            f"s3://{s3_server.bucket}/{prefix}",
            "--source",
            "midway",
            "--no-encrypt",
            "--compress",
            "none",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    s3 = s3_server.client()
    deadline = time.monotonic() + 60
    while not uploaded_parts(s3, s3_server.bucket, prefix):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no part was uploaded within 60 s"
        time.sleep(0.1)
    server.process.kill()  # the source dies with parts in S3
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert "before the snapshot was complete" in err
    uploads = s3.list_multipart_uploads(Bucket=s3_server.bucket, Prefix=f"{prefix}/")
    assert uploads.get("Uploads", []) == []
    listed = s3.list_objects_v2(Bucket=s3_server.bucket, Prefix=f"{prefix}/")
    run_id = json.loads(out)["id"]
    assert [item["Key"] for item in listed.get("Contents", [])] == [
        f"{prefix}/midway/{run_id}/report.json"
    ]


def uploaded_parts(s3, bucket, prefix) -> int:
    uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=f"{prefix}/").get("Uploads", [])
    return sum(
        len(s3.list_parts(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"]).get("Parts", []))
        for u in uploads
    )


def test_a_full_disk_while_verifying_or_restoring_is_not_damage(
    redis_factory, small_disk, tmp_path
):
    server = redis_factory(["repl-diskless-sync-delay 0"])
    fill_random(server.port, 40)
    dest = tmp_path / "dest"
    url = f"redis://127.0.0.1:{server.port}"
    run = run_redkeep("backup", "run", "--url", url, "--dest", dest, "--source", "s", "--json")
    assert run.returncode == 0, run.stderr
    backup_id = json.loads(run.stdout)["id"]
    verify = run_redkeep(
        "backup", "verify", backup_id, "--dest", dest, env={"TMPDIR": str(small_disk)}
    )
    assert verify.returncode == 1
    assert f"cannot write the restored data to {small_disk}/redkeep-drill-" in verify.stderr
    assert "No space left on device" in verify.stderr
    assert not (dest / "s" / backup_id / "verify.json").exists()  # no verdict on the backup
    restore = run_redkeep(
        "backup", "restore", backup_id, "--dest", dest, "--to-file", small_disk / "dump.rdb"
    )
    assert restore.returncode == 1 and "No space left on device" in restore.stderr
    assert list(small_disk.iterdir()) == []
    assert run_redkeep("backup", "verify", backup_id, "--dest", dest).returncode == 0


def test_a_disk_that_fills_on_the_last_write_is_named(redis_factory, tmp_path):
    """A small object stays in the file's buffer until it is closed: the full disk shows only
    then (here /dev/full), and the error must still name the place."""
    server = redis_factory(["repl-diskless-sync-delay 0"])
    redis.Redis(port=server.port).set("k", "v")
    dest = tmp_path / "dest"
    url = f"redis://127.0.0.1:{server.port}"
    run = run_redkeep("backup", "run", "--url", url, "--dest", dest, "--source", "s", "--json")
    assert run.returncode == 0, run.stderr
    store = open_store(str(dest))
    listed = find_backup(store, "s", "latest")
    full = tmp_path / "staging" / "dump.rdb"
    full.parent.mkdir()
    full.symlink_to("/dev/full")
    with pytest.raises(OutputError, match=f"cannot write the restored data to {full.parent}: No"):
        download(
            store, listed.manifest, listed.manifest.objects[0], Decryption([]).identities, full
        )


def test_a_read_only_store_shows_the_verdict_then_fails_on_recording_it(redis_factory, read_only):
    source, view = read_only
    server = redis_factory(["repl-diskless-sync-delay 0"])
    redis.Redis(port=server.port).set("k", "v")
    url = f"redis://127.0.0.1:{server.port}"
    run = run_redkeep("backup", "run", "--url", url, "--dest", source, "--source", "s")
    assert run.returncode == 0, run.stderr
    verify = run_redkeep("backup", "verify", "latest", "--dest", view)
    assert verify.returncode == 1
    assert verify.stdout.strip().endswith("verified")  # the verdict of the whole drill
    (line,) = verify.stderr.strip().splitlines()
    assert "the verdict could not be stored as verify.json" in line
    assert "Read-only file system" in line
    assert list(source.glob("s/*/verify.json")) == []
