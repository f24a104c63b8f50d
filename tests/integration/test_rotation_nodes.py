"""Rotation on every node of a sentinel deployment: the same passwords work everywhere at every
moment; every data node serves its renewed certificate without a restart.

One deployment for the module (three data nodes replicating over TLS, one Sentinel), built by
hand from a standalone bundle (`sentinel_by_hand.py`). Every test leaves it as it found it:
each user with one password, the one in .env.
"""

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from redkeep.actions.nodes import admin_sessions, every_node
from redkeep.actions.rollback import ChangeLog, Undo
from redkeep.envfile import generate_password
from redkeep.errors import RedkeepError
from redkeep.pki.inspect import load_certificate
from redkeep.redis.handshake import handshake
from redkeep.redis.target import ConnectionOptions
from redkeep.render.acl import hashes_in, password_hash
from tests.conftest import run_redkeep
from tests.integration.sentinel_by_hand import (
    MASTER_NAME,
    HandMadeDeployment,
    build,
    sentinel_sees_master,
    wait_for,
)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, redis_binary) -> Iterator[HandMadeDeployment]:
    built = build(tmp_path_factory.mktemp("sentinel") / "stack", redis_binary)
    yield built
    built.stop()


def redkeep(deployment: HandMadeDeployment, *args: str):
    return run_redkeep(*args, "--dir", deployment.bundle.root)


def passwords_on(deployment: HandMadeDeployment, user: str, names=None) -> dict[str, set[str]]:
    """{node: the password hashes of `user` there}, for every node (of `names`) that has it."""
    found = {}
    for name in names or deployment.nodes:
        with deployment.client(name) as client:
            acl = client.acl_getuser(user)
        if acl is not None:
            found[name] = set(acl["passwords"])
    return found


def saved_passwords(deployment: HandMadeDeployment, user: str) -> dict[str, set[str]]:
    """{node: the hashes of `user` in the node's own users.acl}, where the file has the user."""
    found = {}
    for name in deployment.nodes:
        hashes = hashes_in((deployment.bundle.node_dir(name) / "users.acl").read_text())
        if user in hashes:
            found[name] = set(hashes[user])
    return found


def logs_in(deployment: HandMadeDeployment, name: str, user: str, password: str) -> bool:
    try:
        with deployment.client(name, user, password) as client:
            client.execute_command("AUTH", user, password)
        return True
    except redis.AuthenticationError:
        return False


class Logins:
    """Fresh logins, over and over, on each of `names` in turn (one thread: bounded load),
    each with the password `password()` gives at that moment; records every refusal."""

    def __init__(self, deployment: HandMadeDeployment, names, user: str, password: Callable):
        self.deployment, self.names, self.user, self.password = deployment, names, user, password
        self.counts = dict.fromkeys(names, 0)
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for name in self.names:
                password = self.password()
                if not logs_in(self.deployment, name, self.user, password):
                    self.failures.append(f"{name}: refused {password_hash(password)[:8]}")
                self.counts[name] += 1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def test_rotate_and_finish_reach_every_node_with_no_failed_login(deployment):
    bundle = deployment.bundle
    old = bundle.password("app")
    holders = [*deployment.data_nodes, *deployment.sentinels]  # the Sentinels have app too
    assert set(passwords_on(deployment, "app")) == set(holders)
    with Logins(deployment, holders, "app", lambda: bundle.password("app")) as logins:
        started = redkeep(deployment, "users", "rotate", "app")
        assert started.returncode == 0, started.stderr
        new = bundle.password("app")
        assert new != old
        both = {password_hash(old), password_hash(new)}
        assert passwords_on(deployment, "app") == dict.fromkeys(holders, both)
        assert saved_passwords(deployment, "app") == dict.fromkeys(holders, both)
        for name in holders:
            assert logs_in(deployment, name, "app", old) and logs_in(deployment, name, "app", new)
            assert oct(os.stat(bundle.node_dir(name) / "users.acl").st_mode & 0o777) == "0o600"

        finished = redkeep(deployment, "users", "finish-rotation", "app")
        assert finished.returncode == 0, finished.stderr
        only_new = {password_hash(new)}
        assert passwords_on(deployment, "app") == dict.fromkeys(holders, only_new)
        assert saved_passwords(deployment, "app") == dict.fromkeys(holders, only_new)
        for name in holders:
            assert not logs_in(deployment, name, "app", old)
        counts = dict(logins.counts)
        wait_for(lambda: all(logins.counts[n] > counts[n] for n in holders), "more logins")
    assert logins.failures == []
    assert "redis-0, redis-1, redis-2, sentinel-0" in started.stdout


def test_finishing_after_a_killed_finish_saves_the_nodes_it_no_longer_changes(deployment):
    # A finish SIGKILLed after redis-0 dropped the old password live, before it saved: the
    # next finish changes only the others, and must save redis-0 too.
    bundle = deployment.bundle
    old = bundle.password("app")
    assert redkeep(deployment, "users", "rotate", "app").returncode == 0
    new = bundle.password("app")
    with deployment.client("redis-0") as client:
        client.execute_command("ACL", "SETUSER", "app", f"!{password_hash(old)}")
    assert password_hash(old) in saved_passwords(deployment, "app")["redis-0"]
    finished = redkeep(deployment, "users", "finish-rotation", "app")
    assert finished.returncode == 0, finished.stderr
    holders = passwords_on(deployment, "app")
    assert saved_passwords(deployment, "app") == dict.fromkeys(holders, {password_hash(new)})


def reconnect_replicas(deployment: HandMadeDeployment) -> None:
    """Make every replica log in to the primary again (with its masterauth), and wait for it."""
    for name in deployment.data_nodes[1:]:
        with deployment.client(name) as client:
            client.execute_command("CLIENT", "KILL", "TYPE", "master")
            wait_for(lambda c=client: c.info("replication")["master_link_status"] == "up", name)


def reset_acl_log(deployment: HandMadeDeployment, name: str) -> None:
    with deployment.client(name) as client:
        client.acl_log_reset()


def failed_logins(deployment: HandMadeDeployment, name: str, user: str) -> list[dict]:
    with deployment.client(name) as client:
        return [
            entry
            for entry in client.acl_log()
            if entry["reason"] == "auth" and entry["username"] == user
        ]


def test_the_replication_user_rotates_with_masterauth_on_every_data_node(deployment):
    bundle = deployment.bundle
    old = bundle.secrets()["REDIS_REPLICATION_PASSWORD"]
    started = redkeep(deployment, "users", "rotate", "replication")
    assert started.returncode == 0, started.stderr
    new = bundle.secrets()["REDIS_REPLICATION_PASSWORD"]
    assert new != old
    for name in deployment.data_nodes:
        with deployment.client(name) as client:
            assert client.config_get("masterauth") == {"masterauth": new}
        conf = bundle.node_dir(name) / "redis.conf"
        assert f'masterauth "{new}"' in conf.read_text().splitlines()  # kept at restart
        assert oct(os.stat(conf).st_mode & 0o777) == "0o600"
    assert set(passwords_on(deployment, "replication")) == set(deployment.data_nodes)

    finished = redkeep(deployment, "users", "finish-rotation", "replication")
    assert finished.returncode == 0, finished.stderr
    assert not logs_in(deployment, "redis-0", "replication", old)
    reset_acl_log(deployment, "redis-0")  # that refusal was ours
    # The replicas log in again with the password that is left, and are back in sync.
    reconnect_replicas(deployment)
    assert failed_logins(deployment, "redis-0", "replication") == []


def test_the_sentinel_user_rotates_with_auth_pass_and_sentinel_pass(deployment):
    bundle = deployment.bundle
    old = bundle.secrets()["REDIS_SENTINEL_PASSWORD"]
    started = redkeep(deployment, "users", "rotate", "sentinel")
    assert started.returncode == 0, started.stderr
    new = bundle.secrets()["REDIS_SENTINEL_PASSWORD"]
    assert "auth-pass on sentinel-0, sentinel-pass on sentinel-0" in started.stdout
    with deployment.client("sentinel-0") as sentinel:
        reply = sentinel.execute_command("SENTINEL", "CONFIG", "GET", "sentinel-pass")
        assert reply == {"sentinel-pass": new}
    conf = (bundle.node_dir("sentinel-0") / "sentinel.conf").read_text().splitlines()
    assert f"sentinel auth-pass {MASTER_NAME} {new}" in conf
    assert set(passwords_on(deployment, "sentinel")) == {*deployment.data_nodes, "sentinel-0"}

    finished = redkeep(deployment, "users", "finish-rotation", "sentinel")
    assert finished.returncode == 0, finished.stderr
    assert not logs_in(deployment, "redis-0", "sentinel", old)
    reset_acl_log(deployment, "redis-0")  # that refusal was ours
    # Cut the Sentinel's links to the primary: it logs in again, with the new password.
    with deployment.client("redis-0") as primary:
        wait_for(lambda: _sentinel_connections(primary) >= 2, "the Sentinel's links")
        assert primary.execute_command("CLIENT", "KILL", "USER", "sentinel") >= 1
        wait_for(lambda: _sentinel_connections(primary) >= 2, "the Sentinel's new links")
    with deployment.client("sentinel-0") as sentinel:
        wait_for(lambda: sentinel_sees_master(sentinel), "the Sentinel's view of the primary")
    assert failed_logins(deployment, "redis-0", "sentinel") == []


def _sentinel_connections(client: redis.Redis) -> int:
    return sum(1 for entry in client.client_list() if entry["user"] == "sentinel")


def snapshot(deployment: HandMadeDeployment, user: str, live: dict | None = None) -> dict:
    """What a rollback must restore: the user on each node (`live` if read already), each
    node's ACL file, .env."""
    return {
        "live": live if live is not None else passwords_on(deployment, user),
        "saved": saved_passwords(deployment, user),
        "env": deployment.bundle.env_path.read_bytes(),
    }


def refuse_setuser(deployment, name):
    """The node's admin may no longer change users (ACL LOAD from its file undoes it)."""
    with deployment.client(name) as client:
        client.execute_command("ACL", "SETUSER", "admin", "-acl|setuser")
    return lambda: _acl_load(deployment, name)


def refuse_login(deployment, name):
    """The node's app user is switched off: the new password is added, but no login works."""
    with deployment.client(name) as client:
        client.execute_command("ACL", "SETUSER", "app", "off")
    return lambda: _acl_load(deployment, name)


def refuse_save(deployment, name):
    """The node cannot write its ACL file: a directory stands where it renames it to."""
    acl = deployment.bundle.node_dir(name) / "users.acl"
    kept = acl.with_name("users.acl.kept")
    acl.rename(kept)
    acl.mkdir()

    def undo():
        acl.rmdir()
        kept.rename(acl)

    return undo


def _acl_load(deployment, name):
    with deployment.client(name) as client:
        client.execute_command("ACL", "LOAD")


@pytest.mark.parametrize(
    ("refusal", "step", "changed"),
    [
        (refuse_setuser, "ACL SETUSER", "redis-0, redis-1"),
        (refuse_login, "WRONGPASS", "redis-0, redis-1, redis-2, sentinel-0"),
        (refuse_save, "ACL SAVE", "redis-0, redis-1, redis-2, sentinel-0"),
    ],
)
def test_a_node_that_refuses_leaves_every_node_as_before(deployment, refusal, step, changed):
    before = snapshot(deployment, "app")
    undo = refusal(deployment, "redis-2")
    try:
        result = redkeep(deployment, "users", "rotate", "app")
        live = passwords_on(deployment, "app")  # before the refusal is undone (ACL LOAD)
    finally:
        undo()
    assert result.returncode != 0
    assert snapshot(deployment, "app", live) == before
    message = result.stderr
    assert "rotating 'app' failed: redis-2: " in message and step in message
    assert f"rolled back {changed} (each as before" in message
    assert message.rstrip().endswith(".env is unchanged")
    assert "could NOT" not in message


def test_a_node_that_does_not_answer_is_named_and_nothing_changes(deployment):
    assert redkeep(deployment, "users", "rotate", "exporter").returncode == 0
    before = snapshot(deployment, "exporter")
    pid = deployment.nodes["redis-1"].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        result = redkeep(deployment, "users", "finish-rotation", "exporter", "--timeout", "0.5")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert result.returncode == 3, result.stderr
    assert "cannot reach 1 of 4 nodes, so nothing was changed (redis-1: " in result.stderr
    assert snapshot(deployment, "exporter") == before  # both passwords still everywhere
    assert redkeep(deployment, "users", "finish-rotation", "exporter").returncode == 0
    assert all(len(hashes) == 1 for hashes in passwords_on(deployment, "exporter").values())


def test_a_node_killed_during_finish_rotation_leaves_every_node_alike(deployment):
    """Whenever the kill lands (before its change, before its save, after), the survivors
    agree, and the killed node restarts from its own ACL file in the same state."""
    assert redkeep(deployment, "users", "rotate", "app").returncode == 0
    victim = deployment.nodes["redis-2"]
    with deployment.client("redis-0") as watched:

        def kill_once_redis_0_changes():
            while len(watched.acl_getuser("app")["passwords"]) == 2:
                time.sleep(0.001)
            os.kill(victim.pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_once_redis_0_changes)
        killer.start()
        result = redkeep(deployment, "users", "finish-rotation", "app")
        killer.join()
    survivors = [name for name in deployment.nodes if name != "redis-2"]
    states = passwords_on(deployment, "app", survivors)
    assert len(states) == 3 and len({frozenset(hashes) for hashes in states.values()}) == 1
    assert (result.returncode == 0) == (len(states["redis-0"]) == 1), result.stderr
    victim.stop()
    victim.log.unlink()
    victim.start(keep_config=True)
    assert passwords_on(deployment, "app", ["redis-2"])["redis-2"] == states["redis-0"]
    if result.returncode != 0:
        assert "rolled back redis-0, redis-1" in result.stderr
        assert redkeep(deployment, "users", "finish-rotation", "app").returncode == 0


def test_a_refused_undo_does_not_show_the_password(deployment):
    """Redis repeats a refused ACL SETUSER modifier in its error reply ("modifier '<PASSWORD>'").
    A node that restarted from its ACL file during a rotation has lost the new password, so the
    rollback's `<new` is refused there: the message names the node, never the password."""
    secret = generate_password()
    nodes = every_node(deployment.bundle, ConnectionOptions(), "admin")
    with admin_sessions(nodes) as sessions:
        node = next(session for session in sessions if session.name == "redis-1")
        log = ChangeLog("app", before={}, secrets=(secret,))
        log.sessions[node.name] = node
        log.undos.append(Undo(node, "ACL SETUSER", ("ACL", "SETUSER", "app", f"<{secret}")))
        error = log.failure(RedkeepError("redis-1: closed"), "rotating failed", "run it again")
    assert "could NOT roll back redis-1: " in error.message
    assert "does not exist" in error.message  # Redis's reason is kept
    assert secret not in error.message


def test_url_is_refused_for_a_deployment_of_many_nodes(deployment):
    url = f"rediss://admin@localhost:{deployment.port('redis-1')}"
    result = redkeep(deployment, "users", "rotate", "app", "--url", url)
    assert result.returncode == 2
    assert "--url names one server" in result.stderr


def served_serial(deployment: HandMadeDeployment, name: str) -> int:
    """The serial a node presents in a fresh TLS handshake."""
    tls = deployment.bundle.tls
    probe = handshake(
        "127.0.0.1",
        deployment.port(name),
        ca=tls.ca_cert,
        cert=tls.client_cert(),
        key=tls.client_key(),
        server_name="localhost",
    )
    assert probe.ok, (name, probe.error)
    return probe.certificate.serial_number


def serial_on_disk(deployment: HandMadeDeployment, name: str) -> int:
    return load_certificate(deployment.bundle.tls.node_cert(name)).serial_number


def test_certs_rotate_switches_every_data_node_live_and_renews_the_sentinels(deployment):
    names = list(deployment.nodes)
    before = {name: served_serial(deployment, name) for name in names}
    pids = {name: server.pid for name, server in deployment.nodes.items()}
    open_clients = {name: deployment.client(name, single_connection_client=True) for name in names}
    for client in open_clients.values():
        client.ping()
    result = redkeep(deployment, "certs", "rotate", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for name in deployment.data_nodes:
        new = serial_on_disk(deployment, name)
        assert new != before[name]
        assert served_serial(deployment, name) == new  # re-read live, no restart
    # The Sentinel cannot re-read it: renewed on disk, said so, and served once restarted.
    assert served_serial(deployment, "sentinel-0") == before["sentinel-0"]
    assert serial_on_disk(deployment, "sentinel-0") != before["sentinel-0"]
    assert report["complete"] is True and report["restart_needed"] == ["sentinel-0"]
    assert "restart sentinel-0" in result.stderr
    nodes = {node["name"]: node for node in report["nodes"]}
    assert all(nodes[name]["current"] for name in deployment.data_nodes)
    assert {name: server.pid for name, server in deployment.nodes.items()} == pids
    for client in open_clients.values():  # connections made before stay up
        assert client.ping()
        client.close()
    # No failover, and replication and the Sentinel's links come back over the new certificates.
    reconnect_replicas(deployment)
    with deployment.client("sentinel-0") as sentinel:
        assert sentinel.sentinel_get_master_addr_by_name(MASTER_NAME)[1] == deployment.port(
            "redis-0"
        )
        assert sentinel_sees_master(sentinel)
    restarted = deployment.nodes["sentinel-0"]
    restarted.stop()
    restarted.log.unlink()  # start() waits for its ready line: in the new log
    restarted.start(keep_config=True)
    assert served_serial(deployment, "sentinel-0") == serial_on_disk(deployment, "sentinel-0")
    with deployment.client("sentinel-0") as sentinel:
        wait_for(lambda: sentinel_sees_master(sentinel), "the restarted Sentinel")


def test_certs_rotate_names_the_node_that_refuses_and_switches_the_others(deployment):
    before = {name: served_serial(deployment, name) for name in deployment.data_nodes}
    with deployment.client("redis-1") as client:
        client.execute_command("ACL", "SETUSER", "admin", "-config|set")
    try:
        result = redkeep(deployment, "certs", "rotate")
    finally:
        with deployment.client("redis-1") as client:
            client.execute_command("ACL", "SETUSER", "admin", "+config|set")
    assert result.returncode == 1
    assert "redis-1 localhost:" in result.stderr and "kept its certificate" in result.stderr
    assert "rotation incomplete: redis-1 kept the certificate it had" in result.stderr
    # redis-1 serves its old certificate, and that is still the one on disk; the others moved.
    assert served_serial(deployment, "redis-1") == before["redis-1"]
    assert serial_on_disk(deployment, "redis-1") == before["redis-1"]
    for name in ("redis-0", "redis-2"):
        assert served_serial(deployment, name) == serial_on_disk(deployment, name) != before[name]
    reconnect_replicas(deployment)  # redis-1 (old) and redis-2 (new) both replicate again
