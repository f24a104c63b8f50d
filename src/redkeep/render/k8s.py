"""`redkeep render k8s`: the bundle's deployment as plain Kubernetes manifests (pure data).

`render_manifests` returns every object but the Secrets, `render_secrets` the Secrets (written
to a separate file, 0600, for the operator's secret store); the manifests refer to the Secrets
by name and never hold a secret. Standalone, sentinel and cluster share one layout: a data
StatefulSet `redis` behind a headless Service of the same name (pod `redis-0` is
`redis-0.redis.NAMESPACE.svc.DOMAIN`), Sentinels in a StatefulSet `sentinel`, the exporter
(and, but for a cluster, the proxy) as Deployments of the redkeep image the bundle builds.
`render/k8s_conf.py` writes what runs inside the pods.
"""

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

from redkeep import __version__
from redkeep.config.schema import MIB, Settings
from redkeep.envfile import render_env
from redkeep.errors import UsageError
from redkeep.redis.target import parse_host_port
from redkeep.render.env import PASSWORD_KEYS
from redkeep.render.k8s_conf import (
    CONFIG_DIR,
    DATA,
    DATA_DIR,
    RUN_DIR,
    SECRET_DIR,
    SENTINEL,
    SENTINEL_CONFIG_DIR,
    SENTINEL_DIR,
    SENTINEL_PORT,
    TLS_DIR,
    K8sNames,
    Layout,
    render_auth_conf,
    render_node_conf,
    render_scripts,
    render_sentinel_auth,
    render_sentinel_conf,
)
from redkeep.render.monitoring import redis_jobs

Object = dict[str, Any]

DATA_CLIENT = "redis-client"  # ClusterIP Service of the data pods (standalone, cluster)
SENTINEL_CLIENT = "sentinel-client"  # ClusterIP Service of the Sentinels
PROXY = "proxy"
EXPORTER = "exporter"
CLUSTER_CREATE = "cluster-create"
REDIS_CONFIG = "redis-config"  # ConfigMap: redis.conf, sentinel.conf, the scripts
REDKEEP_CONFIG = "redkeep-config"  # ConfigMap: redkeep.yaml for the proxy and the exporter
TLS_SECRET = "redis-tls"  # noqa: S105 - a Secret's name, not a secret
USERS_SECRET = "redis-users"  # noqa: S105 - a Secret's name, not a secret
PROXY_TLS_SECRET = "proxy-tls"  # noqa: S105 - a Secret's name, not a secret
APP_SECRET = "app-credentials"  # noqa: S105 - a Secret's name, not a secret
PROXY_ENV = "proxy.env"  # the key of the proxy's .env in the users Secret (sentinel)
PROXY_ENV_HEADER = "# The proxy's .env in Kubernetes: the password it asks the Sentinels with."
# Pods that may open connections to the data pods of a sentinel or cluster deployment
# themselves (clients that follow Sentinel or Cluster redirections) carry this label.
CLIENT_LABEL = "redkeep/client"
CONFIG_ANNOTATION = "redkeep/config-sha256"
EXPORTER_PORT = 9121
PROXY_METRICS_PORT = 9122
REDIS_UID = 999  # the `redis` user of the official Redis images
REDKEEP_UID = 65534  # image/Dockerfile: USER 65534:65534
BUNDLE_MOUNT = "/bundle"  # where the proxy and the exporter find redkeep.yaml
# The proxy sees pods' addresses: private networks, as in docker-compose.yml.
PRIVATE_NETWORKS = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"]
GIB = 1024 * MIB
SECRET_MODE = 0o440  # read through the pod's fsGroup: the files are root's
TLS_KEYS = ["ca.crt", "server.crt", "server.key", "client.crt", "client.key"]
CLIENT_TLS_KEYS = ["ca.crt", "client.crt", "client.key"]  # what a client of the pods needs
CONFIG_MODE = 0o444
HEADER = (
    '# Kubernetes manifests of the redkeep deployment "{name}" ({topology}), rendered by\n'
    "# redkeep {version} from the bundle. No secret is in this file: the pods read them from\n"
    "# the Secrets in secrets.yaml. Apply namespace.yaml, then secrets.yaml (through your\n"
    "# secret store), then this file. Validated offline only (see docs/kubernetes.md).\n"
)
PROMETHEUS_HEADER = (
    "# Prometheus scrape_configs for the redkeep deployment in Kubernetes, rendered by redkeep:\n"
    "# add these jobs to your Prometheus (the exporter Service's annotations name /metrics\n"
    "# only; every pod is at /scrape?target=, listed by /discover-cluster-nodes).\n"
)
SECRETS_HEADER = (
    '# SECRETS of the redkeep deployment "{name}": passwords, the ACL file, TLS keys.\n'
    "# Keep this file private (mode 0600), never commit it, and apply it through your\n"
    "# secret store (sealed-secrets, SOPS, External Secrets, Vault...) rather than by hand;\n"
    "# `kubectl apply -f` works too. Delete it once applied: `redkeep render k8s` writes it\n"
    "# again from the bundle. Its server certificates are issued anew at every render.\n"
)


@dataclass(frozen=True)
class K8sOptions:
    namespace: str
    domain: str = "cluster.local"
    image: str = f"redkeep:{__version__}"  # the redkeep image the bundle's image/ builds
    storage_class: str | None = None


@dataclass(frozen=True)
class SecretMaterial:
    """What the Secrets hold: passwords by ACL user, the data pods' ACL file, PEM texts."""

    passwords: dict[str, str]
    acl: str
    ca_cert: str
    client_cert: str
    client_key: str
    server_cert: str  # data pods and Sentinels: names every pod and Service (server_names)
    server_key: str
    proxy_cert: str  # the proxy's side towards applications (proxy_names)
    proxy_key: str


# Kubernetes names: a namespace is an RFC 1123 label; the cluster domain is DNS labels.
DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
NAMESPACE = re.compile(DNS_LABEL)
DOMAIN = re.compile(rf"{DNS_LABEL}(\.{DNS_LABEL})*")


def layout_of(settings: Settings, options: K8sOptions) -> Layout:
    """The names of everything rendered; UsageError for a namespace or domain Kubernetes (and
    the pods' scripts, which use them unquoted in host names) would not take."""
    if not NAMESPACE.fullmatch(options.namespace):
        raise UsageError(
            f"namespace {options.namespace!r} is not a Kubernetes namespace name (lowercase "
            "letters, digits and '-', at most 63, starting and ending alphanumeric); pass "
            "--namespace"
        )
    if len(options.domain) > 253 or not DOMAIN.fullmatch(options.domain):
        raise UsageError(
            f"cluster domain {options.domain!r} is not a DNS name (lowercase labels of letters, "
            "digits and '-', joined by '.'); pass --cluster-domain"
        )
    return Layout(settings, K8sNames(options.namespace, options.domain))


def has_proxy(layout: Layout) -> bool:
    """The proxy is rendered but for a cluster: it is no cluster router (it would pass the
    MOVED redirections to other pods on to clients). Behind Sentinel it follows the primary the
    Sentinels name (`redkeep proxy --sentinel`, docs/proxy.md)."""
    return layout.topology != "cluster"


def server_names(layout: Layout) -> list[str]:
    """What the data pods' and Sentinels' certificate names: each pod's DNS names, the
    Services', and loopback for tools run inside a pod."""
    names = layout.names
    pods = [f"{pod}.{DATA}" for pod in layout.data_pods]
    pods += [f"{pod}.{SENTINEL}" for pod in layout.sentinel_pods]
    found = []
    for pod in pods:
        found += [
            pod,
            f"{pod}.{names.namespace}.svc",
            f"{pod}.{names.namespace}.svc.{names.domain}",
        ]
    for service in client_services(layout):
        found += names.service_names(service)
    return [*found, "localhost", "127.0.0.1"]


def proxy_names(layout: Layout) -> list[str]:
    return layout.names.service_names(PROXY)


def client_services(layout: Layout) -> list[str]:
    return [SENTINEL_CLIENT] if layout.topology == "sentinel" else [DATA_CLIENT]


def entry_point(layout: Layout) -> tuple[str, int]:
    """Where applications connect: the proxy, or any node of the cluster."""
    if has_proxy(layout):
        return layout.names.service(PROXY), proxy_port(layout)
    return layout.names.service(DATA_CLIENT), layout.port


def sentinel_addresses(layout: Layout) -> list[str]:
    """Every Sentinel pod by its DNS name (what they announce and their certificate holds)."""
    return [f"{layout.sentinel_fqdn(pod)}:{SENTINEL_PORT}" for pod in layout.sentinel_pods]


def node_addresses(layout: Layout) -> dict[str, str]:
    """Each planned node (redis-0.., sentinel-0..) at its pod: where the exporter of a
    sentinel deployment finds the Sentinels and the primary they name."""
    found = {pod: f"{layout.data_fqdn(pod)}:{layout.port}" for pod in layout.data_pods}
    found |= dict(zip(layout.sentinel_pods, sentinel_addresses(layout), strict=True))
    return found


# --- Pieces every object uses ---


def labels(layout: Layout, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "redkeep",
        "app.kubernetes.io/instance": layout.settings.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/version": __version__,
    }


def selector(layout: Layout, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/instance": layout.settings.name,
        "app.kubernetes.io/component": component,
    }


def metadata(layout: Layout, name: str, component: str) -> Object:
    return {"name": name, "namespace": layout.names.namespace, "labels": labels(layout, component)}


def pod_security(uid: int) -> Object:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security() -> Object:
    """Every container: no privileges, nothing written outside its volumes."""
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(request_mib: int, limit_mib: int | None, cpu: str) -> Object:
    spec: Object = {"requests": {"cpu": cpu, "memory": f"{request_mib}Mi"}}
    if limit_mib is not None:
        spec["limits"] = {"memory": f"{limit_mib}Mi"}
    return spec


def redis_resources(settings: Settings) -> Object:
    """From maxmemory: the data plus 64 MiB for the server itself; the limit leaves room for a
    snapshot's fork (copy-on-write may copy every page the data takes) and replica buffers.
    No CPU limit: throttling a single-threaded server only adds latency."""
    maxmemory = settings.redis.maxmemory_bytes()
    if not maxmemory:  # no maxmemory: no basis for a limit
        return resources(256, None, "100m")
    mib = math.ceil(maxmemory / MIB)
    return resources(mib + 64, 2 * mib + 128, "100m")


def storage_size(settings: Settings) -> str:
    """The data volume: RDB and AOF each up to the data's size, and an AOF rewrite's copy."""
    maxmemory = settings.redis.maxmemory_bytes()
    if not maxmemory:
        return "10Gi"
    return f"{max(1, math.ceil(3 * maxmemory / GIB))}Gi"


def env_secret(name: str, secret: str, key: str) -> Object:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


POD_NAME_ENV = {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}


def items(keys: list[str]) -> list[Object]:
    """Only these keys of a ConfigMap or Secret, each as a file of its name."""
    return [{"key": key, "path": key} for key in keys]


def config_volume(name: str, config_map: str, keys: list[str]) -> Object:
    return {
        "name": name,
        "configMap": {"name": config_map, "items": items(keys), "defaultMode": CONFIG_MODE},
    }


def secret_volume(name: str, secret: str, keys: list[str]) -> Object:
    return {
        "name": name,
        "secret": {"secretName": secret, "items": items(keys), "defaultMode": SECRET_MODE},
    }


def mount(name: str, path: str, read_only: bool = True) -> Object:
    return {"name": name, "mountPath": path, "readOnly": read_only}


def exec_probe(script: str, check: str, port: int, period: int, failures: int) -> Object:
    return {
        "exec": {"command": ["sh", script, check, str(port)]},
        "periodSeconds": period,
        "timeoutSeconds": 10,
        "failureThreshold": failures,
    }


def spread(layout: Layout, component: str) -> Object:
    """Prefer one pod of the component per node: losing a node then costs one replica."""
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": selector(layout, component)},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        }
    }


def pod_spec(uid: int, containers: list[Object], volumes: list[Object], **extra: Any) -> Object:
    return {
        # The pods never call the Kubernetes API.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security(uid),
        **extra,
        "containers": containers,
        "volumes": volumes,
    }


def digest(data: dict[str, str]) -> str:
    """A pod template annotation that changes with its ConfigMap, so pods roll on a change."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


# --- The objects ---


def render_manifests(settings: Settings, options: K8sOptions) -> tuple[list[Object], list[Object]]:
    """(the Namespace, every other object but the Secrets) in the order to apply them."""
    layout = layout_of(settings, options)
    config = redis_config_data(layout)
    redkeep_yaml = {"redkeep.yaml": component_settings_yaml(layout)}
    objects = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(layout, REDIS_CONFIG, DATA),
            "data": config,
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(layout, REDKEEP_CONFIG, EXPORTER),
            "data": redkeep_yaml,
        },
        *services(layout),
        data_statefulset(layout, options, digest(config)),
    ]
    if layout.topology == "sentinel":
        objects.append(sentinel_statefulset(layout, digest(config)))
    if layout.topology == "cluster":
        objects.append(cluster_job(layout, digest(config)))
    if has_proxy(layout):
        objects.append(proxy_deployment(layout, options, digest(redkeep_yaml)))
    objects.append(exporter_deployment(layout, options, digest(redkeep_yaml)))
    objects += disruption_budgets(layout)
    objects += network_policies(layout)
    return [namespace(layout)], objects


def namespace(layout: Layout) -> Object:
    # Every pod here meets the "restricted" Pod Security Standard: enforce it.
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": layout.names.namespace,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }


def redis_config_data(layout: Layout) -> dict[str, str]:
    data = {"redis.conf": render_node_conf(layout), **render_scripts(layout)}
    if layout.topology == "sentinel":
        data["sentinel.conf"] = render_sentinel_conf(layout)
    return data


def services(layout: Layout) -> list[Object]:
    port = layout.port
    data_ports = [{"name": "redis-tls", "port": port, "targetPort": "redis-tls"}]
    if layout.topology == "cluster":
        bus = layout.bus_port
        data_ports.append({"name": "cluster-bus", "port": bus, "targetPort": "cluster-bus"})
    found = [headless(layout, DATA, DATA, data_ports)]
    sentinel_ports = [{"name": "sentinel-tls", "port": SENTINEL_PORT, "targetPort": "sentinel-tls"}]
    if layout.topology == "sentinel":
        found.append(headless(layout, SENTINEL, SENTINEL, sentinel_ports))
        found.append(client_service(layout, SENTINEL_CLIENT, SENTINEL, sentinel_ports))
    else:
        found.append(client_service(layout, DATA_CLIENT, DATA, data_ports[:1]))
    if has_proxy(layout):
        found.append(
            client_service(
                layout,
                PROXY,
                PROXY,
                [
                    {
                        "name": "redis-proxy",
                        "port": proxy_port(layout),
                        "targetPort": "redis-proxy",
                    },
                    {"name": "metrics", "port": PROXY_METRICS_PORT, "targetPort": "metrics"},
                ],
            )
        )
    exporter = client_service(
        layout,
        EXPORTER,
        EXPORTER,
        [{"name": "metrics", "port": EXPORTER_PORT, "targetPort": "metrics"}],
    )
    exporter["metadata"]["annotations"] = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(EXPORTER_PORT),
    }
    return [*found, exporter]


def headless(layout: Layout, name: str, component: str, ports: list[Object]) -> Object:
    """The StatefulSet's Service: a stable DNS name per pod, published before the pod is
    ready (pods must find each other to become ready: replication, cluster formation)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(layout, name, component),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector(layout, component),
            "ports": ports,
        },
    }


def client_service(layout: Layout, name: str, component: str, ports: list[Object]) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(layout, name, component),
        "spec": {"type": "ClusterIP", "selector": selector(layout, component), "ports": ports},
    }


def data_statefulset(layout: Layout, options: K8sOptions, config_digest: str) -> Object:
    settings = layout.settings
    topology = layout.topology
    ready = {"standalone": "ready", "sentinel": "ready-replicated", "cluster": "ready-cluster"}
    probe = f"{CONFIG_DIR}/probe.sh"
    port = layout.port
    ports = [{"name": "redis-tls", "containerPort": port, "protocol": "TCP"}]
    if topology == "cluster":
        ports.append({"name": "cluster-bus", "containerPort": layout.bus_port, "protocol": "TCP"})
    secret_keys = ["users.acl"]
    if topology != "standalone":
        secret_keys.append("auth.conf")
    if topology == "sentinel":
        secret_keys.append("replication-password")
    config_keys = ["redis.conf", "start.sh", "probe.sh"]
    container = {
        "name": "redis",
        "image": settings.redis.image,
        "command": ["sh", f"{CONFIG_DIR}/start.sh"],
        "env": [POD_NAME_ENV, env_secret("REDISCLI_AUTH", USERS_SECRET, "exporter-password")],
        "ports": ports,
        # Loading a large dataset may take minutes: liveness starts once the server answers.
        "startupProbe": exec_probe(probe, "live", port, period=5, failures=120),
        "livenessProbe": exec_probe(probe, "live", port, period=10, failures=3),
        "readinessProbe": exec_probe(probe, ready[topology], port, period=5, failures=2),
        "resources": redis_resources(settings),
        "securityContext": container_security(),
        "volumeMounts": [
            mount("config", CONFIG_DIR),
            mount("users", SECRET_DIR),
            mount("tls", TLS_DIR),
            mount("run", RUN_DIR, read_only=False),
            mount("data", DATA_DIR, read_only=False),
        ],
    }
    volumes = [
        config_volume("config", REDIS_CONFIG, config_keys),
        secret_volume("users", USERS_SECRET, secret_keys),
        secret_volume("tls", TLS_SECRET, TLS_KEYS),
        # The ACL file's copy and node.conf: in memory, never on the node's disk.
        {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
    ]
    claim: Object = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": storage_size(settings)}},
    }
    if options.storage_class:
        claim["storageClassName"] = options.storage_class
    return statefulset(
        layout,
        DATA,
        len(layout.data_pods),
        pod_spec(
            REDIS_UID,
            [container],
            volumes,
            affinity=spread(layout, DATA),
            # SIGTERM makes Redis write its snapshot before it exits: give it time.
            terminationGracePeriodSeconds=60,
        ),
        config_digest,
        claims=[{"metadata": {"name": "data"}, "spec": claim}],
    )


def statefulset(
    layout: Layout,
    name: str,
    replicas: int,
    spec: Object,
    config_digest: str,
    claims: list[Object] | None = None,
) -> Object:
    body: Object = {
        "serviceName": name,
        "replicas": replicas,
        # All pods at once: cluster nodes are ready only after the Job formed the cluster.
        "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": selector(layout, name)},
        "updateStrategy": {"type": "RollingUpdate"},
        "template": {
            "metadata": {
                "labels": labels(layout, name),
                "annotations": {CONFIG_ANNOTATION: config_digest},
            },
            "spec": spec,
        },
    }
    if claims:
        body["volumeClaimTemplates"] = claims
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(layout, name, name),
        "spec": body,
    }


def sentinel_statefulset(layout: Layout, config_digest: str) -> Object:
    settings = layout.settings
    probe = f"{SENTINEL_CONFIG_DIR}/probe.sh"
    mounts = [
        mount("config", SENTINEL_CONFIG_DIR),
        mount("users", SECRET_DIR),
        mount("tls", TLS_DIR),
        mount("sentinel", SENTINEL_DIR, read_only=False),
    ]
    small = resources(32, 128, "20m")
    init = {
        "name": "sentinel-init",
        "image": settings.redis.image,
        "command": ["sh", f"{SENTINEL_CONFIG_DIR}/sentinel-init.sh"],
        "env": [POD_NAME_ENV],
        "resources": small,
        "securityContext": container_security(),
        "volumeMounts": mounts,
    }
    container = {
        "name": "sentinel",
        "image": settings.redis.image,
        "command": ["redis-server", f"{SENTINEL_DIR}/sentinel.conf", "--sentinel"],
        "env": [env_secret("REDISCLI_AUTH", USERS_SECRET, "exporter-password")],
        "ports": [{"name": "sentinel-tls", "containerPort": SENTINEL_PORT, "protocol": "TCP"}],
        "livenessProbe": exec_probe(probe, "live", SENTINEL_PORT, period=10, failures=3),
        "readinessProbe": exec_probe(probe, "ready-sentinel", SENTINEL_PORT, period=5, failures=2),
        "resources": small,
        "securityContext": container_security(),
        "volumeMounts": mounts,
    }
    volumes = [
        config_volume("config", REDIS_CONFIG, ["sentinel.conf", "sentinel-init.sh", "probe.sh"]),
        secret_volume("users", USERS_SECRET, ["sentinel-auth.conf", "sentinel-password"]),
        secret_volume("tls", TLS_SECRET, TLS_KEYS),
        # Sentinel's own file: it survives container restarts, not a new pod (the init
        # container then asks the other Sentinels for the current primary).
        {"name": "sentinel", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
    ]
    spec = pod_spec(
        REDIS_UID, [container], volumes, initContainers=[init], affinity=spread(layout, SENTINEL)
    )
    return statefulset(layout, SENTINEL, len(layout.sentinel_pods), spec, config_digest)


def cluster_job(layout: Layout, config_digest: str) -> Object:
    container = {
        "name": CLUSTER_CREATE,
        "image": layout.settings.redis.image,
        "command": ["sh", f"{CONFIG_DIR}/cluster-create.sh"],
        "env": [env_secret("REDISCLI_AUTH", USERS_SECRET, "admin-password")],
        "resources": resources(32, 64, "20m"),
        "securityContext": container_security(),
        "volumeMounts": [mount("config", CONFIG_DIR), mount("tls", TLS_DIR)],
    }
    volumes = [
        config_volume("config", REDIS_CONFIG, ["cluster-create.sh"]),
        secret_volume("tls", TLS_SECRET, CLIENT_TLS_KEYS),
    ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(layout, CLUSTER_CREATE, CLUSTER_CREATE),
        "spec": {
            "backoffLimit": 6,
            "activeDeadlineSeconds": 1800,
            "template": {
                "metadata": {
                    "labels": labels(layout, CLUSTER_CREATE),
                    "annotations": {CONFIG_ANNOTATION: config_digest},
                },
                "spec": pod_spec(REDIS_UID, [container], volumes, restartPolicy="OnFailure"),
            },
        },
    }


def proxy_port(layout: Layout) -> int:
    return parse_host_port(layout.settings.proxy.listen)[1]


def component_settings_yaml(layout: Layout) -> str:
    """redkeep.yaml for the proxy and the exporter: the bundle's settings, with the addresses
    and file paths of the pods (the exporter may scrape every data pod by /scrape?target=)."""
    settings = layout.settings
    data = settings.model_dump(mode="json")
    host = entry_point(layout)[0]
    data["host"] = host
    data["tls"]["server_names"] = [host]
    data["proxy"] |= {
        "listen": f"0.0.0.0:{proxy_port(layout)}",
        "upstream": f"{layout.names.service(DATA_CLIENT)}:{layout.port}",
        "sentinels": [],
        "allow": list(dict.fromkeys([*settings.proxy.allow, *PRIVATE_NETWORKS])),
        "tls_cert": f"{TLS_DIR}/tls.crt",
        "tls_key": f"{TLS_DIR}/tls.key",
        "tls_client_ca": f"{TLS_DIR}/ca.crt",
        "upstream_tls_ca": f"{TLS_DIR}/ca.crt",
        "upstream_tls_cert": f"{TLS_DIR}/client.crt",
        "upstream_tls_key": f"{TLS_DIR}/client.key",
        "upstream_tls_name": None,  # the upstream's DNS name, which the certificate holds
        "access_log": "-",
        "metrics_listen": f"0.0.0.0:{PROXY_METRICS_PORT}",
    }
    if layout.topology == "sentinel":
        data["proxy"] |= {
            "upstream": None,
            "sentinels": sentinel_addresses(layout),
            "master_name": settings.deployment.master_name,
            "sentinel_user": "app",  # its password: .env projected from the Secret
            # One certificate serves every pod and Service (server_names): the proxy checks
            # the Sentinels and the primary by the Sentinels' Service name it holds.
            "upstream_tls_name": layout.names.service(SENTINEL_CLIENT),
        }
        data["deployment"]["node_addresses"] = node_addresses(layout)
    profile = {
        "username": "exporter",
        "password_env": "REDIS_EXPORTER_PASSWORD",
        "tls_ca": f"{TLS_DIR}/ca.crt",
        "tls_cert": f"{TLS_DIR}/client.crt",
        "tls_key": f"{TLS_DIR}/client.key",
    }
    targets = [
        {"url": f"rediss://{layout.data_fqdn(pod)}:{layout.port}", "profile": "node"}
        for pod in layout.data_pods
    ]
    data["exporter"] |= {
        "listen": f"0.0.0.0:{EXPORTER_PORT}",
        # HTTPS for /metrics needs a certificate of its own: not rendered (docs/kubernetes.md).
        "tls_cert_file": None,
        "tls_key_file": None,
        "targets": targets,
        "profiles": {"node": profile},
    }
    checked = Settings.model_validate(data)  # what the pods will load must load
    return (
        f"# redkeep.yaml of the proxy and the exporter in Kubernetes, rendered by redkeep "
        f"{__version__}.\n" + yaml.safe_dump(checked.model_dump(mode="json"), sort_keys=False)
    )


def redkeep_deployment(
    layout: Layout,
    options: K8sOptions,
    name: str,
    args: list[str],
    ports: list[Object],
    probes: Object,
    volumes: list[Object],
    env: list[Object],
    config_digest: str,
    replicas: int,
    bundle_files: tuple[Object, ...] | list[Object] = (),
) -> Object:
    """`bundle_files`: Secret sources projected into the bundle directory beside redkeep.yaml
    (where redkeep looks for .env and tls/ when it reaches the nodes of the plan)."""
    container = {
        "name": name,
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": env,
        "ports": ports,
        **probes,
        "resources": resources(64, 256, "50m"),
        "securityContext": container_security(),
        "volumeMounts": [
            mount("config", BUNDLE_MOUNT),
            mount("tls", TLS_DIR),
            mount("tmp", "/tmp", read_only=False),  # noqa: S108 - the container's own emptyDir
        ],
    }
    config = config_volume("config", REDKEEP_CONFIG, ["redkeep.yaml"])
    if bundle_files:
        yaml_source = {"configMap": {"name": REDKEEP_CONFIG, "items": items(["redkeep.yaml"])}}
        config = {
            "name": "config",
            "projected": {"defaultMode": SECRET_MODE, "sources": [yaml_source, *bundle_files]},
        }
    all_volumes = [
        config,
        *volumes,
        {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}},
    ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(layout, name, name),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector(layout, name)},
            "template": {
                "metadata": {
                    "labels": labels(layout, name),
                    "annotations": {CONFIG_ANNOTATION: config_digest},
                },
                "spec": pod_spec(
                    REDKEEP_UID, [container], all_volumes, affinity=spread(layout, name)
                ),
            },
        },
    }


def proxy_deployment(layout: Layout, options: K8sOptions, config_digest: str) -> Object:
    """The proxy in front of the data pods: TLS and client certificates towards applications,
    mutual TLS towards Redis; clients authenticate to Redis themselves (it holds no password)."""
    probe = {"httpGet": {"path": "/", "port": "metrics"}, "periodSeconds": 10}
    tls = {
        "name": "tls",
        "projected": {
            "defaultMode": SECRET_MODE,
            "sources": [
                {"secret": {"name": PROXY_TLS_SECRET, "items": items(["tls.crt", "tls.key"])}},
                {"secret": {"name": TLS_SECRET, "items": items(CLIENT_TLS_KEYS)}},
            ],
        },
    }
    bundle_files = []
    if layout.topology == "sentinel":
        # The bundle's .env with app's password: the proxy asks the Sentinels and checks the
        # primary's role as app (proxy.sentinel_user).
        env = [{"key": PROXY_ENV, "path": ".env"}]
        bundle_files.append({"secret": {"name": USERS_SECRET, "items": env}})
    return redkeep_deployment(
        layout,
        options,
        PROXY,
        ["proxy", f"--dir={BUNDLE_MOUNT}"],
        [
            {"name": "redis-proxy", "containerPort": proxy_port(layout), "protocol": "TCP"},
            {"name": "metrics", "containerPort": PROXY_METRICS_PORT, "protocol": "TCP"},
        ],
        {"livenessProbe": probe, "readinessProbe": probe},
        [tls],
        [],
        config_digest,
        replicas=2,
        bundle_files=bundle_files,
    )


def exporter_deployment(layout: Layout, options: K8sOptions, config_digest: str) -> Object:
    """The exporter: every data pod by /scrape?target=, the first one on /metrics. Behind
    Sentinel as `redkeep up` runs it: no main pod; every data and Sentinel pod
    (node_addresses) by /scrape?target=, listed by /discover-cluster-nodes from the Sentinels'
    view (so it follows failovers); /metrics holds the deployment's own metrics, its app
    checks run on the primary the Sentinels name."""
    if layout.settings.exporter.basic_auth_user:
        # The probe could not send the password without putting it in the manifest.
        probe: Object = {"tcpSocket": {"port": "metrics"}, "periodSeconds": 10}
    else:
        probe = {"httpGet": {"path": "/health", "port": "metrics"}, "periodSeconds": 10}
    first = layout.data_fqdn(layout.data_pods[0])
    sentinel = layout.topology == "sentinel"
    bundle_tls = [{"key": key, "path": f"tls/{key}"} for key in CLIENT_TLS_KEYS]
    env = [env_secret("REDIS_EXPORTER_PASSWORD", USERS_SECRET, "exporter-password")]
    if layout.settings.exporter.basic_auth_user:
        env.append(env_secret("EXPORTER_BASIC_AUTH_PASSWORD", USERS_SECRET, "exporter-basic-auth"))
    tls = {
        "name": "tls",
        "projected": {
            "defaultMode": SECRET_MODE,
            "sources": [
                {"secret": {"name": TLS_SECRET, "items": items(CLIENT_TLS_KEYS)}},
                {"secret": {"name": USERS_SECRET, "items": items(["exporter-password"])}},
            ],
        },
    }
    args = ["exporter", f"--dir={BUNDLE_MOUNT}"]
    if not sentinel:  # a sentinel deployment's nodes come from its redkeep.yaml, as with `up`
        args += [
            f"--url=rediss://exporter@{first}:{layout.port}",
            f"--password-file={TLS_DIR}/exporter-password",
            f"--tls-ca={TLS_DIR}/ca.crt",
            f"--tls-cert={TLS_DIR}/client.crt",
            f"--tls-key={TLS_DIR}/client.key",
        ]
    return redkeep_deployment(
        layout,
        options,
        EXPORTER,
        args,
        [{"name": "metrics", "containerPort": EXPORTER_PORT, "protocol": "TCP"}],
        {"livenessProbe": probe, "readinessProbe": probe},
        [tls],
        env,
        config_digest,
        replicas=1,
        # The CA and client certificate where redkeep looks for them when it reaches the
        # Sentinels and the primary they name (deployment.node_addresses).
        bundle_files=[{"secret": {"name": TLS_SECRET, "items": bundle_tls}}] if sentinel else [],
    )


def render_prometheus_scrape(settings: Settings, options: K8sOptions) -> str:
    """scrape_configs for the operator's Prometheus: every pod through the exporter Service
    (its /scrape?target= and /discover-cluster-nodes; annotations can only name /metrics)."""
    layout = layout_of(settings, options)
    exporter = f"{layout.names.service(EXPORTER)}:{EXPORTER_PORT}"
    if layout.topology == "sentinel":
        urls = [f"rediss://{address}" for address in node_addresses(layout).values()]
    else:
        urls = [f"rediss://{layout.data_fqdn(pod)}:{layout.port}" for pod in layout.data_pods]
    jobs = redis_jobs(settings, exporter, urls)
    return PROMETHEUS_HEADER + yaml.safe_dump({"scrape_configs": jobs}, sort_keys=False)


def disruption_budgets(layout: Layout) -> list[Object]:
    """At most one data pod down by a drain at a time (a shard or the primary's replicas keep
    one), Sentinels kept at a majority. A standalone server has no budget: one pod cannot be
    kept up through its node's drain, and a budget of zero would block every drain."""
    budgets = []
    if layout.topology != "standalone":
        budgets.append(budget(layout, DATA, 1))
    if layout.topology == "sentinel":
        deployment = layout.settings.deployment
        needed = max(deployment.sentinel_quorum(), deployment.sentinels // 2 + 1)
        budgets.append(budget(layout, SENTINEL, max(1, deployment.sentinels - needed)))
    if has_proxy(layout):
        budgets.append(budget(layout, PROXY, 1))
    return budgets


def budget(layout: Layout, component: str, max_unavailable: int) -> Object:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(layout, component, component),
        "spec": {
            "maxUnavailable": max_unavailable,
            "selector": {"matchLabels": selector(layout, component)},
        },
    }


def network_policies(layout: Layout) -> list[Object]:
    """Ingress only: nothing reaches a pod here unless a policy below admits it."""
    topology = layout.topology
    tcp = "TCP"
    clients = {"podSelector": {"matchLabels": {CLIENT_LABEL: layout.settings.name}}}
    data_from = [peer(layout, EXPORTER)]
    if has_proxy(layout):
        data_from.insert(0, peer(layout, PROXY))
    if topology != "standalone":
        # Replication between the data pods, and clients that follow Sentinel or the cluster.
        data_from += [peer(layout, DATA), clients]
    if topology == "sentinel":
        data_from.append(peer(layout, SENTINEL))
    if topology == "cluster":
        data_from.append(peer(layout, CLUSTER_CREATE))
    data_rules = [{"from": data_from, "ports": [{"protocol": tcp, "port": layout.port}]}]
    if topology == "cluster":
        data_rules.append(
            {"from": [peer(layout, DATA)], "ports": [{"protocol": tcp, "port": layout.bus_port}]}
        )
    policies = [
        policy(layout, "default-deny-ingress", None, []),  # every pod of this deployment
        policy(layout, DATA, DATA, data_rules),
        policy(
            layout,
            EXPORTER,
            EXPORTER,
            [{"ports": [{"protocol": tcp, "port": EXPORTER_PORT}]}],  # Prometheus, wherever
        ),
    ]
    if topology == "sentinel":
        sentinel_from = [peer(layout, SENTINEL), peer(layout, DATA), peer(layout, EXPORTER)]
        if has_proxy(layout):
            sentinel_from.append(peer(layout, PROXY))  # it asks them for the primary
        sentinel_from.append(clients)
        rule = {"from": sentinel_from, "ports": [{"protocol": tcp, "port": SENTINEL_PORT}]}
        policies.append(policy(layout, SENTINEL, SENTINEL, [rule]))
    if has_proxy(layout):
        # Applications, wherever they run: the proxy's allowlist and TLS decide.
        ports = [
            {"protocol": tcp, "port": proxy_port(layout)},
            {"protocol": tcp, "port": PROXY_METRICS_PORT},
        ]
        policies.append(policy(layout, PROXY, PROXY, [{"ports": ports}]))
    return policies


def peer(layout: Layout, component: str) -> Object:
    return {"podSelector": {"matchLabels": selector(layout, component)}}


def policy(layout: Layout, name: str, component: str | None, rules: list[Object]) -> Object:
    """Ingress rules for the pods of `component` (None: every pod of this deployment, and
    only those: others in a shared namespace keep their own policies)."""
    instance = {"app.kubernetes.io/instance": layout.settings.name}
    pods = {"matchLabels": selector(layout, component) if component else instance}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(layout, name, component or "network"),
        "spec": {"podSelector": pods, "policyTypes": ["Ingress"], "ingress": rules},
    }


def render_secrets(
    settings: Settings, options: K8sOptions, material: SecretMaterial
) -> list[Object]:
    """The Secrets, each for the pods that need it (they mount only the keys they use)."""
    layout = layout_of(settings, options)
    topology = layout.topology
    passwords = material.passwords
    users = {
        "users.acl": material.acl,
        "admin-password": passwords["admin"],
        "exporter-password": passwords["exporter"],
    }
    if topology != "standalone":
        users["auth.conf"] = render_auth_conf(passwords)
    if topology == "sentinel":
        users[PROXY_ENV] = render_env(PROXY_ENV_HEADER, {PASSWORD_KEYS["app"]: passwords["app"]})
        users["replication-password"] = passwords["replication"]
        users["sentinel-password"] = passwords["sentinel"]
        users["sentinel-auth.conf"] = render_sentinel_auth(layout, passwords)
    if settings.exporter.basic_auth_user:
        users["exporter-basic-auth"] = passwords["exporter-basic-auth"]
    tls = {
        "ca.crt": material.ca_cert,
        "server.crt": material.server_cert,
        "server.key": material.server_key,
        "client.crt": material.client_cert,
        "client.key": material.client_key,
    }
    entry, entry_port = entry_point(layout)
    app = {
        "password": passwords["app"],
        "ca.crt": material.ca_cert,
        "client.crt": material.client_cert,
        "client.key": material.client_key,
    }
    # Through the proxy (which follows the Sentinels' primary), or any node of a cluster.
    app["url"] = f"rediss://app:{passwords['app']}@{entry}:{entry_port}"
    if topology == "sentinel":
        # Clients that follow Sentinel themselves (pods labelled redkeep/client) ask the
        # Sentinels (as app, the same password) for the primary by this name.
        app["sentinels"] = f"{layout.names.service(SENTINEL_CLIENT)}:{SENTINEL_PORT}"
        app["master-name"] = settings.deployment.master_name
    found = [
        secret(layout, TLS_SECRET, DATA, tls),
        secret(layout, USERS_SECRET, DATA, users),
    ]
    if has_proxy(layout):
        proxy_tls = {"tls.crt": material.proxy_cert, "tls.key": material.proxy_key}
        found.append(secret(layout, PROXY_TLS_SECRET, PROXY, proxy_tls, "kubernetes.io/tls"))
    # For applications: what they need to connect, and nothing of the servers'.
    found.append(secret(layout, APP_SECRET, "app", app))
    return found


def secret(
    layout: Layout, name: str, component: str, values: dict[str, str], kind: str = "Opaque"
) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(layout, name, component),
        "type": kind,
        "stringData": values,
    }


def to_yaml(objects: list[Object], header: str) -> str:
    """Objects as one multi-document YAML file (block style: PEM and configs stay readable)."""
    documents = [yaml.dump(obj, Dumper=_BlockDumper, sort_keys=False) for obj in objects]
    return header + "".join(f"---\n{document}" for document in documents)


class _BlockDumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _text)
