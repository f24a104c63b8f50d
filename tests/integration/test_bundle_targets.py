"""Which server a command talks to, given a standalone bundle, and where the bundle's passwords
may go (a bundle started by `redkeep up`, tests/integration/conftest.py).

- The bundle's .env passwords go only to its own endpoints, over TLS: `--url` naming another
  server gets none of them, even as a user the bundle knows (a plain-text listener records
  every byte it receives; the bundle's passwords are never among them).
- A bundle (--dir, or found in the current directory) is talked to as itself, whatever
  REDIS_URL says: health and status as its exporter, users list and audit as its admin, as for
  sentinel and cluster bundles. Also with its own .env sourced, whose REDIS_URL is the app's.
- `users list` tells apart long names that share a prefix.
"""

import json
import socket
import threading
from pathlib import Path

import pytest

from redkeep.actions.locate import target_for
from redkeep.bundle import Bundle
from redkeep.redis.target import ConnectionOptions, parse_url
from tests.conftest import run_redkeep
from tests.integration.conftest import client_as
from tests.servers import free_port

COMMANDS = {
    "health": ("health", "--json"),
    "status": ("status", "--json"),
    "users list": ("users", "list", "--json"),
    "audit": ("audit", "--format", "json"),
}
# What each command logs in as on the bundle's own server.
ROLES = {"health": "exporter", "status": "exporter", "users list": "admin", "audit": "admin"}


class Recorder:
    """A plain-text TCP listener on loopback that keeps every byte it receives and answers
    each command with NOAUTH, as a Redis that wants a password would."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server = socket.create_server(("127.0.0.1", self.port))
        self.received = bytearray()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        pending = b""
        with conn:
            while data := conn.recv(65536):
                with self.lock:
                    self.received += data
                pending += data
                count, pending = complete_commands(pending)
                conn.sendall(b"-NOAUTH Authentication required.\r\n" * count)

    def close(self) -> None:
        self.server.close()


def complete_commands(buffer: bytes) -> tuple[int, bytes]:
    """How many whole RESP commands (arrays of bulk strings, or inline lines) `buffer` starts
    with, and the rest."""
    count = 0
    while b"\r\n" in buffer:
        line, rest = buffer.split(b"\r\n", 1)
        if not line.startswith(b"*"):
            count, buffer = count + 1, rest
            continue
        for _ in range(int(line[1:])):
            if b"\r\n" not in rest:
                return count, buffer
            header, rest = rest.split(b"\r\n", 1)
            size = int(header[1:])
            if len(rest) < size + 2:
                return count, buffer
            rest = rest[size + 2 :]
        count, buffer = count + 1, rest
    return count, buffer


@pytest.fixture
def recorder():
    listener = Recorder()
    yield listener
    listener.close()


def secrets_of(bundle: Bundle) -> list[bytes]:
    return [password.encode() for password in bundle.known_passwords().values()]


def redkeep_json(*args, **kwargs) -> tuple[int, dict | list, str]:
    result = run_redkeep(*args, **kwargs)
    return result.returncode, json.loads(result.stdout), result.stderr


def port_of(url: str) -> int:
    return parse_url(url).port


def acted_on_the_bundle(command: str, document, bundle: Bundle) -> None:
    """The command's JSON says it asked the bundle's own server, as the bundle's role user;
    users list and status are judged against what that server itself says."""
    port = bundle.settings.redis.tls_port
    role = ROLES[command]
    if command == "health":
        assert document["healthy"] is True, document
        assert (port_of(document["url"]), parse_url(document["url"]).username) == (port, role)
    elif command == "status":
        pid = int((bundle.run_dir / "redis.pid").read_text())
        assert document["server"]["process_id"] == pid, document
        assert parse_url(document["url"]).username == role
    elif command == "users list":
        with client_as(bundle, "admin") as admin:
            assert {user["name"] for user in document} == set(admin.acl_users())
    else:
        assert document["incomplete"] is None, document["incomplete"]
        assert (port_of(document["target"]), parse_url(document["target"]).username) == (port, role)


@pytest.mark.parametrize("command", COMMANDS)
def test_url_naming_another_server_gets_no_password_of_the_bundle(
    running_bundle, recorder, command
):
    url = f"redis://admin@127.0.0.1:{recorder.port}"
    result = run_redkeep(*COMMANDS[command], "--dir", running_bundle.root, "--url", url)
    assert recorder.received, "the command never reached the server --url names"
    for secret in secrets_of(running_bundle):
        assert secret not in recorder.received
    assert result.returncode != 0
    # health and status say why in their JSON, audit per check (could_not_verify).
    said = result.stderr if command == "users list" else result.stdout
    assert "NOAUTH" in said, (result.stdout, result.stderr)
    if command == "audit":  # and one line saying what to do
        assert "requires a login and none was accepted (NOAUTH)" in result.stderr


def test_every_user_the_bundle_knows_is_refused_its_password_elsewhere(running_bundle, recorder):
    for user in running_bundle.known_passwords():
        url = f"redis://{user}@127.0.0.1:{recorder.port}"
        result = run_redkeep("health", "--dir", running_bundle.root, "--url", url)
        assert result.returncode == 1 and "NOAUTH" in result.stdout + result.stderr
    assert recorder.received
    for secret in secrets_of(running_bundle):
        assert secret not in recorder.received


@pytest.mark.parametrize("given", ["--dir", "current directory"])
@pytest.mark.parametrize("command", COMMANDS)
def test_a_stray_redis_url_does_not_replace_the_bundle(running_bundle, recorder, command, given):
    stray = {"REDIS_URL": f"redis://admin@127.0.0.1:{recorder.port}"}
    if given == "--dir":
        args, cwd = (*COMMANDS[command], "--dir", running_bundle.root), None
    else:
        args, cwd = COMMANDS[command], running_bundle.root
    code, document, stderr = redkeep_json(*args, env=stray, cwd=cwd)
    assert recorder.received == b""
    assert code in (0, 1), stderr  # status: 1 when no backup has run yet
    acted_on_the_bundle(command, document, running_bundle)


@pytest.mark.parametrize("given", ["--dir", "current directory"])
@pytest.mark.parametrize("command", ["users list", "audit"])
def test_with_its_own_env_sourced_users_and_audit_run_as_admin(running_bundle, command, given):
    """`set -a; . A/.env; set +a` puts the app's REDIS_URL and REDIS_PASSWORD in the
    environment: the app may not read the ACL, so these must not log in as it."""
    sourced = running_bundle.secrets()
    assert parse_url(sourced["REDIS_URL"]).username == "app"
    if given == "--dir":
        args, cwd = (*COMMANDS[command], "--dir", running_bundle.root), None
    else:
        args, cwd = COMMANDS[command], running_bundle.root
    code, document, stderr = redkeep_json(*args, env=sourced, cwd=cwd)
    assert code == 0, stderr
    acted_on_the_bundle(command, document, running_bundle)


def test_the_bundle_server_by_another_of_its_names_keeps_the_password(running_bundle):
    """127.0.0.1 for `localhost`, and `redis` (the compose service the compose file's exporter
    and backups name) are the bundle's server; its port on plain text, or another port, is
    not."""
    port = running_bundle.settings.redis.tls_port
    url = f"rediss://admin@127.0.0.1:{port}"
    code, document, stderr = redkeep_json(
        "users", "list", "--json", "--dir", running_bundle.root, "--url", url
    )
    assert code == 0, stderr
    acted_on_the_bundle("users list", document, running_bundle)

    bundle = Bundle(Path(running_bundle.root))
    exporter = running_bundle.password("exporter")

    def password_for(url: str) -> str | None:
        return target_for(ConnectionOptions(url=url), bundle, "exporter").password

    assert password_for(f"rediss://exporter@redis:{port}") == exporter
    assert password_for(f"rediss://exporter@redis:{port + 7}") is None
    assert password_for(f"redis://exporter@localhost:{port}") is None
    assert password_for(f"rediss://exporter@elsewhere.example:{port}") is None


def test_users_sharing_a_long_prefix_are_told_apart(running_bundle):
    prefix = "app" + "_" * 61  # 64 characters: what the table used to cut at
    readonly, root = f"{prefix}_readonly", f"{prefix}_root"
    with client_as(running_bundle, "admin") as admin:
        admin.acl_setuser(readonly, enabled=True, passwords=["+ro-password"], commands=["+get"])
        admin.acl_setuser(root, enabled=True, nopass=True, commands=["+@all"])
        try:
            table = run_redkeep("users", "list", "--dir", running_bundle.root)
            listed = run_redkeep("users", "list", "--json", "--dir", running_bundle.root)
        finally:
            admin.acl_deluser(readonly, root)
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if line.startswith("app_")]
    assert len(rows) == 2, table.stdout
    for name in (readonly, root):
        shown = f"{name[:40]}…{name[-16:]}"
        assert sum(shown in row for row in rows) == 1, table.stdout
    assert f"({len(readonly)} characters)" in table.stdout
    assert f"({len(root)} characters)" in table.stdout
    names = {user["name"] for user in json.loads(listed.stdout)}
    assert {readonly, root} <= names
