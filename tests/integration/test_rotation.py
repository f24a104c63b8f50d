"""Zero-downtime rotation of passwords and of the served certificate, on a live server."""

import json
import os
import signal
import subprocess
import threading
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redkeep.pki.inspect import load_certificate
from redkeep.redis.handshake import handshake
from redkeep.render.acl import password_hash
from tests.conftest import run_redkeep
from tests.integration.conftest import client_as


class SteadyClient:
    """An application connection that keeps working through a rotation; records any error."""

    def __init__(self, bundle, user: str, client: redis.Redis | None = None) -> None:
        self.client = client or client_as(bundle, user, single_connection_client=True)
        self.command = ("INCR", "steady") if user == "app" else ("PING",)
        self.errors: list[str] = []
        self.calls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.client.execute_command(*self.command)
                self.calls += 1
            except redis.RedisError as error:
                self.errors.append(str(error))
            time.sleep(0.005)

    def __enter__(self):
        self.client.ping()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def logs_in(bundle, user: str, password: str) -> bool:
    try:
        return client_as(bundle, user, password=password).ping()
    except redis.AuthenticationError:
        return False


@pytest.mark.parametrize("user", ["app", "exporter"])
def test_password_rotation_keeps_both_then_only_the_new(running_bundle, user):
    old = running_bundle.password(user)
    with SteadyClient(running_bundle, user) as steady:
        started = run_redkeep("users", "rotate", user, "--dir", running_bundle.root)
        assert started.returncode == 0, started.stderr
        new = running_bundle.password(user)
        assert new != old
        assert logs_in(running_bundle, user, old)
        assert logs_in(running_bundle, user, new)

        finished = run_redkeep("users", "finish-rotation", user, "--dir", running_bundle.root)
        assert finished.returncode == 0, finished.stderr
        assert not logs_in(running_bundle, user, old)
        assert logs_in(running_bundle, user, new)
    assert steady.calls > 0
    assert steady.errors == []
    acl_file = (running_bundle.root / "redis/users.acl").read_text()
    assert old not in acl_file and new not in acl_file  # hashes only


def test_rotating_the_app_updates_the_application_url(running_bundle):
    assert run_redkeep("users", "rotate", "app", "--dir", running_bundle.root).returncode == 0
    secrets = running_bundle.secrets()
    assert secrets["REDIS_PASSWORD"] == secrets["REDIS_APP_PASSWORD"]
    assert f"app:{secrets['REDIS_APP_PASSWORD']}@" in secrets["REDIS_URL"]
    assert redis.Redis.from_url(
        secrets["REDIS_URL"],
        ssl_ca_certs=str(running_bundle.tls.ca_cert),
        ssl_certfile=str(running_bundle.tls.client_cert()),
        ssl_keyfile=str(running_bundle.tls.client_key()),
    ).ping()
    second = run_redkeep("users", "rotate", "app", "--dir", running_bundle.root)
    assert second.returncode == 1
    assert "a rotation is in progress" in second.stderr
    assert (
        run_redkeep("users", "finish-rotation", "app", "--dir", running_bundle.root).returncode == 0
    )
    again = run_redkeep("users", "finish-rotation", "app", "--dir", running_bundle.root)
    assert (again.returncode, again.stdout.splitlines()[0]) == (
        0,
        "'app' has a single password already; nothing to finish",
    )

    # A finish killed after removing the old password live but before ACL SAVE: the file still
    # holds it, and a restart would bring it back. Finishing again saves what the server holds.
    admin = client_as(running_bundle, "admin")
    leftover = "a-password-a-killed-finish-left-in-the-file"
    admin.execute_command("ACL", "SETUSER", "app", f">{leftover}")
    admin.execute_command("ACL", "SAVE")
    admin.execute_command("ACL", "SETUSER", "app", f"<{leftover}")
    assert password_hash(leftover) in running_bundle.acl_path.read_text()
    repaired = run_redkeep("users", "finish-rotation", "app", "--dir", running_bundle.root)
    assert repaired.returncode == 0, repaired.stderr
    assert password_hash(leftover) not in running_bundle.acl_path.read_text()
    assert password_hash(running_bundle.password("app")) in running_bundle.acl_path.read_text()
    admin.close()


def test_rotation_refuses_a_user_redkeep_does_not_manage(running_bundle):
    result = run_redkeep("users", "rotate", "default", "--dir", running_bundle.root)
    assert result.returncode == 2
    assert "'default' is not one of them" in result.stderr


def test_users_list_counts_passwords_and_never_shows_hashes(running_bundle):
    result = run_redkeep("users", "list", "--json", "--dir", running_bundle.root)
    assert result.returncode == 0, result.stderr
    users = {user["name"]: user for user in json.loads(result.stdout)}
    assert set(users) == {"admin", "app", "backup", "default", "exporter"}
    assert users["default"]["enabled"] is False
    assert all(
        users[name]["password_count"] == 1 for name in ("admin", "app", "backup", "exporter")
    )
    table = run_redkeep("users", "list", "--dir", running_bundle.root).stdout
    for role in ("admin", "app", "exporter", "backup"):
        digest = password_hash(running_bundle.password(role))
        assert digest not in result.stdout and digest not in table


def proxy_client(bundle) -> redis.Redis:
    """The app's connection through the bundle's proxy (TLS with the client certificate)."""
    tls = bundle.tls
    return redis.Redis(
        host="localhost",
        port=int(bundle.settings.proxy.listen.rpartition(":")[2]),
        username="app",
        password=bundle.password("app"),
        ssl=True,
        ssl_ca_certs=str(tls.ca_cert),
        ssl_certfile=str(tls.client_cert()),
        ssl_keyfile=str(tls.client_key()),
        socket_timeout=5,
        retry=Retry(NoBackoff(), 0),
        single_connection_client=True,
    )


def served_serials(bundle) -> dict[str, int]:
    """The serial each TLS port of the bundle presents in a fresh handshake."""
    tls = bundle.tls
    ports = {
        "redis": bundle.settings.redis.tls_port,
        "proxy": int(bundle.settings.proxy.listen.rpartition(":")[2]),
    }
    serials = {}
    for name, port in ports.items():
        probe = handshake(
            "localhost", port, ca=tls.ca_cert, cert=tls.client_cert(), key=tls.client_key()
        )
        assert probe.ok, (name, probe.error)
        serials[name] = probe.certificate.serial_number
    return serials


def test_certificate_rotation_reaches_redis_and_the_proxy_without_restart(running_bundle):
    bundle = running_bundle
    pids_before = {
        name: (bundle.run_dir / f"{name}.pid").read_text() for name in ("redis", "proxy")
    }
    before = served_serials(bundle)
    assert before["redis"] == before["proxy"]
    with (
        SteadyClient(bundle, "app") as direct,
        SteadyClient(bundle, "app", client=proxy_client(bundle)) as proxied,
    ):
        result = run_redkeep("certs", "rotate", "--dir", bundle.root, "--json")
        assert result.returncode == 0, result.stderr
        calls_at_rotation = (direct.calls, proxied.calls)
        wait_for_more_calls([direct, proxied], calls_at_rotation)
    on_disk = load_certificate(bundle.tls.server_cert).serial_number
    assert on_disk != before["redis"]
    assert served_serials(bundle) == {"redis": on_disk, "proxy": on_disk}
    report = json.loads(result.stdout)
    assert report["complete"] is True
    assert report["new_serial"] == format(on_disk, "x")
    endpoints = {item["name"]: item for item in report["endpoints"]}
    assert endpoints["redis"]["applied"] == "CONFIG SET"
    assert endpoints["proxy"]["applied"] == f"SIGHUP to pid {pids_before['proxy'].strip()}"
    assert all(
        item["current"] and item["serial"] == report["new_serial"] for item in endpoints.values()
    )
    # The same processes: reloaded, not restarted; and the long-lived connections kept working.
    assert {
        name: (bundle.run_dir / f"{name}.pid").read_text() for name in pids_before
    } == pids_before
    assert direct.errors == [] and proxied.errors == []
    verify = run_redkeep("certs", "verify", "--dir", bundle.root)
    assert verify.returncode == 0, verify.stdout


def wait_for_more_calls(clients: list["SteadyClient"], counts: tuple[int, ...]) -> None:
    """Until every client has completed a command after `counts` (or one has failed)."""
    while any(c.calls <= n and not c.errors for c, n in zip(clients, counts, strict=True)):
        time.sleep(0.01)


def test_rotation_output_names_every_endpoint(running_bundle):
    result = run_redkeep("certs", "rotate", "--dir", running_bundle.root)
    assert result.returncode == 0, result.stderr
    serial = format(load_certificate(running_bundle.tls.server_cert).serial_number, "x")
    port = running_bundle.settings.redis.tls_port
    proxy = running_bundle.settings.proxy.listen
    assert f"new server certificate serial {serial}" in result.stdout
    assert f"redis localhost:{port}: serves it (CONFIG SET; no restart)" in result.stdout
    assert f"proxy {proxy}: serves it (SIGHUP to pid " in result.stdout


def test_rotation_fails_clearly_when_the_proxy_does_not_reload(running_bundle):
    bundle = running_bundle
    proxy_pid = int((bundle.run_dir / "proxy.pid").read_text())
    os.kill(proxy_pid, signal.SIGSTOP)  # alive, but it cannot act on SIGHUP
    try:
        result = run_redkeep("certs", "rotate", "--dir", bundle.root)
    finally:
        os.kill(proxy_pid, signal.SIGCONT)
    assert result.returncode == 1
    proxy = bundle.settings.proxy.listen
    assert f"rotation incomplete: proxy {proxy} does not serve serial" in result.stderr
    on_disk = load_certificate(bundle.tls.server_cert).serial_number
    assert f"redis localhost:{bundle.settings.redis.tls_port}: serves it" in result.stdout
    assert served_serials(bundle)["redis"] == on_disk
    # Once it runs again it handles the pending SIGHUP; a rotation then completes.
    assert run_redkeep("certs", "rotate", "--dir", bundle.root).returncode == 0


def test_rotation_never_signals_a_process_the_proxy_pid_file_wrongly_names(running_bundle):
    bundle = running_bundle
    pidfile = bundle.run_dir / "proxy.pid"
    real = pidfile.read_text()
    bystander = subprocess.Popen(["sleep", "300"])  # SIGHUP would end it
    pidfile.write_text(f"{bystander.pid}\n")
    try:
        result = run_redkeep("certs", "rotate", "--dir", bundle.root)
        assert result.returncode == 0, result.stderr
        assert bystander.poll() is None
        assert f"SIGHUP to pid {real.strip()}" in result.stdout  # the real proxy, found in /proc
        on_disk = load_certificate(bundle.tls.server_cert).serial_number
        assert served_serials(bundle) == {"redis": on_disk, "proxy": on_disk}
    finally:
        pidfile.write_text(real)
        bystander.kill()
        bystander.wait()
