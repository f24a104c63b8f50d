"""The proxy of a sentinel deployment keeps following the primary through a rotation of the
password it logs in to the Sentinels with (`app`), and says when it cannot.

One deployment, step by step: `rotate app` and `finish-rotation app` while the proxy runs (it
is not restarted), then a SIGKILL of the primary: writes through the proxy land on the new
primary, as Redis says. Then a proxy pinned to the old password (REDKEEP_SENTINEL_PASSWORD):
`finish-rotation` refuses and puts the old password back on every node and Sentinel; and once
the Sentinels stop taking its password, `health` names the proxy.
"""

import os
import signal
import subprocess

import redis

from redkeep.bundle import Bundle
from redkeep.config.deployment import SENTINEL_PORT_OFFSET
from redkeep.redis.target import parse_host_port
from redkeep.render import nodes as node_files
from redkeep.render.acl import password_hash
from redkeep.stack import processes
from redkeep.stack.processes import PROXY
from tests.conftest import REDKEEP, run_redkeep
from tests.integration.test_sentinel import FAST, client, poll
from tests.servers import free_port_span, wait_for_exit


def logs_in(bundle: Bundle, port: int, user: str, password: str) -> bool:
    """A fresh login on one node or Sentinel (TLS with the bundle's client certificate)."""
    tls = bundle.tls
    connection = redis.Redis(
        host="127.0.0.1", port=port, username=user, password=password, ssl=True,
        ssl_ca_certs=str(tls.ca_cert), ssl_certfile=str(tls.client_cert()),
        ssl_keyfile=str(tls.client_key()), socket_timeout=5,
    )  # fmt: skip
    try:
        return connection.ping()
    except redis.AuthenticationError:
        return False
    finally:
        connection.close()


def write_through_proxy(bundle: Bundle, port: int, key: str) -> bool:
    try:
        app = client(bundle, port, "app")
        try:
            return bool(app.set(key, "through the proxy"))
        finally:
            app.close()
    except redis.RedisError:  # the failover is under way: the caller polls
        return False


def stored_passwords(bundle: Bundle, name: str, file: str) -> set:
    """The passwords the bundle's own copy of a node's config file stores (masterauth, or a
    Sentinel's auth-pass and sentinel-pass): the last word of those lines, unquoted."""
    lines = (bundle.node_dir(name) / file).read_text().splitlines()
    stored = set()
    for words in map(str.split, lines):
        if words[:1] == ["masterauth"] or words[:2] in (
            ["sentinel", "auth-pass"],
            ["sentinel", "sentinel-pass"],
        ):
            stored.add(words[-1].strip('"'))
    assert stored, f"no stored password in {name}'s {file}"
    return stored


def interrupted_with_the_proxy_frozen(root, proxy_pid: int, step: str, signum, ready) -> tuple:
    """`users STEP app` run while the proxy is stopped (SIGSTOP: it waits on it), sent `signum`
    once `ready` = (condition, what) holds; its exit status and stderr."""
    os.kill(proxy_pid, signal.SIGSTOP)
    try:
        command = subprocess.Popen(  # noqa: S603 - our own console script
            [REDKEEP, "users", step, "app", "--dir", str(root)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        poll(*ready)
        command.send_signal(signum)
        _, stderr = command.communicate(timeout=60)
    finally:
        os.kill(proxy_pid, signal.SIGCONT)
    return command.returncode, stderr


def restart_proxy(root, bundle: Bundle, env: dict | None = None) -> None:
    pid = processes.locate(PROXY, root, bundle.run_dir).pid
    os.kill(pid, signal.SIGTERM)
    assert wait_for_exit(pid)
    up = run_redkeep("up", root, "--detach", env=env)
    assert up.returncode == 0, up.stderr


def test_the_proxy_follows_a_failover_after_its_password_rotated(tmp_path, redis_binary):
    base = free_port_span([0, 1, 2, SENTINEL_PORT_OFFSET, SENTINEL_PORT_OFFSET + 2])
    root = tmp_path / "ha"
    init = run_redkeep(
        "init", root, "--topology", "sentinel", "--replicas", "2", "--sentinels", "3",
        "--tls-port", base, env=FAST,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    bundle = Bundle(root)
    ports = {node.name: node.port for node in node_files.planned(bundle.settings)}
    proxy_port = parse_host_port(bundle.settings.proxy.listen)[1]
    up = run_redkeep("up", root, "--detach")
    try:
        assert up.returncode == 0, up.stderr
        proxy_pid = processes.locate(PROXY, root, bundle.run_dir).pid

        # The links' users: `up` runs each node from its run/ copy, which the node rewrites;
        # the bundle's own copies (what docker compose mounts) must follow too.
        for user in ("replication", "sentinel"):
            for step in ("rotate", "finish-rotation"):
                done = run_redkeep("users", step, user, "--dir", root)
                assert done.returncode == 0, done.stderr
        for name in ports:
            if name.startswith("sentinel"):
                stored = stored_passwords(bundle, name, "sentinel.conf")
                assert stored == {bundle.password("sentinel")}, name
            else:
                stored = stored_passwords(bundle, name, "redis.conf")
                assert stored == {bundle.password("replication")}, name

        old = bundle.password("app")

        rotated = run_redkeep("users", "rotate", "app", "--dir", root)
        assert rotated.returncode == 0, rotated.stderr
        finished = run_redkeep("users", "finish-rotation", "app", "--dir", root)
        assert finished.returncode == 0, finished.stderr
        assert f"The proxy (pid {proxy_pid}) logged in to the Sentinels again" in finished.stdout
        new = bundle.password("app")
        assert new != old
        for name, port in ports.items():  # the old password is gone everywhere
            assert not logs_in(bundle, port, "app", old), name
        assert processes.locate(PROXY, root, bundle.run_dir).pid == proxy_pid  # not restarted
        health = run_redkeep("health", "--dir", root)
        assert health.returncode == 0, health.stderr

        # The primary dies; the proxy, still the same process, sends writes to the new one.
        os.kill(int((bundle.run_dir / "redis-0.pid").read_text()), signal.SIGKILL)
        poll(
            lambda: write_through_proxy(bundle, proxy_port, "after:failover"),
            "a write through the proxy after the failover",
        )
        roles = {}
        for name in ("redis-1", "redis-2"):  # Redis says where the write went
            node = client(bundle, ports[name], "admin")
            roles[name] = node.info("replication")["role"]
            node.close()
        (promoted,) = [name for name, role in roles.items() if role == "master"]
        on_primary = client(bundle, ports[promoted], "app")
        assert on_primary.get("after:failover") == "through the proxy"
        on_primary.close()
        healed = run_redkeep("up", root, "--detach")  # redis-0 back, a replica now
        assert healed.returncode == 0, healed.stderr
        poll(lambda: run_redkeep("health", "--dir", root).returncode == 0, "healthy again")

        # SIGINT while rotate waits on a frozen proxy: the rotation stands, and is said so.
        files = {name: bundle.node_dir(name) / "users.acl" for name in ports}
        code, stderr = interrupted_with_the_proxy_frozen(
            root, proxy_pid, "rotate", signal.SIGINT,
            (lambda: bundle.password("app") != new, ".env to hold the new password"),
        )  # fmt: skip
        assert code == 1, stderr
        assert "interrupted" in stderr and "'app' has both passwords on every node" in stderr
        old, new = new, bundle.password("app")
        for name, port in ports.items():
            assert logs_in(bundle, port, "app", old) and logs_in(bundle, port, "app", new), name

        # SIGTERM while finish-rotation waits on a frozen proxy (after every node saved its
        # file without the old password): every node gets it back, live and in its file.
        def saved() -> bool:
            return all(password_hash(old) not in f.read_text() for f in files.values())

        code, stderr = interrupted_with_the_proxy_frozen(
            root, proxy_pid, "finish-rotation", signal.SIGTERM,
            (saved, "every node saved its ACL file without the old password"),
        )  # fmt: skip
        assert code == 1, stderr
        assert "interrupted" in stderr and "rolled back" in stderr, stderr
        for name, port in ports.items():
            assert logs_in(bundle, port, "app", old) and logs_in(bundle, port, "app", new), name
            assert password_hash(old) in files[name].read_text(), name
        finished = run_redkeep("users", "finish-rotation", "app", "--dir", root)
        assert finished.returncode == 0, finished.stderr
        new = bundle.password("app")

        # A proxy given the password in its environment does not follow .env: finishing
        # would lock it out, so finish-rotation refuses and every node keeps both passwords.
        restart_proxy(root, bundle, env={"REDKEEP_SENTINEL_PASSWORD": new})
        pinned = new
        rotated = run_redkeep("users", "rotate", "app", "--dir", root)
        assert rotated.returncode == 0, rotated.stderr
        refused = run_redkeep("users", "finish-rotation", "app", "--dir", root)
        assert refused.returncode == 1, refused.stdout
        assert "REDKEEP_SENTINEL_PASSWORD" in refused.stderr
        assert "rolled back" in refused.stderr
        assert pinned not in refused.stderr + refused.stdout
        newest = bundle.password("app")
        for name, port in ports.items():
            assert logs_in(bundle, port, "app", pinned), name
            assert logs_in(bundle, port, "app", newest), name
        poll(lambda: run_redkeep("health", "--dir", root).returncode == 0, "the proxy answered")

        # The Sentinels stop taking the proxy's password: health names the proxy.
        for name in ("sentinel-0", "sentinel-1", "sentinel-2"):
            admin = client(bundle, ports[name], "admin")
            admin.execute_command("ACL", "SETUSER", "app", f"!{password_hash(pinned)}")
            admin.close()

        def proxy_named() -> bool:
            result = run_redkeep("health", "--dir", root)
            return result.returncode == 1 and "Sentinels answer the proxy" in result.stderr

        poll(proxy_named, "health naming the proxy that no Sentinel answers")

        # The same proxy without its metrics: health asks through it what a client lands on.
        config = bundle.config_path.read_text()
        listen = bundle.settings.proxy.metrics_listen
        assert config.count(f'"{listen}"') == 1
        bundle.config_path.write_text(config.replace(f'"{listen}"', "null"))
        restart_proxy(root, Bundle(root), env={"REDKEEP_SENTINEL_PASSWORD": pinned})
        health = run_redkeep("health", "--dir", root)
        assert health.returncode == 1, health.stdout
        assert "a new client of the proxy lands on a server that says it is" in health.stderr

        # A dead proxy: every client of REDIS_URL is refused, and health says so.
        dead = processes.locate(PROXY, root, bundle.run_dir).pid
        os.kill(dead, signal.SIGKILL)
        assert wait_for_exit(dead)
        health = run_redkeep("health", "--dir", root)
        assert health.returncode == 1
        assert "the proxy is not running" in health.stderr, health.stderr
    finally:
        down = run_redkeep("down", root)
    assert down.returncode == 0, down.stderr
