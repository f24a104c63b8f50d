"""Zero-downtime rotation of passwords and of the served certificate, on a live server."""

import json
import threading
import time

import pytest
import redis

from redkeep.render.acl import password_hash
from redkeep.tlsprobe import handshake
from tests.conftest import run_redkeep
from tests.integration.conftest import client_as


class SteadyClient:
    """An application connection that keeps working through a rotation; records any error."""

    def __init__(self, bundle, user: str) -> None:
        self.client = client_as(bundle, user, single_connection_client=True)
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
    assert (again.returncode, again.stdout.strip()) == (
        0,
        "'app' has a single password already; nothing to finish",
    )


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


def test_certificate_rotation_is_live_without_restart(running_bundle):
    port = running_bundle.settings.redis.tls_port
    tls = running_bundle.tls
    pid_before = int((running_bundle.run_dir / "redis.pid").read_text())

    def served_serial():
        probe = handshake(
            "localhost", port, ca=tls.ca_cert, cert=tls.client_cert(), key=tls.client_key()
        )
        assert probe.ok, probe.error
        return probe.certificate.serial_number

    before = served_serial()
    with SteadyClient(running_bundle, "app") as steady:
        result = run_redkeep("certs", "rotate", "--dir", running_bundle.root)
        assert result.returncode == 0, result.stderr
        time.sleep(0.05)
    after = served_serial()
    assert after != before
    assert format(after, "x") in result.stdout
    assert int((running_bundle.run_dir / "redis.pid").read_text()) == pid_before
    assert steady.errors == [] and steady.calls > 0
    verify = run_redkeep("certs", "verify", "--dir", running_bundle.root)
    assert verify.returncode == 0, verify.stdout
