"""The generated alert rules, Alertmanager and Prometheus configs and dashboard, checked by the
real tools: promtool (check and unit-test the rules), amtool."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from redkeep.config.schema import MonitoringSettings, RedisSettings, Settings
from redkeep.monitoring.dashboard import build_dashboard, queries
from redkeep.monitoring.rules import alerts, render_rules
from redkeep.render.bundle import render_compose
from redkeep.render.monitoring import render_alertmanager, render_prometheus
from tests.servers import require_binary

PROMTOOL_TESTS = Path(__file__).parents[1] / "promtool" / "alerts_test.yml"


def run(*args, cwd=None):
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, check=False)


def test_rules_pass_promtool_check(tmp_path):
    rules = tmp_path / "redkeep.rules.yml"
    rules.write_text(render_rules(MonitoringSettings()))
    result = run(require_binary("promtool"), "check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts(MonitoringSettings()))} rules found" in result.stdout


def promtool_test(tmp_path, settings: MonitoringSettings):
    (tmp_path / "redkeep.rules.yml").write_text(render_rules(settings))
    shutil.copy(PROMTOOL_TESTS, tmp_path / "alerts_test.yml")
    return run(require_binary("promtool"), "test", "rules", "alerts_test.yml", cwd=tmp_path)


def test_every_alert_fires_and_stays_quiet_in_promtool_unit_tests(tmp_path):
    result = promtool_test(tmp_path, MonitoringSettings())
    assert result.returncode == 0, result.stdout + result.stderr
    cases = [
        case
        for group in yaml.safe_load(PROMTOOL_TESTS.read_text())["tests"]
        for case in group["alert_rule_test"]
    ]
    firing = {case["alertname"] for case in cases if case["exp_alerts"]}
    for alert in alerts(MonitoringSettings()):
        assert alert["name"] in firing, f"{alert['name']} has no promtool test where it fires"


def test_the_unit_tests_notice_a_changed_threshold(tmp_path):
    result = promtool_test(tmp_path, MonitoringSettings(memory_warning_percent=96))
    assert result.returncode != 0
    assert "RedisHighMemory" in result.stdout + result.stderr


def test_the_data_budget_alert_follows_the_bundle_client_share():
    def rule(redis: RedisSettings) -> dict:
        groups = yaml.safe_load(render_rules(MonitoringSettings(), redis))["groups"]
        return next(r for g in groups for r in g["rules"] if r["alert"] == "RedisDataNearBudget")

    half = rule(RedisSettings(maxmemory_clients="50%"))
    assert half["expr"].endswith("> 0.45")  # 90% of the 50% left to data
    assert "50% of maxmemory" in half["annotations"]["summary"]
    assert rule(RedisSettings(maxmemory="4gb"))["expr"].endswith("> 0.675")  # auto: a quarter
    # Without a client share, data may use all of maxmemory: the alert is RedisHighMemory's.
    assert rule(RedisSettings(maxmemory_clients="0"))["expr"].endswith("> 0.9")


@pytest.mark.parametrize("targets", [[], [{"url": "rediss://cache-2:6380", "profile": "cache"}]])
def test_prometheus_config_passes_promtool(tmp_path, targets):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "redkeep.rules.yml").write_text(render_rules(MonitoringSettings()))
    settings = Settings.model_validate(
        {"exporter": {"targets": targets, "profiles": {"cache": {}}}}
    )
    rendered = render_prometheus(settings)
    jobs = [job["job_name"] for job in yaml.safe_load(rendered)["scrape_configs"]]
    assert jobs == ["redis", "redkeep-proxy", "redis-targets"][: 2 + len(targets)]
    # As init lays them out; from another directory, as the rule path is relative to the file.
    (tmp_path / "prometheus.yml").write_text(rendered)
    result = run(require_binary("promtool"), "check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "secrets",
    [
        {},
        {
            "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/XYZ",
            "TELEGRAM_BOT_TOKEN": "123:ABC",
            "TELEGRAM_CHAT_ID": "-100123",
        },
    ],
    ids=["no channels", "slack and telegram"],
)
def test_alertmanager_config_passes_amtool(tmp_path, secrets):
    path = tmp_path / "alertmanager.yml"
    path.write_text(render_alertmanager(Settings(), secrets))
    result = run(require_binary("amtool"), "check-config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    receivers = {r["name"] for r in yaml.safe_load(path.read_text())["receivers"]}
    assert receivers == ({"slack", "telegram"} if secrets else {"drop"})


def test_dashboard_covers_763_and_its_gaps():
    board = build_dashboard()
    assert board["uid"] == "redkeep-redis"
    titles = [panel["title"] for panel in board["panels"]]
    for title in (
        "Commands per second",
        "Hits and misses per second",
        "Network I/O",
        "Keys per database",
        "Expired and evicted keys per second",
        "Average time per command",
        "Total time per command",
        "Connected and blocked clients",
        "Memory usage",
        "Uptime (max)",
    ):
        assert title in titles, title
    rows = [panel["title"] for panel in board["panels"] if panel["type"] == "row"]
    for row in (
        "Replication",
        "Persistence and backups",
        "Latency",
        "Errors, ACL and posture",
        "Application",
        "Proxy",
        "Exporter",
    ):
        assert row in rows
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["instance"]["query"] == "label_values(redis_up, instance)"
    # Backups and the proxy are not Redis instances: their panels span the deployment.
    assert all("$instance" in q or "redkeep_backup" in q or "redkeep_proxy" in q for q in queries())
    json.dumps(board)  # serializable as is


def test_compose_defines_the_monitoring_stack_without_secrets():
    compose = yaml.safe_load(render_compose(Settings(), 1000, 1000))
    assert set(compose["services"]) == {
        "redis",
        "proxy",
        "exporter",
        "backup",
        "prometheus",
        "alertmanager",
        "grafana",
    }
    for name in ("prometheus", "grafana", "proxy"):
        assert all(port.startswith("127.0.0.1:") for port in compose["services"][name]["ports"])
    grafana_env = compose["services"]["grafana"]["environment"]
    assert grafana_env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD")


@pytest.mark.parametrize(("topology", "nodes"), [("sentinel", 3 + 3), ("cluster", 3 * 2)])
def test_a_ha_bundle_scrapes_every_node_through_discovery_and_the_plan(tmp_path, topology, nodes):
    settings = Settings.model_validate({"deployment": {"topology": topology}})
    rendered = render_prometheus(settings)
    (job,) = [j for j in yaml.safe_load(rendered)["scrape_configs"] if j["job_name"] == "redis"]
    assert job["metrics_path"] == "/scrape"
    assert job["http_sd_configs"][0]["url"] == "http://exporter:9121/discover-cluster-nodes"
    static = job["static_configs"][0]["targets"]
    port = settings.redis.tls_port
    assert len(static) == len(set(static)) == nodes
    # By service name, as compose/redkeep.yaml allow-lists them for the compose exporter.
    assert f"rediss://redis-0:{port}" in static
    if topology == "sentinel":
        assert f"rediss://sentinel-0:{port + 100}" in static  # the Sentinels are scraped too
    jobs = [j["job_name"] for j in yaml.safe_load(rendered)["scrape_configs"]]
    assert "redkeep-deployment" in jobs
    assert ("redkeep-proxy" in jobs) == (topology == "sentinel")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "redkeep.rules.yml").write_text(render_rules(MonitoringSettings()))
    (tmp_path / "prometheus.yml").write_text(rendered)
    result = run(require_binary("promtool"), "check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
