"""The drill server holds the decrypted data: it dies with its command, even one killed with
SIGKILL, and the directory such a command leaves is removed by the next drill."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from tests.conftest import REDKEEP, run_redkeep
from tests.servers import process_alive, wait_for_exit


def drill_servers(pid: int) -> list[int]:
    """Children of `pid` that are the drill loading the backup (not the format probe)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"/rdb\0" in cmdline:  # --dir DRILL/rdb: the server loading the backup
                found.append(int(child))
    return found


def test_a_killed_verify_takes_its_drill_server_along(redis_factory, tmp_path):
    server = redis_factory(["repl-diskless-sync-delay 0"])
    client = redis.Redis(port=server.port)
    # Enough data that the drill server lives long enough to be seen (100,000 small keys
    # were verified before the poll saw it on a loaded machine).
    for batch in range(4):
        pipe = client.pipeline(transaction=False)
        for i in range(batch * 100_000, (batch + 1) * 100_000):
            pipe.set(f"key:{i}", "x" * 200)
        pipe.execute()
    dest = tmp_path / "dest"
    url = f"redis://127.0.0.1:{server.port}"
    run = run_redkeep("backup", "run", "--url", url, "--dest", dest, "--source", "s", "--json")
    assert run.returncode == 0, run.stderr
    backup_id = json.loads(run.stdout)["id"]
    drills = tmp_path / "tmp"  # the drills' TMPDIR
    drills.mkdir()
    env = {**os.environ, "TMPDIR": str(drills)}
    verify = subprocess.Popen(
        [REDKEEP, "backup", "verify", backup_id, "--dest", str(dest)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 60
    drill = []
    while not drill:
        assert verify.poll() is None and time.monotonic() < deadline, "no drill server seen"
        drill = drill_servers(verify.pid)
    verify.send_signal(signal.SIGKILL)
    verify.wait()
    (left,) = list(drills.iterdir())
    assert left.name.startswith(f"redkeep-drill-{verify.pid}-")
    assert oct(left.stat().st_mode & 0o777) == "0o700"
    assert (left / "rdb" / "dump.rdb").exists()  # the decrypted data, until reaped
    assert wait_for_exit(drill[0]), "the drill server outlived its command"
    assert not process_alive(drill[0])
    assert left.exists()  # nobody could remove it: the next drill does
    again = run_redkeep("backup", "verify", backup_id, "--dest", dest, env={"TMPDIR": str(drills)})
    assert again.returncode == 0, again.stderr
    assert list(drills.iterdir()) == []
