"""`redkeep status`, `up` and `down` when a service is frozen, scheduled backups fail, the
schedule is switched off, or Redis cannot persist (MISCONF).

Judged by what the processes do (/proc, what they answer) and what Redis and the disk hold.
"""

import datetime as dt
import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from redkeep.actions.status import bundle_status
from redkeep.bundle import Bundle
from tests.conftest import run_redkeep
from tests.integration.conftest import client_as, start_bundle, stop_bundle
from tests.integration.test_stack_faults import bundle_processes, pids
from tests.servers import free_port, process_alive, wait_for_exit


def status(bundle: Bundle) -> tuple[int, dict]:
    result = run_redkeep("status", bundle.root, "--json")
    return result.returncode, json.loads(result.stdout)


def configure(root: Path, section: str, **values) -> None:
    """Set keys of one section of the bundle's redkeep.yaml."""
    path = root / "redkeep.yaml"
    data = yaml.safe_load(path.read_text())
    data[section] = {**data.get(section, {}), **values}
    path.write_text(yaml.safe_dump(data))


def init_bundle(root: Path) -> None:
    assert run_redkeep("init", root, "--tls-port", free_port()).returncode == 0


def wait_until(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def exporter_answers(bundle: Bundle) -> bool:
    url = f"http://{bundle.settings.exporter.listen}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        return "\nredis_up 1" in response.read().decode()


@pytest.fixture
def bundle(tmp_path, redis_binary):
    bundle = start_bundle(tmp_path / "stack")
    yield bundle
    stop_bundle(bundle)
    assert bundle_processes(bundle) == {}


def test_a_frozen_exporter_or_proxy_is_unhealthy_and_up_replaces_it(bundle):
    """SIGSTOP: the kernel still completes TCP connects to its port, but nothing answers."""
    running = pids(bundle)
    for name in ("exporter", "proxy"):
        os.kill(running[name], signal.SIGSTOP)
        try:
            code, report = status(bundle)
        finally:
            os.kill(running[name], signal.SIGCONT)
        item = report["services"][name]
        assert (code, report["healthy"]) == (1, False), report["detail"]
        assert (item["listening"], item["answering"], item["up"]) == (True, False, False)
        assert f"kill -CONT {running[name]}" in report["detail"]
    code, report = status(bundle)
    assert (code, report["healthy"]) == (0, True), report["detail"]
    assert all(report["services"][name]["answering"] for name in ("exporter", "proxy"))

    # Without a metrics endpoint the proxy is asked for a PING through it instead.
    configure(bundle.root, "proxy", metrics_listen=None)
    code, report = status(bundle)
    assert (code, report["services"]["proxy"]["answering"]) == (0, True), report["detail"]
    assert report["services"]["proxy"]["probe"].startswith("PING answered")
    os.kill(running["proxy"], signal.SIGSTOP)
    try:
        code, report = status(bundle)
    finally:
        os.kill(running["proxy"], signal.SIGCONT)
    assert (code, report["services"]["proxy"]["answering"]) == (1, False)
    assert "PING" in report["services"]["proxy"]["probe"]

    # `up --detach` replaces a helper that runs and listens but does not answer.
    os.kill(running["exporter"], signal.SIGSTOP)
    up = run_redkeep("up", bundle.root, "--detach")
    assert up.returncode == 0, up.stderr
    assert "restarted: the exporter" in up.stdout
    assert wait_for_exit(running["exporter"])
    after = pids(bundle)
    assert after["exporter"] != running["exporter"] and process_alive(after["exporter"])
    assert (after["redis"], after["proxy"]) == (running["redis"], running["proxy"])
    assert exporter_answers(bundle)


def test_failing_scheduled_backups_make_the_bundle_unhealthy(tmp_path, redis_binary):
    root = tmp_path / "sched"
    init_bundle(root)
    (root / "blocked").write_text("a file where the destination's directory should be\n")
    configure(root, "backup", dest="blocked/backups", interval_minutes=1)
    bundle = start_bundle(root)
    record = bundle.run_dir / "backup-schedule.json"
    try:
        wait_until(record.exists, "the schedule's first run did not finish")  # runs at once
        assert (root / "blocked").is_file()  # nothing could be stored
        code, report = status(bundle)
        schedule = report["services"]["backup"]
        assert (code, report["healthy"], schedule["up"]) == (1, False, True)
        assert schedule["last_result"] == "failure"
        assert "Not a directory" in schedule["last_error"]
        assert report["detail"].startswith("the last scheduled backup failed")

        # A one-off backup elsewhere succeeds; it does not hide the failing schedule.
        elsewhere = tmp_path / "elsewhere"
        one_off = run_redkeep("backup", "run", "--dir", root, "--dest", elsewhere)
        assert one_off.returncode == 0, one_off.stderr
        assert list(elsewhere.rglob("manifest.json"))
        code, report = status(bundle)
        assert (code, report["services"]["backup"]["last_result"]) == (1, "failure")

        # Destination fixed, schedule restarted: its first run succeeds, and is on disk.
        (root / "blocked").unlink()
        schedule_pid = pids_of_schedule(bundle)
        os.kill(schedule_pid, signal.SIGTERM)
        assert wait_for_exit(schedule_pid)
        up = run_redkeep("up", root, "--detach")
        assert "started: the backup schedule" in up.stdout, up.stdout + up.stderr
        wait_until(lambda: json.loads(record.read_text())["result"] == "success", "no success")
        assert list((root / "blocked" / "backups").rglob("manifest.json"))
        code, report = status(bundle)
        assert (code, report["healthy"]) == (0, True), report["detail"]
        finished = dt.datetime.fromisoformat(report["services"]["backup"]["last_finished"])

        # Two intervals later with no new run (a hung or stopped schedule): overdue.
        target = bundle.target("exporter")
        later = bundle_status(bundle, target, finished + dt.timedelta(seconds=121)).to_json()
        assert later["services"]["backup"]["overdue"] is True
        assert later["healthy"] is False
        assert "scheduled backups are overdue (every 1 min" in later["detail"]
    finally:
        stop_bundle(bundle)
    assert bundle_processes(bundle) == {}


def pids_of_schedule(bundle: Bundle) -> int:
    return int((bundle.run_dir / "backup.pid").read_text())


def test_up_stops_or_restarts_a_schedule_redkeep_yaml_no_longer_asks_for(tmp_path, redis_binary):
    root = tmp_path / "sched"
    init_bundle(root)
    configure(root, "backup", interval_minutes=1)
    bundle = start_bundle(root)
    try:
        first = pids_of_schedule(bundle)
        configure(root, "backup", interval_minutes=2)
        up = run_redkeep("up", root, "--detach")
        assert "restarted: the backup schedule" in up.stdout, up.stdout + up.stderr
        assert wait_for_exit(first)
        second = pids_of_schedule(bundle)
        argv = Path(f"/proc/{second}/cmdline").read_bytes().split(b"\0")
        assert argv[argv.index(b"--every") + 1] == b"2"

        configure(root, "backup", interval_minutes=0)
        up = run_redkeep("up", root, "--detach")
        assert up.returncode == 0, up.stderr
        note = f"stopped the backup schedule pid {second}: backup.interval_minutes is 0"
        assert note in up.stdout
        assert wait_for_exit(second)
        assert not any("--every" in args for args in bundle_processes(bundle).values())
    finally:
        stop_bundle(bundle)
    assert bundle_processes(bundle) == {}


def test_a_server_that_cannot_persist_is_named_and_down_says_what_to_do(bundle):
    """MISCONF: Redis refuses writes and even PING when a save fails, and will not shut down
    when its final save fails. A directory where dump.rdb goes makes every save fail."""
    admin = client_as(bundle, "admin")
    redis_pid = pids(bundle)["redis"]
    blocker = bundle.data_dir / "dump.rdb"
    blocker.unlink(missing_ok=True)
    (blocker / "in-the-way").mkdir(parents=True)
    try:
        admin.bgsave()
        wait_until(
            lambda: admin.info("persistence")["rdb_last_bgsave_status"] == "err",
            "the background save did not fail",
        )
        code, report = status(bundle)
        assert code == 1  # reached: not 3, "cannot connect"
        assert report["detail"].startswith("MISCONF: ")
        assert "Is a directory" in report["detail"] and str(bundle.data_dir) in report["detail"]
        health = run_redkeep("health", "--dir", bundle.root)
        assert health.returncode == 1 and "MISCONF" in health.stderr

        down = run_redkeep("down", bundle.root)
        assert down.returncode == 1
        assert f"redis-server pid {redis_pid} refuses to stop: its final save failed" in down.stderr
        assert f"redkeep down --force {bundle.root}" in down.stderr
        assert admin.info("server")["process_id"] == redis_pid  # still serving

        forced = run_redkeep("down", "--force", bundle.root)
        assert forced.returncode == 0, forced.stderr
        assert "stopped without saving (--force)" in forced.stdout
        assert wait_for_exit(redis_pid)
    finally:
        for path in (blocker / "in-the-way", blocker):
            if path.is_dir():
                path.rmdir()
