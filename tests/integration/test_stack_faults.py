"""The local stack after a crash, with a wrong pid file, or with two commands at once.

Judged by the processes that actually run (read from /proc here, independently of redkeep's
own code) and by what the servers answer, not by redkeep's output alone.
"""

import fcntl
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from redkeep.bundle import Bundle
from tests.conftest import REDKEEP, run_redkeep
from tests.integration.conftest import client_as, start_bundle, stop_bundle
from tests.servers import free_port, process_alive, wait_for_exit


def bundle_processes(bundle: Bundle) -> dict[int, str]:
    """Every live process of the bundle: its helpers name the bundle on their command line,
    its redis-server works in the bundle's data directory."""
    root = str(bundle.root.resolve())
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cmdline and (root in cmdline or cwd == f"{root}/data"):
            found[int(entry.name)] = cmdline
    return found


def pids(bundle: Bundle) -> dict[str, int]:
    return {
        name: int((bundle.run_dir / f"{name}.pid").read_text())
        for name in ("redis", "exporter", "proxy")
    }


def status(bundle: Bundle) -> tuple[int, dict]:
    result = run_redkeep("status", bundle.root, "--json")
    return result.returncode, json.loads(result.stdout)


def exporter_says_redis_is_up(bundle: Bundle) -> bool:
    url = f"http://{bundle.settings.exporter.listen}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
        return "\nredis_up 1" in response.read().decode()


@pytest.fixture
def bundle(tmp_path, redis_binary):
    bundle = start_bundle(tmp_path / "stack")
    yield bundle
    stop_bundle(bundle)
    assert bundle_processes(bundle) == {}


@pytest.mark.parametrize("killed", ["redis", "exporter", "proxy"])
def test_up_brings_back_a_service_killed_with_sigkill(bundle, killed):
    before = pids(bundle)
    os.kill(before[killed], signal.SIGKILL)
    assert wait_for_exit(before[killed])

    code, report = status(bundle)
    assert code == (3 if killed == "redis" else 1)  # 3: Redis cannot be reached
    assert report["healthy"] is False
    assert report["services"][killed]["running"] is False
    assert all(report["services"][name]["running"] for name in before if name != killed)
    if killed != "redis":
        assert report["detail"].startswith(f"the {killed} is down")
        table = run_redkeep("status", bundle.root)
        assert (table.returncode, "DOWN: not running" in table.stdout) == (1, True)

    up = run_redkeep("up", bundle.root, "--detach")
    assert up.returncode == 0, up.stderr
    label = "redis-server" if killed == "redis" else f"the {killed}"
    assert f"started: {label}" in up.stdout
    after = pids(bundle)
    for name, pid in before.items():
        if name == killed:
            assert after[name] != pid and process_alive(after[name])
        else:
            assert after[name] == pid and process_alive(pid)  # kept, not restarted
    assert sorted(bundle_processes(bundle)) == sorted(after.values())
    assert client_as(bundle, "exporter").info("server")["process_id"] == after["redis"]
    assert exporter_says_redis_is_up(bundle)  # the kept exporter reaches the new Redis
    code, report = status(bundle)
    assert (code, report["healthy"]) == (0, True)


def test_down_after_redis_was_killed_stops_the_rest(bundle):
    before = pids(bundle)
    os.kill(before["redis"], signal.SIGKILL)
    assert wait_for_exit(before["redis"])
    down = run_redkeep("down", bundle.root)
    assert down.returncode == 0, down.stderr
    assert f"stopped the proxy pid {before['proxy']}" in down.stdout
    assert f"stopped the exporter pid {before['exporter']}" in down.stdout
    assert f"redis.pid: it names pid {before['redis']}, which has exited" in down.stdout
    assert "redis-server was not running" in down.stdout
    assert bundle_processes(bundle) == {}
    assert sorted(path.name for path in bundle.run_dir.glob("*.pid")) == []


def test_a_helper_that_runs_but_does_not_serve_is_restarted(bundle):
    before = pids(bundle)
    port = free_port()
    config = bundle.config_path
    old_listen = bundle.settings.exporter.listen
    config.write_text(config.read_text().replace(old_listen, f"127.0.0.1:{port}"))
    up = run_redkeep("up", bundle.root, "--detach")
    assert up.returncode == 0, up.stderr
    assert f"did not listen on port {port}" in up.stdout
    assert "restarted: the exporter" in up.stdout
    after = pids(bundle)
    assert wait_for_exit(before["exporter"])
    assert after["exporter"] != before["exporter"]
    assert (after["redis"], after["proxy"]) == (before["redis"], before["proxy"])
    assert exporter_says_redis_is_up(Bundle(bundle.root))  # on the new port


def test_two_ups_at_once_start_one_stack(tmp_path, redis_binary):
    root = tmp_path / "race"
    assert run_redkeep("init", root, "--tls-port", free_port()).returncode == 0
    bundle = Bundle(root)
    try:
        ups = [
            subprocess.Popen(
                [REDKEEP, "up", str(root), "--detach"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        results = [up.communicate(timeout=120) for up in ups]
        assert [up.returncode for up in ups] == [0, 0], results
        outputs = [out for out, _ in results]
        assert any("started: redis-server, the exporter, the proxy" in out for out in outputs)
        assert any("kept: redis-server, the exporter, the proxy" in out for out in outputs)
        running = pids(bundle)
        assert sorted(bundle_processes(bundle)) == sorted(running.values())
        assert client_as(bundle, "exporter").info("server")["process_id"] == running["redis"]

        # `down` racing another `up`: whichever goes second finds the state the first left.
        racing = [
            subprocess.Popen([REDKEEP, command, str(root), *extra], stdout=subprocess.PIPE)
            for command, *extra in (("down",), ("up", "--detach"))
        ]
        assert [process.wait(timeout=120) for process in racing] == [0, 0]
        for process in racing:
            process.stdout.close()
    finally:
        run_redkeep("down", root)
    assert bundle_processes(bundle) == {}


def test_up_waits_for_the_lock_and_says_who_holds_it(tmp_path, redis_binary):
    root = tmp_path / "locked"
    assert run_redkeep("init", root, "--tls-port", free_port()).returncode == 0
    with (root / "run" / "stack.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("`redkeep up` (pid 4242, since 03:00:00)\n")
        lock.flush()
        up = subprocess.Popen(
            [REDKEEP, "up", str(root), "--detach"], stdout=subprocess.PIPE, text=True
        )
        first_line = up.stdout.readline()
        assert first_line == "waiting for `redkeep up` (pid 4242, since 03:00:00) to finish ...\n"
        assert up.poll() is None and not (root / "run" / "redis.pid").exists()
    try:  # the lock is released with the file
        out, _ = up.communicate(timeout=120)
        assert up.returncode == 0
        assert "started: redis-server" in out
    finally:
        run_redkeep("down", root)


def test_a_pid_file_naming_an_unrelated_redis_server_is_never_signalled(
    tmp_path, redis_binary, redis_factory
):
    unrelated = redis_factory()  # someone else's redis-server, outside the bundle
    root = tmp_path / "stale"
    assert run_redkeep("init", root, "--tls-port", free_port()).returncode == 0
    bundle = Bundle(root)
    for name in ("redis", "exporter", "proxy"):
        (root / "run" / f"{name}.pid").write_text(f"{unrelated.pid}\n")
    try:
        up = run_redkeep("up", root, "--detach")
        assert up.returncode == 0, up.stderr
        note = f"names pid {unrelated.pid}, which is not this bundle's redis-server"
        assert note in up.stdout
        assert "started: redis-server, the exporter, the proxy" in up.stdout
        ours = pids(bundle)
        assert unrelated.pid not in ours.values()
        assert client_as(bundle, "exporter").info("server")["process_id"] == ours["redis"]

        # A pid file overwritten while the stack runs: `down` still finds the real process
        # and leaves the named one alone.
        (root / "run" / "redis.pid").write_text(f"{unrelated.pid}\n")
        code, report = status(bundle)
        assert (code, report["local_pid"]) == (0, ours["redis"])
    finally:
        down = run_redkeep("down", root)
    assert down.returncode == 0, down.stderr
    assert f"stopped redis-server pid {ours['redis']}" in down.stdout
    assert bundle_processes(bundle) == {}
    assert redis.Redis(port=unrelated.port).ping()
    (root / "run" / "redis.pid").write_text(f"{unrelated.pid}\n")
    again = run_redkeep("down", root)
    assert "nothing running in" in again.stdout and note in again.stdout
    assert process_alive(unrelated.pid)


def test_status_of_a_bundle_not_run_here_does_not_count_its_services(tmp_path, redis_binary):
    root = tmp_path / "elsewhere"
    assert run_redkeep("init", root, "--tls-port", free_port()).returncode == 0
    result = run_redkeep("status", root, "--json")
    report = json.loads(result.stdout)
    assert (result.returncode, report["run_here"]) == (3, False)  # nothing answers either
    assert all(not item["running"] for item in report["services"].values())
    table = run_redkeep("status", root)
    assert "not run on this machine" in table.stdout


def test_up_in_the_foreground_stops_everything_when_redis_dies(tmp_path, redis_binary):
    root = tmp_path / "fg"
    assert run_redkeep("init", root, "--tls-port", free_port()).returncode == 0
    bundle = Bundle(root)
    process = subprocess.Popen(
        [REDKEEP, "up", str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        for line in process.stdout:
            if line.startswith("running; press Ctrl-C"):
                break
        redis_pid = int((root / "run" / "redis.pid").read_text())
        os.kill(redis_pid, signal.SIGKILL)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 1
        assert "redis-server stopped unexpectedly" in err
    finally:
        if process.poll() is None:
            process.kill()
    assert bundle_processes(bundle) == {}


def test_a_health_check_answered_by_another_server_does_not_count(tmp_path, redis_binary):
    """Another redis-server on the bundle's port, with the bundle's own users and
    certificates: PING as the exporter works there, but it is not the server `up` started."""
    bundle = start_bundle(tmp_path / "taken")
    stop_bundle(bundle)
    other = tmp_path / "other"
    other.mkdir()
    squatter = subprocess.Popen(
        [redis_binary, str(bundle.run_dir / "redis.conf"), "--dir", str(other)]
        + ["--pidfile", str(other / "pid"), "--logfile", str(other / "log")],
        stdout=subprocess.DEVNULL,
    )
    try:
        while not client_is_served(bundle):
            assert squatter.poll() is None, (other / "log").read_text()
            time.sleep(0.05)
        up = run_redkeep("up", bundle.root, "--detach")
        assert up.returncode == 1
        assert "redis-server exited at start" in up.stderr
        assert "Address already in use" in up.stderr
        assert bundle_processes(bundle) == {}
        assert client_as(bundle, "exporter").info("server")["process_id"] == squatter.pid
    finally:
        squatter.terminate()
        squatter.wait(timeout=30)


def client_is_served(bundle: Bundle) -> bool:
    try:
        return client_as(bundle, "exporter").ping()
    except redis.ConnectionError:
        return False
