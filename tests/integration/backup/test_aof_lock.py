"""The AOF backup's lock and paused setting live in a private state dir, not in /tmp: nothing
another user plants is followed or trusted, and a later run with any TMPDIR repairs a setting a
killed run left paused."""

import os
import signal
import subprocess
import time

import pytest
import redis

from redkeep.backup.aoflock import AofLock
from tests.conftest import REDKEEP

SETTING = "auto-aof-rewrite-percentage"


@pytest.fixture
def aof_server(redis_factory):
    server = redis_factory(
        ["appendonly yes", "rdb-key-save-delay 500", "repl-diskless-sync-delay 0"]
    )
    client = redis.Redis(port=server.port)
    client.config_set(SETTING, 77)
    pipe = client.pipeline(transaction=False)
    for i in range(2000):  # a rewrite then takes 1 s (rdb-key-save-delay): time to see the pause
        pipe.set(f"k{i}", "v")
    pipe.execute()
    return server


def setting(server) -> str:
    return redis.Redis(port=server.port).config_get(SETTING)[SETTING]


def run_id(server) -> str:
    return redis.Redis(port=server.port).info("server")["run_id"]


def backup(server, dest, kind="aof", env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [
            REDKEEP,
            "backup",
            "run",
            "--type",
            kind,
            "--url",
            f"redis://127.0.0.1:{server.port}",
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


def test_the_lock_is_private_and_a_killed_run_is_repaired_whatever_the_tmpdir(aof_server, tmp_path):
    state = tmp_path / "state" / "redkeep"  # XDG_STATE_HOME (backup conftest)
    client = redis.Redis(port=aof_server.port)
    client.bgrewriteaof()  # slow (rdb-key-save-delay): the backup waits for it, paused
    first_tmp = tmp_path / "tmp1"
    first_tmp.mkdir()
    process = backup(aof_server, tmp_path / "dest", env={"TMPDIR": str(first_tmp)})
    deadline = time.monotonic() + 20
    while setting(aof_server) != "0":
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    lock = state / f"aof-{run_id(aof_server)}.lock"
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    assert oct(lock.stat().st_mode & 0o777) == "0o600" and lock.read_text() == "77"
    assert list(first_tmp.iterdir()) == []  # nothing of the lock in the temp dir
    process.send_signal(signal.SIGKILL)  # nothing can put the setting back now
    process.communicate()
    assert setting(aof_server) == "0"

    warned = backup(aof_server, tmp_path / "dest", kind="rdb")  # cannot repair: says so
    out, err = warned.communicate(timeout=60)
    assert warned.returncode == 0, err
    assert f"a killed AOF backup left {SETTING} paused (0)" in err and "puts back 77" in err

    other_tmp = tmp_path / "tmp2"
    other_tmp.mkdir()
    again = backup(aof_server, tmp_path / "dest", env={"TMPDIR": str(other_tmp)})
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert setting(aof_server) == "77"
    assert lock.read_text() == ""


@pytest.mark.parametrize("plant", ["symlink", "other-owner", "not-a-number", "open-mode"])
def test_a_planted_lock_file_is_refused_and_changes_nothing(aof_server, tmp_path, plant):
    state = tmp_path / "state" / "redkeep"
    state.mkdir(parents=True, mode=0o700)
    lock = state / f"aof-{run_id(aof_server)}.lock"
    canary = tmp_path / "canary"
    canary.write_text("root's important file")
    canary.chmod(0o600)
    if plant == "symlink":
        lock.symlink_to(canary)
    else:
        lock.write_text("0" if plant != "not-a-number" else "root's secret")
        lock.chmod(0o644 if plant == "open-mode" else 0o600)
        if plant == "other-owner":
            os.chown(lock, 65534, 65534)  # nobody
    process = backup(aof_server, tmp_path / "dest")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    (line,) = err.strip().splitlines()
    assert str(lock) in line or str(state) in line
    assert "secret" not in line and "important" not in line
    assert canary.read_text() == "root's important file"
    assert setting(aof_server) == "77"  # never paused, never set to a planted value


def test_a_second_both_backup_fails_before_its_rdb_capture(aof_server, tmp_path):
    state = tmp_path / "state" / "redkeep"
    held = AofLock(state, run_id(aof_server))  # an AOF backup of this server is running
    try:
        syncs = redis.Redis(port=aof_server.port).info("stats")["sync_full"]
        process = backup(aof_server, tmp_path / "dest", kind="both")
        out, err = process.communicate(timeout=60)
        assert process.returncode == 1
        assert "another AOF backup of this server is running" in err
        assert redis.Redis(port=aof_server.port).info("stats")["sync_full"] == syncs  # no RDB
    finally:
        held.close()


def test_an_aof_run_warns_when_automatic_rewrites_are_off(aof_server, tmp_path):
    redis.Redis(port=aof_server.port).config_set(SETTING, 0)
    process = backup(aof_server, tmp_path / "dest")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert f"redkeep: warning: {SETTING} is 0 on" in err
    assert setting(aof_server) == "0"  # the user's own value is kept
