"""A sentinel deployment's `up` in the foreground: a stale pid file is cleared, a node that
dies is said (it is what failover is for, not a reason to stop), and Ctrl-C stops every
node and Sentinel. The smallest layout: a primary, one replica, one Sentinel."""

import os
import signal
import subprocess
import time
from pathlib import Path

from redkeep.bundle import Bundle
from redkeep.config.deployment import SENTINEL_PORT_OFFSET
from redkeep.stack import processes
from redkeep.stack.processes import node_service
from tests.conftest import REDKEEP, run_redkeep
from tests.servers import free_port_span, wait_for_exit

NAMES = ("redis-0", "redis-1", "sentinel-0")
DEADLINE = 60  # a bound for a loaded machine, not a measure


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"not within {DEADLINE}s: {what}"
        time.sleep(0.1)


def test_foreground_up_says_a_lost_node_and_stops_everything_on_ctrl_c(tmp_path, redis_binary):
    base = free_port_span([0, 1, SENTINEL_PORT_OFFSET])
    root = tmp_path / "fg"
    init = run_redkeep(
        "init", root, "--topology", "sentinel", "--replicas", "1", "--sentinels", "1",
        "--tls-port", base,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    bundle = Bundle(root)
    bundle.run_dir.mkdir(exist_ok=True)
    (bundle.run_dir / "redis-1.pid").write_text(f"{os.getpid()}\n")  # not the bundle's

    errors, output = tmp_path / "up.err", tmp_path / "up.out"
    with errors.open("w") as stderr, output.open("w") as stdout:
        up = subprocess.Popen([REDKEEP, "up", str(root)], stdout=stdout, stderr=stderr)

    def up_says(text: str, where: Path) -> bool:
        assert up.poll() is None, f"up exited {up.returncode}: {errors.read_text()}"
        return text in where.read_text()

    try:
        # Not only healthy: up has started its helpers too, and is watching its nodes.
        wait_for(lambda: up_says("press Ctrl-C", output), "up to say it is running")
        assert run_redkeep("health", "--dir", root).returncode == 0
        pids = {name: int((bundle.run_dir / f"{name}.pid").read_text()) for name in NAMES}
        assert pids["redis-1"] != os.getpid()  # the stale pid file was replaced
        # Logs may quote what a server said: every run file is its owner's only.
        shared = [path.name for path in bundle.run_dir.iterdir() if path.stat().st_mode & 0o077]
        assert shared in ([], ["metrics"]), shared

        os.kill(pids["redis-1"], signal.SIGKILL)
        wait_for(lambda: up_says("redis-1 pid", errors), "up to say redis-1 stopped")
        assert up.poll() is None  # still serving: one lost replica is no reason to stop
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=DEADLINE)
    out = output.read_text()
    assert up.returncode == 0, errors.read_text()
    assert "removed stale" in out and f"names pid {os.getpid()}" in out
    assert out.rstrip().endswith("stopped")
    assert f"redis-1 pid {pids['redis-1']} stopped" in errors.read_text()
    for name in NAMES:
        assert wait_for_exit(pids[name])
        assert list(processes.find_processes(node_service(name), root)) == []
