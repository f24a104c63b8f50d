"""A real Prometheus scrapes the exporter of a running bundle (and a replica through /scrape);
every PromQL query of the dashboard and every alert's signal must return data."""

import json
import os
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
import redis
import yaml

from redkeep.bundle import Bundle
from redkeep.config.schema import MonitoringSettings
from redkeep.monitoring.dashboard import queries
from redkeep.monitoring.rules import alerts
from tests.conftest import run_redkeep
from tests.integration.conftest import client_as, start_bundle, stop_bundle
from tests.servers import RedisServer, free_port, require_binary

GRID_CHECKS = yaml.safe_load(
    (
        __import__("pathlib").Path(__file__).parents[3] / "examples" / "gridtokenx-checks.yaml"
    ).read_text()
)["checks"]


def api(prometheus: str, path: str) -> dict:
    with urllib.request.urlopen(f"{prometheus}/api/v1/{path}", timeout=10) as response:  # noqa: S310
        answer = json.loads(response.read())
    assert answer["status"] == "success", (path, answer)
    return answer["data"]


def query(prometheus: str, expr: str) -> list:
    return api(prometheus, "query?" + urllib.parse.urlencode({"query": expr}))["result"]


def ready(prometheus: str) -> bool:
    try:
        with urllib.request.urlopen(f"{prometheus}/-/ready", timeout=5) as response:  # noqa: S310
            return response.status == 200
    except OSError:
        return False


def concrete(expr: str) -> str:
    """A dashboard query as Grafana would send it for "all instances", last 30 s."""
    return expr.replace("$instance", ".+").replace("$__rate_interval", "30s")


@pytest.fixture
def observed_bundle(tmp_path, redis_binary):
    """A bundle with the plan's checks, a backup, a replica, an error reply: every signal."""
    root = tmp_path / "stack"
    exporter_port = free_port()
    env = {
        "REDKEEP_REDIS__REPL_DISKLESS_SYNC_DELAY": "0",
        "REDKEEP_EXPORTER__LISTEN": f"127.0.0.1:{exporter_port}",
    }
    assert run_redkeep("init", root, "--tls-port", free_port(), env=env).returncode == 0
    replica_port = free_port()
    config = yaml.safe_load((root / "redkeep.yaml").read_text())
    config["exporter"]["checks"] = [dict(check, interval_seconds=1) for check in GRID_CHECKS]
    config["exporter"]["targets"] = [
        {"url": f"redis://127.0.0.1:{replica_port}", "profile": "replica"}
    ]
    config["exporter"]["profiles"] = {"replica": {}}
    (root / "redkeep.yaml").write_text(yaml.safe_dump(config))
    assert run_redkeep("init", root, "--force", env=env).returncode == 0  # ACL for the checks
    bundle = start_bundle(root, env=env)
    replica = None
    try:
        admin = client_as(bundle, "admin")
        admin.hset("market:status", "updated_at", int(time.time()))
        admin.hset("stats:session_cache", mapping={"hits": 10, "misses": 2})
        admin.hset("stats:tx_cache", mapping={"hits": 3, "misses": 1})
        admin.set("ratelimit:a", 1)
        with pytest.raises(redis.exceptions.NoPermissionError):
            client_as(bundle, "app").execute_command("FLUSHALL")
        assert run_redkeep("backup", "run", "--dir", root).returncode == 0
        tls = bundle.tls
        replica = RedisServer(
            redis_binary,
            tmp_path / "replica",
            [
                f"replicaof localhost {bundle.settings.redis.tls_port}",
                "tls-replication yes",
                f"tls-cert-file {tls.client_cert()}",
                f"tls-key-file {tls.client_key()}",
                f"tls-ca-cert-file {tls.ca_cert}",
                "masteruser backup",
                f"masterauth {bundle.password('backup')}",
            ],
            port=replica_port,
        ).start()
        yield bundle, exporter_port, replica_port
    finally:
        if replica is not None:
            replica.stop()
        stop_bundle(bundle)


def start_prometheus(tmp_path, bundle_root, exporter_port: int) -> tuple[str, subprocess.Popen]:
    """Prometheus on the bundle's own prometheus.yml and rules, pointed at the local exporter
    and proxy."""
    port = free_port()
    rendered = (bundle_root / "prometheus" / "prometheus.yml").read_text()
    proxy_metrics = Bundle(bundle_root).settings.proxy.metrics_listen
    rendered = rendered.replace("exporter:9121", f"127.0.0.1:{exporter_port}")
    config = yaml.safe_load(rendered.replace("proxy:9122", proxy_metrics))
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(bundle_root / "prometheus" / "rules" / "redkeep.rules.yml")]
    del config["alerting"]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [
            require_binary("prometheus"),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    return f"http://127.0.0.1:{port}", process


def standalone_alerts() -> list[dict]:
    """The alerts whose signal a standalone server gives (not Sentinel's, not the cluster's)."""
    return [alert for alert in alerts(MonitoringSettings()) if "needs" not in alert]


def test_every_dashboard_query_and_alert_signal_returns_data(observed_bundle, tmp_path):
    bundle, exporter_port, replica_port = observed_bundle
    prometheus, process = start_prometheus(tmp_path, bundle.root, exporter_port)
    try:
        deadline = time.monotonic() + 60
        pending = {concrete(expr) for expr in queries()}
        pending |= {concrete(alert["signal"]) for alert in standalone_alerts()}
        while pending:
            assert process.poll() is None, "prometheus exited"
            assert time.monotonic() < deadline, f"no data for: {sorted(pending)}"
            time.sleep(1)
            if ready(prometheus):
                pending = {expr for expr in pending if not query(prometheus, expr)}
        targets = query(prometheus, "up")
        assert {t["metric"]["job"] for t in targets} == {"redis", "redis-targets", "redkeep-proxy"}
        replica = f"redis://127.0.0.1:{replica_port}"
        link = query(prometheus, f'redis_master_link_up{{instance="{replica}"}}')
        assert link and link[0]["value"][1] == "1"
        rules = api(prometheus, "rules")["groups"]
        loaded = {rule["name"]: rule["health"] for group in rules for rule in group["rules"]}
        expected = {alert["name"] for alert in alerts(MonitoringSettings())}
        assert set(loaded) == expected
        assert set(loaded.values()) == {"ok"}, loaded
    finally:
        process.terminate()
        process.wait(timeout=20)
