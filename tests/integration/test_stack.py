"""`redkeep init`, `up`, `down`, `status`, `health` as a user runs them."""

import json
import signal
import socket
import subprocess
import threading
import time

import pytest

from redkeep.bundle import Bundle
from tests.conftest import REDKEEP, run_redkeep
from tests.integration.conftest import client_as, start_bundle, stop_bundle
from tests.servers import free_port, process_alive, wait_for_exit


@pytest.fixture
def running_bundle_for_status(tmp_path, redis_binary):
    bundle = start_bundle(tmp_path / "status")
    yield bundle
    stop_bundle(bundle)


def test_up_detach_status_health_down(tmp_path, redis_binary):
    bundle = start_bundle(tmp_path / "stack")
    try:
        pid = int((bundle.run_dir / "redis.pid").read_text())
        status = run_redkeep("status", "--json", bundle.root)
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["healthy"] is True
        assert report["local_pid"] == pid
        assert report["server"]["maxmemory_policy"] == "allkeys-lru"
        assert report["certificates"]["server"]["days_left"] >= 364
        assert report["last_backup"].startswith("none yet")

        services = report["services"]
        assert set(services) == {"redis", "exporter", "proxy"}  # no backup schedule set
        for name in services:
            assert services[name]["pid"] == int((bundle.run_dir / f"{name}.pid").read_text())
            assert process_alive(services[name]["pid"])
        assert services["exporter"]["listening"] and services["proxy"]["listening"]

        health = run_redkeep("health", "--dir", bundle.root)
        assert health.returncode == 0, health.stderr
        assert health.stdout.startswith("healthy: PONG from rediss://exporter:****@localhost:")

        again = run_redkeep("up", bundle.root, "--detach")  # keeps what runs: starts nothing
        assert again.returncode == 0, again.stderr
        assert "kept: redis-server, the exporter, the proxy" in again.stdout
        assert "started" not in again.stdout
        for name in services:
            assert int((bundle.run_dir / f"{name}.pid").read_text()) == services[name]["pid"]

        foreground = run_redkeep("up", bundle.root)  # would stop on Ctrl-C what it did not start
        assert foreground.returncode == 1
        assert "already runs in the background (redis-server pid" in foreground.stderr
    finally:
        stop_bundle(bundle)
    assert wait_for_exit(pid)
    health = run_redkeep("health", "--dir", bundle.root)
    assert health.returncode == 1
    assert "connection refused" in health.stderr
    assert run_redkeep("status", bundle.root).returncode == 3  # cannot connect
    down = run_redkeep("down", bundle.root)
    assert (down.returncode, down.stdout.strip()) == (0, f"nothing running in {bundle.root}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_up_in_foreground_stops_redis_on_ctrl_c_term_and_hangup(tmp_path, redis_binary, signum):
    root = tmp_path / "fg"
    assert run_redkeep("init", root, "--tls-port", free_port()).returncode == 0
    process = subprocess.Popen(
        [REDKEEP, "up", str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    pidfile = root / "run" / "redis.pid"
    deadline = time.monotonic() + 30
    # Up means: Redis healthy and the exporter started (both pid files, `up` still running).
    while not (
        pidfile.exists()
        and (root / "run" / "exporter.pid").exists()
        and run_redkeep("health", "--dir", root).returncode == 0
    ):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "redis did not come up"
        time.sleep(0.1)
    time.sleep(0.5)  # let `up` print its table and settle into waiting
    redis_pid = int(pidfile.read_text())
    exporter_pid = int((root / "run" / "exporter.pid").read_text())
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "running; press Ctrl-C to stop" in out
    assert out.rstrip().endswith("stopped")
    assert wait_for_exit(redis_pid)
    assert wait_for_exit(exporter_pid)
    log = (root / "run" / "redis.log").read_text()
    assert "ready to exit, bye bye" in log.lower()


def test_status_shows_why_info_failed(running_bundle_for_status):
    bundle = running_bundle_for_status
    port = bundle.settings.redis.tls_port
    # The app user may PING but not INFO (INFO is in @dangerous).
    result = run_redkeep("status", bundle.root, "--url", f"rediss://app@localhost:{port}")
    assert result.returncode == 0, result.stderr
    assert "INFO failed: this user has no permissions" in result.stdout


def test_up_without_directory_creates_redkeep_stack_here(tmp_path, redis_binary):
    env = {
        "REDKEEP_REDIS__TLS_PORT": str(free_port()),
        "REDKEEP_EXPORTER__LISTEN": f"127.0.0.1:{free_port()}",
        "REDKEEP_PROXY__LISTEN": f"127.0.0.1:{free_port()}",
        "REDKEEP_PROXY__METRICS_LISTEN": f"127.0.0.1:{free_port()}",
    }
    result = run_redkeep("up", "--detach", cwd=tmp_path, env=env)
    bundle = Bundle(tmp_path / "redkeep-stack")
    try:
        assert result.returncode == 0, result.stderr
        assert bundle.exists()
        assert "generated REDIS_ADMIN_PASSWORD" in result.stdout
        assert "rediss://app:****@localhost" in result.stdout
    finally:
        run_redkeep("down", cwd=bundle.root, env=env)


def test_bundle_in_a_path_with_spaces(tmp_path, redis_binary):
    bundle = start_bundle(tmp_path / "my redis stack")
    try:
        assert run_redkeep("health", "--dir", bundle.root).returncode == 0
    finally:
        stop_bundle(bundle)


def test_port_in_use_is_reported(tmp_path, redis_binary):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        root = tmp_path / "busy"
        assert run_redkeep("init", root, "--tls-port", port).returncode == 0
        result = run_redkeep("up", root, "--detach")
    assert result.returncode == 1
    assert "redis-server exited at start" in result.stderr
    assert "Address already in use" in result.stderr
    assert not (root / "run" / "redis.pid").exists() or not process_alive(
        int((root / "run" / "redis.pid").read_text())
    )


def test_init_refuses_to_overwrite_and_force_keeps_secrets(tmp_path, redis_binary):
    root = tmp_path / "b"
    assert run_redkeep("init", root).returncode == 0
    secrets_before = Bundle(root).secrets()
    ca_before = (root / "tls/ca.crt").read_bytes()

    refused = run_redkeep("init", root)
    assert refused.returncode == 2
    assert "pass --force" in refused.stderr

    env_path = root / ".env"
    env_path.write_text(env_path.read_text() + "MY_OWN=kept\n")
    forced = run_redkeep("init", root, "--force", "--tls-port", "6390")
    assert forced.returncode == 0, forced.stderr
    assert "kept existing REDIS_ADMIN_PASSWORD" in forced.stdout
    secrets_after = Bundle(root).secrets()
    assert secrets_after["MY_OWN"] == "kept"
    for key, value in secrets_before.items():
        if key != "REDIS_URL":
            assert secrets_after[key] == value
    assert secrets_after["REDIS_URL"].endswith(":6390")
    assert (root / "tls/ca.crt").read_bytes() == ca_before
    assert Bundle(root).settings.redis.tls_port == 6390
    assert "tls-port 6390" in (root / "redis/redis.conf").read_text()


def test_init_regenerates_only_a_missing_secret(tmp_path, redis_binary):
    root = tmp_path / "b"
    assert run_redkeep("init", root).returncode == 0
    before = Bundle(root).secrets()
    lines = [
        line
        for line in (root / ".env").read_text().splitlines()
        if not line.startswith("REDIS_BACKUP_PASSWORD=")
    ]
    (root / ".env").write_text("\n".join(lines) + "\n")
    result = run_redkeep("init", root, "--force")
    assert result.returncode == 0, result.stderr
    assert "generated REDIS_BACKUP_PASSWORD" in result.stdout
    after = Bundle(root).secrets()
    assert after["REDIS_ADMIN_PASSWORD"] == before["REDIS_ADMIN_PASSWORD"]
    assert after["REDIS_BACKUP_PASSWORD"] != before["REDIS_BACKUP_PASSWORD"]


def test_no_secret_in_process_list_logs_or_output(tmp_path, redis_binary):
    root = tmp_path / "s"
    outputs = [run_redkeep("init", root, "--tls-port", free_port())]
    bundle = Bundle(root)
    old_secrets = set(bundle.secrets().values())
    process_lists: list[str] = []
    stop_sampling = threading.Event()

    def sample_ps():
        while not stop_sampling.is_set():
            ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False)
            process_lists.append(ps.stdout)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample_ps)
    sampler.start()
    try:
        outputs.append(run_redkeep("up", root, "--detach"))
        for args in (
            ("status", root),
            ("health", "--dir", root),
            ("users", "list", "--dir", root),
            ("config", "show", "--dir", root),
            ("certs", "show", "--dir", root),
            ("users", "rotate", "app", "--dir", root),
            ("users", "finish-rotation", "app", "--dir", root),
            ("certs", "rotate", "--dir", root),
        ):
            outputs.append(run_redkeep(*args))
            assert outputs[-1].returncode == 0, (args, outputs[-1].stderr)
        wrong = f"rediss://app:{bundle.password('app')}x@localhost:{bundle.settings.redis.tls_port}"
        outputs.append(run_redkeep("health", "--url", wrong, "--dir", root))
        assert outputs[-1].returncode == 1
    finally:
        stop_sampling.set()
        sampler.join()
        run_redkeep("down", root)
    secrets = old_secrets | set(bundle.secrets().values())
    secrets = {value for value in secrets if len(value) == 64}  # the passwords
    keys = [path.read_text().strip().splitlines()[1] for path in root.glob("tls/*.key")]
    texts = process_lists + [(root / "run" / "redis.log").read_text()]
    texts += [result.stdout + result.stderr for result in outputs]
    assert len(process_lists) > 3 and len(secrets) >= 5
    for text in texts:
        for secret in [*secrets, *keys]:
            assert secret not in text
    assert "REDIS_ADMIN_PASSWORD: '********'" in outputs[5].stdout


@pytest.mark.parametrize("mode", ["optional", "no"])
def test_tls_auth_clients_is_configurable(tmp_path, redis_binary, mode):
    env = {"REDKEEP_TLS__AUTH_CLIENTS": mode}
    root = tmp_path / mode
    assert run_redkeep("init", root, "--tls-port", free_port(), env=env).returncode == 0
    assert f"tls-auth-clients {mode}" in (root / "redis/redis.conf").read_text()
    assert Bundle(root).settings.tls.auth_clients == mode


def test_without_required_client_certificates_a_ca_and_password_suffice(tmp_path, redis_binary):
    root = tmp_path / "optional"
    env = {"REDKEEP_TLS__AUTH_CLIENTS": "optional"}
    assert run_redkeep("init", root, "--tls-port", free_port(), env=env).returncode == 0
    bundle = start_bundle(root)
    try:
        assert client_as(bundle, "app", client_cert=False).ping()
    finally:
        stop_bundle(bundle)
