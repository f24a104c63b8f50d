"""`up` of a sentinel deployment runs the proxy, which follows the primary the Sentinels name:
an application writes and reads through it, Redis itself holds the write on the primary,
`status --json` lists the proxy, and `down` stops it with the nodes.
"""

import json

from redkeep.bundle import Bundle
from redkeep.config.deployment import SENTINEL_PORT_OFFSET
from redkeep.redis.target import parse_host_port
from redkeep.render import nodes as node_files
from redkeep.stack import processes
from redkeep.stack.processes import PROXY, node_service
from tests.conftest import run_redkeep
from tests.integration.test_sentinel import FAST, client
from tests.jsonshape import problems, shape
from tests.servers import free_port_span


def test_up_runs_the_proxy_in_front_of_the_sentinels_primary(tmp_path, redis_binary):
    base = free_port_span([0, 1, SENTINEL_PORT_OFFSET, SENTINEL_PORT_OFFSET + 2])
    root = tmp_path / "ha"
    init = run_redkeep(
        "init", root, "--topology", "sentinel", "--replicas", "1", "--sentinels", "3",
        "--tls-port", base, env=FAST,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    bundle = Bundle(root)
    ports = {node.name: node.port for node in node_files.planned(bundle.settings)}
    proxy_port = parse_host_port(bundle.settings.proxy.listen)[1]
    up = run_redkeep("up", root, "--detach")
    try:
        assert up.returncode == 0, up.stderr
        assert f"proxy on {bundle.settings.proxy.listen}" in up.stdout
        assert "the exporter and the backup schedule" in up.stdout  # still not run
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

        result = run_redkeep("status", root, "--json")
        document = json.loads(result.stdout)
        assert result.returncode == 0, document["problems"]
        assert problems(document, shape("status")) == []
        proxy = document["services"]["proxy"]
        assert (proxy["pid"], proxy["port"], proxy["up"]) == (pid, proxy_port, True)
    finally:
        down = run_redkeep("down", root)
    assert down.returncode == 0, down.stderr
    assert list(processes.find_processes(PROXY, root)) == []
    for name in ports:
        assert list(processes.find_processes(node_service(name), root)) == []
