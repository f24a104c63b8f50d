"""`certs rotate` on a sentinel deployment run by `up --detach`: every data node re-reads its new
certificate live, every Sentinel is restarted, one at a time, on what it learned, and the proxy
`up` runs in front of them reloads its own (tls/server.crt) on SIGHUP; judged by fresh TLS
handshakes, by what the Sentinels answer and by the primary Redis reports.
"""

import json

from redkeep.bundle import Bundle
from redkeep.config.deployment import SENTINEL_PORT_OFFSET
from redkeep.pki.inspect import load_certificate
from redkeep.redis.handshake import handshake
from redkeep.redis.target import parse_host_port
from redkeep.render import nodes as node_files
from redkeep.stack import processes
from redkeep.stack.processes import PROXY, node_service
from tests.conftest import run_redkeep
from tests.integration.test_sentinel import FAST, client
from tests.servers import free_port_span


def served_serial(bundle: Bundle, port: int) -> int | None:
    """The serial a fresh TLS handshake on `port` shows."""
    tls = bundle.tls
    probe = handshake(
        "127.0.0.1", port, ca=tls.ca_cert, cert=tls.client_cert(), key=tls.client_key()
    )
    return probe.certificate.serial_number if probe.certificate else None


def sentinel_pids(bundle: Bundle, names: list[str]) -> dict[str, int | None]:
    return {
        name: processes.locate(node_service(name), bundle.root, bundle.run_dir).pid
        for name in names
    }


def test_certs_rotate_restarts_each_local_sentinel_without_a_failover(tmp_path, redis_binary):
    base = free_port_span([0, 1, SENTINEL_PORT_OFFSET, SENTINEL_PORT_OFFSET + 2])
    root = tmp_path / "ha"
    init = run_redkeep(
        "init", root, "--topology", "sentinel", "--replicas", "1", "--sentinels", "3",
        "--tls-port", base, env=FAST,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    bundle = Bundle(root)
    ports = {node.name: node.port for node in node_files.planned(bundle.settings)}
    sentinels = [name for name in ports if name.startswith("sentinel-")]
    proxy_port = parse_host_port(bundle.settings.proxy.listen)[1]
    up = run_redkeep("up", root, "--detach")
    try:
        assert up.returncode == 0, up.stderr
        before = {name: served_serial(bundle, port) for name, port in ports.items()}
        proxy_before = served_serial(bundle, proxy_port)
        assert proxy_before == load_certificate(bundle.tls.server_cert).serial_number
        proxy_pid = processes.locate(PROXY, root, bundle.run_dir).pid

        # (The same running bundle, for `users list`: every node of the plan, read and alike,
        # and the app's password on each is the one in .env.)
        listed = run_redkeep("users", "list", "--json", "--dir", root)
        assert listed.returncode == 0, listed.stderr
        users = json.loads(listed.stdout)
        assert users["consistent"] is True
        assert [node["name"] for node in users["nodes"]] == list(ports)
        app_users = [user for user in users["users"] if user["name"] == "app"]
        assert {user["group"] for user in app_users} == {"data", "sentinel"}
        assert all(user["variants"][0]["env_password"] is True for user in app_users)
        # With .env sourced, REDIS_URL names the proxy: still every node, with the bundle's
        # TLS files; and the proxy itself is trusted with the bundle's CA.
        sourced = {key: bundle.secrets()[key] for key in ("REDIS_URL", "REDIS_PASSWORD")}
        again = run_redkeep("users", "list", "--json", "--dir", root, env=sourced)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["nodes"] == users["nodes"]
        audited = run_redkeep("audit", "--format", "json", "--dir", root, env=sourced)
        assert audited.returncode in (0, 1), audited.stderr  # 1: findings (e.g. CVEs)
        assert len(json.loads(audited.stdout)) == len(ports)
        proxy_url = f"rediss://app@localhost:{proxy_port}"  # the password: .env's
        health = run_redkeep("health", "--dir", root, "--url", proxy_url)
        assert health.returncode == 0, health.stderr
        pids_before = sentinel_pids(bundle, sentinels)
        epoch = client(bundle, ports["sentinel-0"], "admin").sentinel_master("redkeep")[
            "config-epoch"
        ]

        rotated = run_redkeep("certs", "rotate", "--json", "--dir", root)
        assert rotated.returncode == 0, rotated.stderr
        report = json.loads(rotated.stdout)
        assert report["restart_needed"] == [] and report["restarted"] == sentinels

        # Every node and every Sentinel serves a new serial: the one now on disk.
        for name, port in ports.items():
            on_disk = load_certificate(bundle.tls.node_cert(name)).serial_number
            assert on_disk != before[name]
            assert served_serial(bundle, port) == on_disk, name
        # The proxy serves the renewed tls/server.crt: the same process, reloaded on SIGHUP.
        proxy_now = load_certificate(bundle.tls.server_cert).serial_number
        assert proxy_now != proxy_before
        assert served_serial(bundle, proxy_port) == proxy_now
        assert processes.locate(PROXY, root, bundle.run_dir).pid == proxy_pid
        assert report["proxy"]["endpoint"]["current"] is True
        assert report["proxy"]["new_serial"] == format(proxy_now, "x")
        app = client(bundle, proxy_port, "app")  # a new client still gets through it
        assert app.set("cart:1", "rotated") and app.get("cart:1") == "rotated"
        app.close()
        # The Sentinels are new processes (restarted, not re-read) and still agree.
        pids_after = sentinel_pids(bundle, sentinels)
        assert all(pids_after[name] not in (None, pids_before[name]) for name in sentinels)
        for name in sentinels:
            sentinel = client(bundle, ports[name], "admin")
            assert sentinel.execute_command("SENTINEL", "CKQUORUM", "redkeep").startswith("OK")
            master = sentinel.sentinel_master("redkeep")
            assert (master["port"], master["num-other-sentinels"]) == (ports["redis-0"], 2)
            assert master["config-epoch"] == epoch  # no failover happened
            sentinel.close()
        primary = client(bundle, ports["redis-0"], "admin")
        assert primary.info("replication")["role"] == "master"
        primary.close()
        assert run_redkeep("health", "--dir", root).returncode == 0

        # sentinel-1 cannot start again: it is named, exit 1, sentinel-2 is left running on
        # its old certificate (restart_needed), and the two running keep their quorum.
        conf = bundle.run_dir / "sentinel-1.conf"
        conf.write_text(conf.read_text() + "no-such-directive yes\n")
        pids = sentinel_pids(bundle, sentinels)
        failed = run_redkeep("certs", "rotate", "--json", "--dir", root)
        assert failed.returncode == 1
        assert "sentinel-1 did not come back" in failed.stderr
        report = json.loads(failed.stdout)
        assert (report["restarted"], report["restart_needed"]) == (["sentinel-0"], ["sentinel-2"])
        (broken,) = [node for node in report["nodes"] if node["problem"]]
        assert broken["name"] == "sentinel-1" and "no-such-directive" in broken["problem"]
        after = sentinel_pids(bundle, sentinels)
        assert after["sentinel-1"] is None and after["sentinel-2"] == pids["sentinel-2"]
        for name in ("sentinel-0", "sentinel-2"):
            sentinel = client(bundle, ports[name], "admin")
            assert sentinel.execute_command("SENTINEL", "CKQUORUM", "redkeep").startswith("OK")
            assert sentinel.sentinel_master("redkeep")["port"] == ports["redis-0"]
            sentinel.close()
        # `up` renders its file again (keeping what it learned) and starts it.
        conf.write_text(conf.read_text().replace("no-such-directive yes\n", ""))
        again = run_redkeep("up", root, "--detach")
        assert again.returncode == 0, again.stderr
        assert run_redkeep("health", "--dir", root).returncode == 0
    finally:
        down = run_redkeep("down", root)
    assert down.returncode == 0, down.stderr
    for name in ports:
        assert list(processes.find_processes(node_service(name), root)) == []
