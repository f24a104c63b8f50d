"""docker-compose.yml, and for a sentinel or cluster deployment what its containers need
besides: the script of the one-shot service that forms a cluster, and the compose view of
redkeep.yaml that the exporter reads (every node by its service name)."""

import yaml

from redkeep import __version__
from redkeep.config.schema import Settings
from redkeep.redis.target import parse_host_port
from redkeep.render import templates
from redkeep.render.cluster_form import Endpoint, render_cluster_create
from redkeep.render.nodes import planned as planned_nodes
from redkeep.render.redis_conf import CONTAINER_PATHS

CLUSTER_CREATE_PATH = "redis/cluster-create.sh"  # in the bundle
COMPOSE_SETTINGS_PATH = "compose/redkeep.yaml"  # in the bundle
# Where the one-shot service finds the script, and where the exporter and the proxy find
# the bundle (read-only).
CLUSTER_CREATE_MOUNT = "/usr/local/etc/redkeep/cluster-create.sh"
BUNDLE_MOUNT = "/bundle"
EXPORTER_LISTEN = "0.0.0.0:9121"
# The exporter's profile for the nodes; relative paths are the bundle's (mounted read-only).
NODE_PROFILE = {
    "username": "exporter",
    "password_env": "REDIS_EXPORTER_PASSWORD",
    "tls_ca": "tls/ca.crt",
    "tls_cert": "tls/client.crt",
    "tls_key": "tls/client.key",
}


def render_compose(settings: Settings, uid: int, gid: int) -> str:
    """docker-compose.yml: Redis (TLS port only, health check over TLS + ACL), the proxy, the
    exporter, scheduled backups, Prometheus, Alertmanager and Grafana. A sentinel or cluster
    deployment has one service per node and per Sentinel instead of Redis, a one-shot service
    that forms a cluster, the exporter scraping every node by name, behind Sentinel the proxy
    that follows the primary, and the backup schedule of the whole deployment (`backup run
    --dir` on the compose view of redkeep.yaml, which reaches every node by name)."""
    topology = settings.deployment.topology
    planned = planned_nodes(settings) if topology != "standalone" else ()
    nodes = [
        {
            "name": node.name,
            "role": node.role,
            "port": node.port,
            "bus_port": node.bus_port,
            "shard": node.shard,
            "topology": topology,
            "conf": "sentinel.conf" if node.role == "sentinel" else "redis.conf",
        }
        for node in planned
    ]
    return (
        templates()
        .get_template("docker-compose.yml.j2")
        .render(
            name=settings.name,
            version=__version__,
            redis=settings.redis,
            publish_address=settings.docker.publish_address,
            uid=uid,
            gid=gid,
            backup_minutes=settings.backup.interval_minutes or 1440,
            proxy={
                "port": parse_host_port(settings.proxy.listen)[1],
                "enabled": settings.proxy.enabled,
            },
            nodes=nodes,
            topology=topology,
            master_name=settings.deployment.master_name,
            cluster_create=CLUSTER_CREATE_MOUNT,
            compose_settings=COMPOSE_SETTINGS_PATH,
            bundle=BUNDLE_MOUNT,
            exporter_listen=EXPORTER_LISTEN,
        )
    )


def render_compose_cluster_create(settings: Settings) -> str:
    """The forming script of the `cluster-create` service: each node by its service name, at
    its own port (as the compose file publishes it)."""
    return render_cluster_create(
        settings.name,
        planned_nodes(settings),
        lambda node: Endpoint(node.name, node.port, node.bus_port),
        CONTAINER_PATHS.tls,
        "docker-compose's cluster-create service",
    )


def render_compose_settings(settings: Settings) -> str:
    """redkeep.yaml as redkeep's containers in docker-compose read it: the bundle's settings,
    with every node reached by its service name (the name its certificate holds): the
    exporter's /scrape targets, logged in to as `exporter` with the bundle's client
    certificate, and the deployment's nodes as `backup run --dir` takes them."""
    data = settings.model_dump(mode="json")
    data["deployment"]["nodes_by_name"] = True
    data["exporter"] |= {
        "listen": EXPORTER_LISTEN,
        "targets": [
            {"url": f"rediss://{node.name}:{node.port}", "profile": "node"}
            for node in planned_nodes(settings)
        ],
        "profiles": {"node": NODE_PROFILE},
    }
    checked = Settings.model_validate(data)  # what the container will load must load
    header = (
        f"# redkeep.yaml of the exporter and the backups in docker-compose, rendered by redkeep "
        f"{__version__} from\n# ../redkeep.yaml: edit that file and run `redkeep init DIR "
        "--force`, not this one. It\n# reaches every node by its compose service name (and "
        "lists them as /scrape targets).\n"
    )
    return header + yaml.safe_dump(checked.model_dump(mode="json"), sort_keys=False)
