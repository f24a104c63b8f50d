"""The files of a bundle, as data: path, text and mode. `actions.init` writes them."""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from redkeep.config.sample import render_sample
from redkeep.config.schema import Settings
from redkeep.envfile import render_env
from redkeep.fsutil import PUBLIC_MODE, SECRET_MODE
from redkeep.monitoring.dashboard import render_dashboard
from redkeep.monitoring.rules import render_rules
from redkeep.proxy.config import build_config
from redkeep.render import nodes
from redkeep.render.acl import render_acl
from redkeep.render.compose import (
    CLUSTER_CREATE_PATH,
    COMPOSE_SETTINGS_PATH,
    render_compose,
    render_compose_cluster_create,
    render_compose_settings,
)
from redkeep.render.env import EXAMPLE_HEADER, env_header, env_values, example_values
from redkeep.render.image import redkeep_wheel, render_dockerfile
from redkeep.render.monitoring import (
    render_alertmanager,
    render_grafana_dashboards,
    render_grafana_datasource,
    render_prometheus,
)
from redkeep.render.nginx import is_address, render_nginx
from redkeep.render.redis_conf import (
    CONTAINER_BIND,
    CONTAINER_PATHS,
    image_version,
    render_redis_conf,
)
from redkeep.render.sentinel_conf import SentinelState, render_sentinel_acl


@dataclass(frozen=True)
class BundleFile:
    path: str  # relative to the bundle root
    content: str | bytes
    mode: int


def bundle_files(
    settings: Settings,
    passwords: dict[str, str],
    uid: int,
    gid: int,
    kept_hashes: dict[str, list[str]] | None = None,
    secrets: Mapping[str, str] | None = None,
    root: Path = Path("/etc/redkeep"),
    sentinel_state: SentinelState | None = None,
) -> list[BundleFile]:
    """Every generated file of a bundle except the certificates, redkeep.yaml last.

    `root` is where the bundle lives (absolute): the nginx config names its files by path.
    `sentinel_state` is what the bundle's Sentinels learned (their sentinel.conf files as they
    rewrote them), for a sentinel deployment.

    redkeep.yaml marks a bundle as complete, so it is written only after all the others.
    """
    values = env_values(settings, passwords) | dict(secrets or {})
    files = [
        *server_files(settings, passwords, kept_hashes, sentinel_state),
        BundleFile("docker-compose.yml", render_compose(settings, uid, gid), PUBLIC_MODE),
        BundleFile(".env", render_env(env_header(settings), values), SECRET_MODE),
        BundleFile(
            ".env.example", render_env(EXAMPLE_HEADER, example_values(settings)), PUBLIC_MODE
        ),
        *monitoring_files(settings, values),
        *image_files(),
        *compose_files(settings),
    ]
    if settings.deployment.topology == "standalone":
        # nginx forwards to one fixed server: it cannot follow a Sentinel failover (the proxy
        # can) nor route a cluster's keys, so sentinel and cluster bundles get no nginx config.
        files.append(
            BundleFile("nginx/redis-stream.conf", render_bundle_nginx(settings, root), PUBLIC_MODE)
        )
    return [*files, BundleFile("redkeep.yaml", render_sample(settings), PUBLIC_MODE)]


def server_files(
    settings: Settings,
    passwords: dict[str, str],
    kept_hashes: dict[str, list[str]] | None,
    sentinel_state: SentinelState | None,
) -> list[BundleFile]:
    """redis/redis.conf and redis/users.acl; for a sentinel or cluster deployment each node's
    redis.conf, each Sentinel's sentinel.conf, and each one's users.acl in redis/nodes/NAME/
    (all private: they hold the replication and Sentinel passwords or password hashes)."""
    image = settings.redis.image
    version = image_version(image)
    target = f"container {image}"
    acl = render_acl(settings, passwords, kept_hashes)
    if settings.deployment.topology == "standalone":
        conf = render_redis_conf(settings, CONTAINER_PATHS, version, CONTAINER_BIND, target)
        return [
            BundleFile("redis/redis.conf", conf, PUBLIC_MODE),
            BundleFile("redis/users.acl", acl, SECRET_MODE),
        ]
    where = nodes.layout(settings, container=True)
    state = sentinel_state or nodes.sentinel_state(settings, {}, where)
    files = []
    sentinel = settings.deployment.topology == "sentinel"
    sentinel_acl = render_sentinel_acl(passwords, kept_hashes) if sentinel else ""
    for item in nodes.node_confs(
        settings, passwords, where, state, lambda name: CONTAINER_PATHS, version,
        CONTAINER_BIND, target,
    ):  # fmt: skip
        directory = f"redis/nodes/{item.node}"
        files.append(BundleFile(f"{directory}/{item.kind}", item.text, SECRET_MODE))
        users = acl if item.kind == "redis.conf" else sentinel_acl
        files.append(BundleFile(f"{directory}/users.acl", users, SECRET_MODE))
    return files


def compose_files(settings: Settings) -> list[BundleFile]:
    """What the containers of a sentinel or cluster deployment read besides the nodes' files:
    the exporter's redkeep.yaml (every node by service name) and the cluster's forming script
    (no secret in either: the admin password reaches the script through its environment)."""
    topology = settings.deployment.topology
    if topology == "standalone":
        return []
    files = [BundleFile(COMPOSE_SETTINGS_PATH, render_compose_settings(settings), PUBLIC_MODE)]
    if topology == "cluster":
        script = render_compose_cluster_create(settings)
        files.append(BundleFile(CLUSTER_CREATE_PATH, script, PUBLIC_MODE))
    return files


def render_bundle_nginx(settings: Settings, root: Path) -> str:
    """The proxy section as an nginx stream config for nginx/redis-stream.conf.

    The bundle's files are named relative to that file's directory (nginx resolves TLS file
    paths against the directory of the `-c` file), so the bundle can move; `root` is only for
    the comment that says how to check it.
    """
    proxy = settings.proxy
    if is_address(settings.host) and not proxy.upstream_tls_name:
        # nginx verifies Redis' certificate by DNS name only: use one the certificate holds.
        names = [name for name in settings.tls.server_names if not is_address(name)]
        proxy = proxy.model_copy(update={"upstream_tls_name": names[0] if names else "localhost"})
    config = build_config(proxy, settings, Path(".."))
    return render_nginx(config, self_path=str(root / "nginx" / "redis-stream.conf"))


def monitoring_files(settings: Settings, secrets: Mapping[str, str]) -> list[BundleFile]:
    """Prometheus (config and rules), Alertmanager, Grafana (provisioning and dashboard)."""
    return [
        BundleFile("prometheus/prometheus.yml", render_prometheus(settings), PUBLIC_MODE),
        BundleFile(
            "prometheus/rules/redkeep.rules.yml",
            render_rules(settings.monitoring, settings.redis),
            PUBLIC_MODE,
        ),
        BundleFile(
            "alertmanager/alertmanager.yml", render_alertmanager(settings, secrets), SECRET_MODE
        ),
        BundleFile(
            "grafana/provisioning/datasources/prometheus.yml",
            render_grafana_datasource(),
            PUBLIC_MODE,
        ),
        BundleFile(
            "grafana/provisioning/dashboards/redkeep.yml", render_grafana_dashboards(), PUBLIC_MODE
        ),
        BundleFile("grafana/dashboards/redkeep.json", render_dashboard(), PUBLIC_MODE),
    ]


def image_files() -> list[BundleFile]:
    """The build context of redkeep's own image: a wheel of this redkeep and a Dockerfile."""
    name, wheel = redkeep_wheel()
    return [
        BundleFile(f"image/{name}", wheel, PUBLIC_MODE),
        BundleFile("image/Dockerfile", render_dockerfile(name), PUBLIC_MODE),
    ]
