"""`verify` judges a backup by what its snapshot holds, not by INFO read around the capture:
keys that come and go while the snapshot is taken must not make a good backup "damaged"."""

import json
import subprocess
import threading
import time

import redis

from tests.conftest import REDKEEP, run_redkeep
from tests.servers import rdb_version


def wait_for(condition, what: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the backup ended before {what}: {process.communicate()}"
        assert time.monotonic() < deadline, f"no {what} within {timeout}s"
        time.sleep(0.005)


def churn(port: int, stop: threading.Event) -> int:
    """A cache with churn in db 9: new keys SET, old ones deleted, TTLs set and dropped."""
    client = redis.Redis(port=port, db=9)
    done = 0
    while not stop.is_set():
        pipe = client.pipeline(transaction=False)
        for i in range(done, done + 50):
            pipe.set(f"cache:{i}", "x" * 32, ex=600 if i % 2 else None)
            pipe.delete(f"cache:{i - 300}")
        pipe.execute()
        done += 50
    return done


def test_keys_that_exist_only_during_the_snapshot_do_not_fail_verify(redis_factory, tmp_path):
    """The job-queue timeline: INFO 'before' sees db10 empty, a job arrives, the fork takes
    the snapshot (with the job), a worker takes the job, INFO 'after' sees db10 empty again.
    Meanwhile a writer churns db 9. The backup is faithful; verify must say so."""
    server = redis_factory(["repl-diskless-sync-delay 1", "rdb-key-save-delay 20"])
    admin = redis.Redis(port=server.port)
    for i in range(2000):
        admin.set(f"seed:{i}", i)
    stop = threading.Event()
    writer = threading.Thread(target=churn, args=(server.port, stop))
    writer.start()
    dest = tmp_path / "dest"
    backup = subprocess.Popen(
        [
            REDKEEP,
            "backup",
            "run",
            "--url",
            f"redis://127.0.0.1:{server.port}",
            "--dest",
            str(dest),
            "--source",
            "churn",
            "--no-encrypt",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The backup has read INFO and asked for the snapshot: it is a replica now.
        wait_for(lambda: admin.info("replication")["connected_slaves"] >= 1, "PSYNC", backup)
        jobs = redis.Redis(port=server.port, db=10)
        jobs.lpush("jobs", "job-1")  # a job arrives before the fork (the 1 s sync delay)
        assert not admin.info("persistence")["rdb_bgsave_in_progress"]
        wait_for(lambda: admin.info("persistence")["rdb_bgsave_in_progress"], "fork", backup)
        assert jobs.rpop("jobs") == b"job-1"  # the worker takes it: the key is gone again
        out, err = backup.communicate(timeout=120)
    finally:
        stop.set()
        writer.join()
    assert backup.returncode == 0, err
    report = json.loads(out)
    manifest = json.loads((dest / "churn" / report["id"] / "manifest.json").read_text())
    assert "db10" not in manifest["keyspace"]["before"] | manifest["keyspace"]["after"]

    verify = run_redkeep("backup", "verify", report["id"], "--dest", dest, "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    (checks,) = json.loads(verify.stdout)["objects"].values()
    # Counted in the stored RDB by verify (the capture does not count): db10 holds the job.
    assert checks["drill"]["expected_from"] == "snapshot"
    assert checks["drill"]["keyspace"]["db10"]["keys"] == 1

    # What the disk holds: the restored RDB has the job and the seed keys.
    restored = tmp_path / "restored.rdb"
    restore = run_redkeep("backup", "restore", report["id"], "--dest", dest, "--to-file", restored)
    assert restore.returncode == 0, restore.stderr
    assert rdb_version(restored) == 10
    check = redis_factory([f"dir {restored.parent}", f"dbfilename {restored.name}"])
    assert redis.Redis(port=check.port, db=10).lrange("jobs", 0, -1) == [b"job-1"]
    assert redis.Redis(port=check.port).dbsize() == 2000
