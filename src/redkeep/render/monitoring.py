"""Prometheus, Alertmanager and Grafana configuration of a bundle, as data rendered to YAML."""

from collections.abc import Mapping

import yaml

from redkeep.config.deployment import plan_nodes
from redkeep.config.schema import Settings

EXPORTER_PORT = 9121
PROXY_METRICS_PORT = 9122  # inside docker-compose (see the proxy service)


def _yaml(header: str, data: dict) -> str:
    return f"# {header}\n" + yaml.safe_dump(data, sort_keys=False, width=100)


COMPOSE_EXPORTER = f"exporter:{EXPORTER_PORT}"  # the exporter service of docker-compose.yml


def to_exporter(exporter: str = COMPOSE_EXPORTER) -> list[dict]:
    """The multi-target pattern: the Redis URL becomes ?target= and the instance label, while
    the request itself goes to the exporter. (Fresh each time: YAML would alias a shared one.)"""
    return [
        {"source_labels": ["__address__"], "target_label": "__param_target"},
        {"source_labels": ["__param_target"], "target_label": "instance"},
        {"target_label": "__address__", "replacement": exporter},
    ]


def node_urls(settings: Settings) -> list[str]:
    """Every node and Sentinel of the plan by its compose service name, as the compose
    exporter's /scrape accepts them (compose/redkeep.yaml allow-lists the nodes so)."""
    planned = plan_nodes(settings.deployment, settings.redis.tls_port)
    return [f"rediss://{node.name}:{node.port}" for node in planned]


def redis_jobs(settings: Settings, exporter: str, urls: list[str]) -> list[dict]:
    """The jobs that scrape the deployment through the exporter at `exporter` (HOST:PORT).

    Standalone: its Redis at /metrics. Sentinel and cluster: every node (`urls`, as the
    exporter's /scrape accepts them) at /scrape?target=, and the deployment's own metrics
    (application checks, backup and audit results) once at /metrics: RedkeepBackupTooOld and
    the check alerts read them."""
    labels = {"cluster": settings.name}
    if settings.deployment.topology == "standalone":
        return [
            {"job_name": "redis", "static_configs": [{"targets": [exporter], "labels": labels}]}
        ]
    # Discovery follows the deployment (nodes added later, Sentinels); the plan's nodes stay
    # listed when discovery cannot answer (every node down at once, the exporter restarting).
    nodes = {
        "job_name": "redis",
        "metrics_path": "/scrape",
        "http_sd_configs": [
            {"url": f"http://{exporter}/discover-cluster-nodes", "refresh_interval": "1m"}
        ],
        "static_configs": [{"targets": urls}],
        "relabel_configs": [
            *to_exporter(exporter),
            {"target_label": "cluster", "replacement": settings.name},
        ],
    }
    deployment = {
        "job_name": "redkeep-deployment",
        "static_configs": [{"targets": [exporter], "labels": labels}],
    }
    return [nodes, deployment]


def render_prometheus(settings: Settings) -> str:
    """prometheus.yml: scrape the exporter, load redkeep's rules, send alerts to Alertmanager.

    A standalone bundle's exporter serves its Redis at /metrics; a Sentinel or cluster bundle's
    serves each node at /scrape?target=, the nodes listed by /discover-cluster-nodes."""
    jobs = redis_jobs(settings, COMPOSE_EXPORTER, node_urls(settings))
    # A cluster bundle runs no proxy (it is no cluster router): no job that could only fail.
    if settings.proxy.enabled and settings.deployment.topology != "cluster":
        jobs.append(
            {
                "job_name": "redkeep-proxy",
                "static_configs": [
                    {
                        "targets": [f"proxy:{PROXY_METRICS_PORT}"],
                        "labels": {"cluster": settings.name},
                    }
                ],
            }
        )
    if settings.exporter.targets:
        jobs.append(
            {
                "job_name": "redis-targets",
                "metrics_path": "/scrape",
                # No `cluster` label: listed targets need not be one replication group.
                "static_configs": [
                    {"targets": [target.url for target in settings.exporter.targets]}
                ],
                "relabel_configs": to_exporter(),
            }
        )
    data = {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        # Relative to this file's directory (Prometheus resolves it so): rules/ beside it on
        # the host and in the container alike (./prometheus is mounted at /etc/prometheus).
        "rule_files": ["rules/redkeep.rules.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]},
        "scrape_configs": jobs,
    }
    return _yaml("Prometheus for the redkeep bundle; rules in rules/redkeep.rules.yml.", data)


def render_alertmanager(settings: Settings, secrets: Mapping[str, str]) -> str:
    """alertmanager.yml with a Slack and a Telegram receiver when .env configures them.

    The webhook URL and the bot token are read from .env when the bundle is rendered (the
    file is written 0600); without them alerts go to a receiver that drops them.
    """
    receivers = []
    if secrets.get("SLACK_WEBHOOK_URL"):
        receivers.append(
            {
                "name": "slack",
                "slack_configs": [
                    {
                        "api_url": secrets["SLACK_WEBHOOK_URL"],
                        "send_resolved": True,
                        "title": "{{ .CommonAnnotations.summary }}",
                        "text": "{{ .CommonAnnotations.description }}",
                    }
                ],
            }
        )
    chat = secrets.get("TELEGRAM_CHAT_ID", "")
    if secrets.get("TELEGRAM_BOT_TOKEN") and chat.lstrip("-").isdigit():
        receivers.append(
            {
                "name": "telegram",
                "telegram_configs": [
                    {
                        "bot_token": secrets["TELEGRAM_BOT_TOKEN"],
                        "chat_id": int(chat),
                        "send_resolved": True,
                    }
                ],
            }
        )
    names = [receiver["name"] for receiver in receivers]
    route = {
        "receiver": names[0] if names else "drop",
        "group_by": ["alertname", "instance"],
        "group_wait": "30s",
        "group_interval": "5m",
        "repeat_interval": "4h",
        "routes": [{"receiver": name, "continue": True} for name in names[1:]],
    }
    data = {"route": route, "receivers": receivers or [{"name": "drop"}]}
    header = (
        f"Alertmanager for {settings.name}. Holds secrets from .env: keep it 0600; "
        "`redkeep init --force` re-renders it after .env changes."
    )
    return _yaml(header, data)


def render_grafana_datasource() -> str:
    data = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "uid": "prometheus",
                "type": "prometheus",
                "access": "proxy",
                "url": "http://prometheus:9090",
                "isDefault": True,
            }
        ],
    }
    return _yaml("Grafana data source provisioning.", data)


def render_grafana_dashboards() -> str:
    data = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "redkeep",
                "type": "file",
                "disableDeletion": True,
                # Grafana resolves a relative path against its working directory, not this
                # file's: the mount point of ./grafana/dashboards (docker-compose.yml).
                "options": {"path": "/var/lib/grafana/dashboards"},
            }
        ],
    }
    return _yaml("Grafana dashboard provisioning.", data)
