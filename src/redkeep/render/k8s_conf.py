"""What runs inside the Kubernetes pods: redis.conf, sentinel.conf, the ACL and the scripts.

`render/k8s.py` wraps them into ConfigMaps and Secrets. Pods reach each other by the stable DNS
names of their StatefulSet (`redis-0.redis.NAMESPACE.svc.DOMAIN`), so every address here is
one of those names, never a pod IP (it changes when a pod restarts). Whatever depends on the
pod itself (its own name, whom a replica follows after a failover) is written by a script at
start into a file that redis.conf includes; whatever holds a secret comes from the Secret.
"""

from dataclasses import dataclass

from redkeep import __version__
from redkeep.config.deployment import BUS_PORT_OFFSET, plan_nodes
from redkeep.config.schema import Settings
from redkeep.render import cluster_form, conf_quote, templates
from redkeep.render.acl import password_hash
from redkeep.render.cluster_form import CLUSTER_SLOTS, slot_ranges  # noqa: F401 - re-exported
from redkeep.render.redis_conf import CONTAINER_BIND, ConfPaths, image_version, render_redis_conf

DATA = "redis"  # the data StatefulSet, its headless Service and the pods' name prefix
SENTINEL = "sentinel"  # the Sentinels' StatefulSet and headless Service
SENTINEL_PORT = 26379  # Sentinel's usual port; every pod has its own address, so one port
# Inside the pods: the ConfigMap, the Secrets and the writable volumes.
CONFIG_DIR = "/etc/redis"
SECRET_DIR = "/etc/redis-secret"  # noqa: S105 - where the Secret is mounted
TLS_DIR = "/tls"
RUN_DIR = "/run/redis"  # emptyDir (memory): the ACL file copy and the per-pod include
DATA_DIR = "/data"
SENTINEL_CONFIG_DIR = "/etc/sentinel"
SENTINEL_DIR = "/sentinel"  # emptyDir: the sentinel.conf Sentinel rewrites
K8S_PATHS = ConfPaths(tls=TLS_DIR, redis=RUN_DIR, data=DATA_DIR)
NODE_CONF = f"{RUN_DIR}/node.conf"
AUTH_CONF = f"{SECRET_DIR}/auth.conf"

# The users on the Sentinels themselves (the same on every Sentinel; no default user). Not the
# local bundle's render/sentinel_roles.yaml: in k8s a data pod asks the Sentinels at start whom
# to replicate (as `replication`), and the init container asks as `sentinel`.
SENTINEL_ROLES = {
    "admin": ["on", "~*", "&*", "+@all"],
    # Probes and the exporter: read the Sentinels' state, change nothing.
    "exporter": [
        "on", "resetchannels", "-@all", "+ping", "+info", "+role", "+sentinel|masters",
        "+sentinel|master", "+sentinel|replicas", "+sentinel|sentinels", "+sentinel|ckquorum",
        "+sentinel|get-master-addr-by-name",
    ],
    # Applications ask where the primary is and follow the failover events.
    "app": [
        "on", "resetchannels", "&*", "-@all", "+ping", "+role", "+client|setname",
        "+sentinel|get-master-addr-by-name", "+sentinel|masters", "+sentinel|master",
        "+sentinel|replicas", "+sentinel|sentinels", "+subscribe", "+psubscribe",
        "+unsubscribe", "+punsubscribe",
    ],
    # The other Sentinels: hello messages, the vote on a failover, and (the init container)
    # asking which node is the primary now.
    "sentinel": [
        "on", "resetchannels", "&__sentinel__:hello", "-@all", "+ping", "+publish",
        "+client|setname", "+sentinel|is-master-down-by-addr",
        "+sentinel|get-master-addr-by-name",
    ],
    # A data pod asks the Sentinels at start whom to replicate (after a failover that is not
    # the planned primary): that one question only.
    "replication": ["on", "resetchannels", "-@all", "+ping", "+sentinel|get-master-addr-by-name"],
}  # fmt: skip


@dataclass(frozen=True)
class K8sNames:
    """DNS names in the cluster: Services and the pods of the StatefulSets."""

    namespace: str
    domain: str = "cluster.local"

    def service(self, name: str) -> str:
        return f"{name}.{self.namespace}.svc.{self.domain}"

    def pod(self, pod: str, service: str) -> str:
        return f"{pod}.{self.service(service)}"

    def service_names(self, name: str) -> list[str]:
        """Every name a client in the cluster may use for a Service."""
        return [
            name,
            f"{name}.{self.namespace}",
            f"{name}.{self.namespace}.svc",
            self.service(name),
        ]


@dataclass(frozen=True)
class Layout:
    """The pods of one deployment and their addresses."""

    settings: Settings
    names: K8sNames

    @property
    def topology(self) -> str:
        return self.settings.deployment.topology

    @property
    def port(self) -> int:
        return self.settings.redis.tls_port

    @property
    def bus_port(self) -> int:
        return self.port + BUS_PORT_OFFSET

    def planned(self):
        return plan_nodes(self.settings.deployment, self.port)

    @property
    def data_pods(self) -> list[str]:
        """redis-0.. (a standalone server is the StatefulSet's one pod, redis-0)."""
        count = sum(1 for node in self.planned() if node.holds_data)
        return [f"{DATA}-{i}" for i in range(count)]

    @property
    def sentinel_pods(self) -> list[str]:
        return [node.name for node in self.planned() if not node.holds_data]

    def data_fqdn(self, pod: str) -> str:
        return self.names.pod(pod, DATA)

    def sentinel_fqdn(self, pod: str) -> str:
        return self.names.pod(pod, SENTINEL)

    @property
    def pod_domain(self) -> str:
        """What follows a data pod's name in its DNS name."""
        return self.names.service(DATA)


def k8s_settings(settings: Settings) -> Settings:
    """The settings the pods' redis.conf is rendered from: the bundle's, with the HA safety
    settings a replicated deployment needs."""
    if settings.deployment.topology == "standalone":
        return settings
    # 7.0's default delay of 5 s let Sentinel promote a replica that had never finished its
    # first sync (an acknowledged write was lost): start the snapshot for a replica at once.
    redis = settings.redis.model_copy(update={"repl_diskless_sync_delay": 0})
    return settings.model_copy(update={"redis": redis})


def render_node_conf(layout: Layout) -> str:
    """redis.conf of every data pod: the bundle's hardened base, then the HA lines."""
    settings = k8s_settings(layout.settings)
    base = render_redis_conf(
        settings,
        K8S_PATHS,
        image_version(settings.redis.image),
        CONTAINER_BIND,
        target=f"kubernetes, {layout.topology}, {settings.redis.image}",
    )
    deployment = settings.deployment
    note = "# For Kubernetes (`redkeep render k8s`): change redkeep.yaml and render again.\n"
    return (
        note
        + base
        + templates()
        .get_template("k8s-redis-ha.conf.j2")
        .render(
            topology=layout.topology,
            tls_dir=TLS_DIR,
            min_replicas=deployment.writes_need_replicas(),
            max_lag=deployment.min_replicas_max_lag,
            node_timeout=deployment.cluster_node_timeout_milliseconds,
            data_dir=DATA_DIR,
            port=layout.port,
            bus_port=layout.bus_port,
            node_conf=NODE_CONF,
            auth_conf=AUTH_CONF,
        )
    )


def render_sentinel_conf(layout: Layout) -> str:
    """sentinel.conf without secrets or the pod's own name (the init container adds them)."""
    settings = layout.settings
    deployment = settings.deployment
    return (
        templates()
        .get_template("k8s-sentinel.conf.j2")
        .render(
            name=settings.name,
            version=__version__,
            tls=settings.tls,
            tls_dir=TLS_DIR,
            port=SENTINEL_PORT,
            sentinel_dir=SENTINEL_DIR,
            master=deployment.master_name,
            primary=layout.data_fqdn(layout.data_pods[0]),
            primary_port=layout.port,
            quorum=deployment.sentinel_quorum(),
            down_after=deployment.down_after_milliseconds,
            failover_timeout=deployment.failover_timeout_milliseconds,
        )
    )


def render_auth_conf(passwords: dict[str, str]) -> str:
    """The data pods' include with the replication password (from the Secret)."""
    return (
        "# Replicas log in to their primary as `replication` with this password.\n"
        f"masterauth {conf_quote(passwords['replication'])}\n"
    )


def render_sentinel_auth(layout: Layout, passwords: dict[str, str]) -> str:
    """The Sentinels' secret lines: passwords towards the data nodes and each other, and
    their own ACL users (hashed passwords)."""
    master = layout.settings.deployment.master_name
    sentinel = conf_quote(passwords["sentinel"])
    lines = [
        "# Sentinel logs in to the data nodes, and to the other Sentinels, as `sentinel`.",
        f"sentinel auth-pass {master} {sentinel}",
        f"sentinel sentinel-pass {sentinel}",
        "# Who may talk to this Sentinel. `default` is closed, as on the data nodes.",
        "user default off resetpass ~* &* +@all",
    ]
    for role, rules in SENTINEL_ROLES.items():
        lines.append(f"user {role} #{password_hash(passwords[role])} {' '.join(rules)}")
    return "\n".join(lines) + "\n"


def render_scripts(layout: Layout) -> dict[str, str]:
    """The shell scripts of the ConfigMaps (POSIX sh, with what the Redis image has)."""
    settings = layout.settings
    common = {
        "name": settings.name,
        "version": __version__,
        "topology": layout.topology,
        "tls_dir": TLS_DIR,
        "port": layout.port,
        "sentinel_port": SENTINEL_PORT,
        "master": settings.deployment.master_name,
    }
    sentinels = [layout.sentinel_fqdn(pod) for pod in layout.sentinel_pods]
    primary = layout.data_fqdn(layout.data_pods[0])
    scripts = {
        "start.sh": templates()
        .get_template("k8s-start.sh.j2")
        .render(
            **common,
            pod_domain=layout.pod_domain,
            config_dir=CONFIG_DIR,
            secret_dir=SECRET_DIR,
            run_dir=RUN_DIR,
            node_conf=NODE_CONF,
            sentinels=sentinels,
            primary=primary,
        ),
        "probe.sh": templates().get_template("k8s-probe.sh.j2").render(**common),
    }
    if layout.topology == "sentinel":
        scripts["sentinel-init.sh"] = (
            templates()
            .get_template("k8s-sentinel-init.sh.j2")
            .render(
                **common,
                sentinel_domain=layout.names.service(SENTINEL),
                sentinels=sentinels,
                primary=primary,
                quorum=settings.deployment.sentinel_quorum(),
                config_dir=SENTINEL_CONFIG_DIR,
                secret_dir=SECRET_DIR,
                sentinel_dir=SENTINEL_DIR,
            )
        )
    if layout.topology == "cluster":
        scripts["cluster-create.sh"] = render_cluster_create(layout, common)
    return scripts


def render_cluster_create(layout: Layout, common: dict) -> str:
    """The formation Job's script (shared with docker-compose: render/cluster_form.py): every
    pod by its DNS name on the one port all pods use."""
    return cluster_form.render_cluster_create(
        common["name"],
        layout.planned(),
        lambda node: cluster_form.Endpoint(
            layout.data_fqdn(node.name), layout.port, layout.bus_port
        ),
        TLS_DIR,
        "the Kubernetes Job",
    )
