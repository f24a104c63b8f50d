"""`up` of a sentinel deployment runs the proxy, which follows the primary the Sentinels name:
an application writes and reads through it, Redis itself holds the write on the primary,
`status --json` lists the proxy, and `down` stops it with the nodes. Beside it, one exporter
for every node and Sentinel (each scrape says `redis_up 1`) and the backup schedule, whose
first run stores a Sentinel backup; `down` leaves no process of any of them. `up` runs with
REDKEEP_SENTINEL_PASSWORD set, as docs/proxy.md suggests: it is no setting to refuse.
"""

import json
import time
import urllib.request

from redkeep.backup import lastrun
from redkeep.bundle import Bundle
from redkeep.config.deployment import SENTINEL_PORT_OFFSET
from redkeep.proxy.config import SENTINEL_PASSWORD_ENV
from redkeep.redis.target import parse_host_port
from redkeep.render import nodes as node_files
from redkeep.stack import processes
from redkeep.stack.processes import BACKUP, EXPORTER, PROXY, node_service
from tests.conftest import run_redkeep
from tests.integration.test_sentinel import FAST, client
from tests.jsonshape import problems, shape
from tests.servers import free_port_span

DEADLINE = 60  # seconds a step may take on a loaded machine (a bound, not a measure)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - loopback
        return response.read().decode()


def redis_up(exporter: str, target: str) -> float:
    """The `redis_up` of one scrape of `target` through the exporter."""
    body = get(f"{exporter}/scrape?target={target}")
    (line,) = [line for line in body.splitlines() if line.startswith("redis_up ")]
    return float(line.split()[1])


def test_up_runs_the_proxy_in_front_of_the_sentinels_primary(tmp_path, redis_binary):
    base = free_port_span([0, 1, SENTINEL_PORT_OFFSET, SENTINEL_PORT_OFFSET + 2])
    root = tmp_path / "ha"
    init = run_redkeep(
        "init", root, "--topology", "sentinel", "--replicas", "1", "--sentinels", "3",
        "--tls-port", base, env={**FAST, "REDKEEP_BACKUP__INTERVAL_MINUTES": "60"},
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    bundle = Bundle(root)
    ports = {node.name: node.port for node in node_files.planned(bundle.settings)}
    proxy_port = parse_host_port(bundle.settings.proxy.listen)[1]
    up = run_redkeep("up", root, "--detach", env={SENTINEL_PASSWORD_ENV: bundle.password("app")})
    try:
        assert up.returncode == 0, up.stderr
        assert f"proxy on {bundle.settings.proxy.listen}" in up.stdout
        assert f"exporter on http://{bundle.settings.exporter.listen}" in up.stdout
        assert "backups every 60 min" in up.stdout
        pid = processes.locate(PROXY, root, bundle.run_dir).pid
        assert pid is not None and proxy_port in processes.listening_ports(pid)

        # An application through the proxy: the write is on the primary, as Redis says.
        app = client(bundle, proxy_port, "app")
        assert app.set("cart:7", "3 items")
        assert app.get("cart:7") == "3 items"
        app.close()
        primary = client(bundle, ports["redis-0"], "app")
        assert primary.get("cart:7") == "3 items"
        primary.close()

        # One exporter for the deployment: it lists every node and Sentinel, each answers.
        exporter = f"http://{bundle.settings.exporter.listen}"
        (group,) = json.loads(get(f"{exporter}/discover-cluster-nodes"))
        assert sorted(group["targets"]) == sorted(
            f"rediss://localhost:{port}" for port in ports.values()
        )
        assert {target: redis_up(exporter, target) for target in group["targets"]} == {
            target: 1 for target in group["targets"]
        }

        # The schedule's first run: a backup of the deployment, stored and listed.
        record = bundle.run_dir / lastrun.NAME
        deadline = time.monotonic() + DEADLINE
        while (done := lastrun.read_last_run(record)) is None:
            assert time.monotonic() < deadline, (bundle.run_dir / "backup.log").read_text()
            time.sleep(0.2)
        assert done.result == "success", done
        listed = run_redkeep("backup", "list", "--dir", root, "--json")
        assert listed.returncode == 0, listed.stderr
        assert [item["id"] for item in json.loads(listed.stdout)] == [done.id]

        result = run_redkeep("status", root, "--json")
        document = json.loads(result.stdout)
        assert result.returncode == 0, document["problems"]
        assert problems(document, shape("status")) == []
        proxy = document["services"]["proxy"]
        assert (proxy["pid"], proxy["port"], proxy["up"]) == (pid, proxy_port, True)
        assert document["services"]["exporter"]["up"] and document["services"]["backup"]["up"]
        helpers = {
            service: processes.locate(service, root, bundle.run_dir).pid
            for service in (EXPORTER, BACKUP)
        }
        shown = run_redkeep("status", root).stdout  # and on screen, below the nodes
        exporter_port = parse_host_port(bundle.settings.exporter.listen)[1]
        assert f"pid {helpers[EXPORTER]}, port {exporter_port}" in shown, shown
        assert f"pid {helpers[BACKUP]}; every 60 min, last run ok" in shown, shown
    finally:
        down = run_redkeep("down", root)
    assert down.returncode == 0, down.stderr
    for service in (PROXY, EXPORTER, BACKUP):
        assert list(processes.find_processes(service, root)) == []
    for service, helper in helpers.items():
        assert not processes.is_ours(helper, service, root)
    for name in ports:
        assert list(processes.find_processes(node_service(name), root)) == []
