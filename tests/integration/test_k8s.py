"""`redkeep render k8s`: the manifests of each topology as Kubernetes' own schemas see them
(kubernetes-validate, strict), what they must never hold (a secret), what they must always
hold (securityContext, authenticated probes, a NetworkPolicy on the data pods), and the
pods' redis.conf, sentinel.conf, ACL and scripts run by real redis-servers.

No Kubernetes runs here. The pods' configs and scripts run on loopback instead: each pod gets
its own 127.0.0.x address (as each pod has its own IP) with the same ports, and its DNS name
is replaced by that address ("localized"); paths become temp dirs.
"""

import copy
import datetime as dt
import json
import re
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from cryptography import x509

from redkeep.actions.exporter import _deployment_nodes as deployment_nodes
from redkeep.bundle import Bundle
from redkeep.envfile import generate_password, read_env
from redkeep.exporter.targets import allowed_targets, key_of
from redkeep.fsutil import mode_of
from redkeep.pki import issue
from redkeep.pki.files import load_ca
from redkeep.pki.inspect import load_certificate, subject_alt_names, verify_certificate
from redkeep.proxy.config import build_config
from redkeep.redis.target import parse_url
from redkeep.render.acl import password_hash
from tests.conftest import REDKEEP, run_redkeep
from tests.servers import free_port, require_binary, stop_process

# The oldest Kubernetes minor still supported upstream when this was written, and the newest
# the kubernetes-validate package knows.
K8S_VERSIONS = ("1.33.0", kubernetes_validate.latest_version())
NAMESPACE = "shop"
DOMAIN = "cluster.local"
TOPOLOGIES = ("standalone", "sentinel", "cluster")
# The shapes the tests run: few processes, every role present.
DEPLOYMENTS = {
    "standalone": {},
    "sentinel": {
        "topology": "sentinel",
        "replicas": 1,
        "sentinels": 3,
        "down_after_milliseconds": 1000,
        "failover_timeout_milliseconds": 2000,
    },
    "cluster": {
        "topology": "cluster",
        "shards": 3,
        "replicas": 1,
        "cluster_node_timeout_milliseconds": 1000,
    },
}
HA_KEYS = ("REDIS_REPLICATION_PASSWORD", "REDIS_SENTINEL_PASSWORD")
WAIT = 30  # seconds a deployment may take to reach the state a test polls for


# --- Bundles and their rendered manifests ---


@pytest.fixture(scope="module")
def base_bundle(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("k8s") / "bundle"
    result = run_redkeep("init", root)
    assert result.returncode == 0, result.stderr
    return root


def make_bundle(base: Path, root: Path, topology: str) -> Bundle:
    """A copy of the base bundle with this topology, and the HA passwords init will write."""
    shutil.copytree(base, root, symlinks=True)
    config = root / "redkeep.yaml"
    data = yaml.safe_load(config.read_text())
    # The local redis-server (7.0) checks the pods' config: render for that version.
    data["redis"]["image"] = "redis:7.0"
    data["deployment"] = {**data.get("deployment", {}), **DEPLOYMENTS[topology]}
    config.write_text(yaml.safe_dump(data))
    if topology != "standalone":
        with (root / ".env").open("a") as env:
            env.writelines(f"{key}={generate_password()}\n" for key in HA_KEYS)
    return Bundle(root)


@pytest.fixture(scope="module")
def rendered(base_bundle, tmp_path_factory) -> dict[str, "Rendered"]:
    found = {}
    for topology in TOPOLOGIES:
        bundle = make_bundle(base_bundle, tmp_path_factory.mktemp(topology) / "b", topology)
        out = bundle.root / "out"
        result = run_redkeep("render", "k8s", bundle.root, "--out", out, "--namespace", NAMESPACE)
        assert result.returncode == 0, result.stderr
        found[topology] = Rendered(bundle, out)
    return found


class Rendered:
    def __init__(self, bundle: Bundle, out: Path) -> None:
        self.bundle = bundle
        self.out = out
        self.namespace = load(out / "namespace.yaml")
        self.objects = load(out / "deployment.yaml")
        self.secrets = load(out / "secrets.yaml")

    def all(self) -> list[dict]:
        return [*self.namespace, *self.objects, *self.secrets]

    def get(self, kind: str, name: str) -> dict:
        matches = [o for o in self.all() if o["kind"] == kind and o["metadata"]["name"] == name]
        assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
        return matches[0]

    def of_kind(self, *kinds: str) -> list[dict]:
        return [obj for obj in self.all() if obj["kind"] in kinds]

    def config(self, key: str) -> str:
        return self.get("ConfigMap", "redis-config")["data"][key]

    def secret(self, name: str, key: str) -> str:
        return self.get("Secret", name)["stringData"][key]

    def secret_keys(self, name: str) -> set[str]:
        return set(self.get("Secret", name)["stringData"])


def load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def pod_templates(rendered: Rendered) -> list[tuple[str, dict]]:
    """(name, pod template) of every workload."""
    kinds = ("StatefulSet", "Deployment", "Job")
    return [(o["metadata"]["name"], o["spec"]["template"]) for o in rendered.of_kind(*kinds)]


def containers(template: dict) -> list[dict]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


# --- The manifests, offline ---


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_every_manifest_validates_strictly(rendered, topology):
    objects = rendered[topology].all()
    kinds = {obj["kind"] for obj in objects}
    expected = {"Namespace", "ConfigMap", "Secret", "Service", "StatefulSet", "Deployment"}
    expected |= {"NetworkPolicy"}
    assert expected <= kinds
    if topology != "standalone":
        assert "PodDisruptionBudget" in kinds
    if topology == "cluster":
        assert "Job" in kinds
    for version in K8S_VERSIONS:
        for obj in objects:
            kubernetes_validate.validate(obj, version, strict=True)


def test_strict_validation_refuses_a_misspelt_field(rendered):
    statefulset = copy.deepcopy(rendered["standalone"].get("StatefulSet", "redis"))
    statefulset["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_no_secret_in_the_manifests(rendered, topology):
    r = rendered[topology]
    bundle = r.bundle
    public = "".join(
        (r.out / name).read_text()
        for name in ("namespace.yaml", "deployment.yaml", "prometheus-scrape.yml")
    )
    env = read_env(bundle.env_path)
    values = [value for value in env.values() if len(value) >= 16]
    assert len(values) >= 5  # the passwords and the app's URL
    # A password's hash is as good as the password for an offline guess: not there either.
    values += [password_hash(value) for value in values]
    for key in ("server.key", "client.key"):
        values.append(r.secret("redis-tls", key))
    if topology == "standalone":
        values.append(r.secret("proxy-tls", "tls.key"))
    values += [path.read_text() for path in bundle.tls.directory.glob("*.key")]
    for value in values:
        # A PEM key by its base64 lines too, in case one were re-wrapped.
        lines = [value] + [line for line in value.splitlines() if len(line) > 40]
        for line in lines:
            assert line not in public
    # ...and the secrets file has them, so the check above looked for the right things.
    secrets = (r.out / "secrets.yaml").read_text()
    assert env["REDIS_EXPORTER_PASSWORD"] in secrets
    if topology != "standalone":
        assert env["REDIS_REPLICATION_PASSWORD"] in secrets
    # The CA's key signs at render time and goes nowhere.
    ca_key = bundle.tls.ca_key.read_text()
    for line in ca_key.splitlines()[1:-1]:
        assert line not in secrets


def test_secrets_file_is_private_and_says_how_to_apply(rendered):
    r = rendered["standalone"]
    assert mode_of(r.out / "secrets.yaml") == 0o600
    assert mode_of(r.out) == 0o700
    assert mode_of(r.out / "deployment.yaml") == 0o644
    header = (r.out / "secrets.yaml").read_text().split("---")[0]
    assert "secret store" in header and "0600" in header


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_every_container_is_locked_down(rendered, topology):
    templates = pod_templates(rendered[topology])
    assert templates
    for name, template in templates:
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in containers(template):
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert container["resources"]["requests"]["memory"], name
            assert container["resources"]["limits"]["memory"], name
        # Whatever a container writes goes to a volume.
        writable = {
            m["name"] for c in containers(template) for m in c["volumeMounts"] if not m["readOnly"]
        }
        volumes = {v["name"]: v for v in pod["volumes"]}
        claims = {"data"} if name == "redis" else set()
        for volume in writable - claims:
            assert "emptyDir" in volumes[volume], (name, volume)


def test_memory_follows_maxmemory(rendered):
    container = rendered["standalone"].get("StatefulSet", "redis")["spec"]["template"]
    resources = container["spec"]["containers"][0]["resources"]
    # maxmemory 256mb: the data plus 64 MiB; twice the data plus 128 MiB at most.
    assert resources["requests"]["memory"] == "320Mi"
    assert resources["limits"]["memory"] == "640Mi"


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_references_resolve_to_rendered_keys(rendered, topology):
    """Every Secret and ConfigMap key a pod uses exists: a typo would leave a pod pending."""
    r = rendered[topology]
    for name, template in pod_templates(r):
        for volume in template["spec"]["volumes"]:
            sources = volume.get("projected", {}).get("sources", [])
            if "secret" in volume:
                sources = [{"secret": {"name": volume["secret"]["secretName"], **volume["secret"]}}]
            if "configMap" in volume:
                sources = [{"configMap": volume["configMap"]}]
            for source in sources:
                kind, ref = next(iter(source.items()))
                data = r.get("Secret" if kind == "secret" else "ConfigMap", ref["name"])
                keys = data.get("stringData", data.get("data"))
                for item in ref["items"]:
                    assert item["key"] in keys, (name, ref["name"], item["key"])
        for container in containers(template):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in r.secret_keys(ref["name"]), (name, ref)


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_probes_log_in_over_tls(rendered, topology):
    """Data pods and Sentinels are probed by probe.sh: as the exporter user, its password
    from the Secret; not by a bare `redis-cli ping`."""
    r = rendered[topology]
    probe = r.config("probe.sh")
    assert "--tls" in probe and "--cert" in probe and "--user exporter" in probe
    workloads = ["redis", *(["sentinel"] if topology == "sentinel" else [])]
    for name in workloads:
        container = r.get("StatefulSet", name)["spec"]["template"]["spec"]["containers"][0]
        for kind in ("readinessProbe", "livenessProbe"):
            command = container[kind]["exec"]["command"]
            assert command[1].endswith("/probe.sh"), (name, kind)
        auth = next(env for env in container["env"] if env["name"] == "REDISCLI_AUTH")
        assert auth["valueFrom"]["secretKeyRef"] == {
            "name": "redis-users",
            "key": "exporter-password",
        }
    ready = {"standalone": "ready", "sentinel": "ready-replicated", "cluster": "ready-cluster"}
    data = r.get("StatefulSet", "redis")["spec"]["template"]["spec"]["containers"][0]
    assert data["readinessProbe"]["exec"]["command"][2] == ready[topology]


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_network_policy_guards_the_data_pods(rendered, topology):
    r = rendered[topology]
    policies = {p["metadata"]["name"]: p for p in r.of_kind("NetworkPolicy")}
    assert policies["default-deny-ingress"]["spec"] == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/instance": "redkeep"}},
        "policyTypes": ["Ingress"],
        "ingress": [],
    }
    data_labels = r.get("StatefulSet", "redis")["spec"]["template"]["metadata"]["labels"]
    spec = policies["redis"]["spec"]
    assert spec["podSelector"]["matchLabels"].items() <= data_labels.items()
    admitted = [
        peer["podSelector"]["matchLabels"] for rule in spec["ingress"] for peer in rule["from"]
    ]
    # Each admitted selector matches a workload of the deployment (or the client label).
    templates = dict(pod_templates(r))
    expected = {"exporter"} | ({"proxy"} if topology != "cluster" else set())
    expected |= {"redis"} if topology != "standalone" else set()
    matched = {
        name
        for name, template in templates.items()
        for labels in admitted
        if labels.items() <= template["metadata"]["labels"].items()
    }
    assert expected <= matched
    if topology == "standalone":
        # Only the proxy and the exporter: no application, no other pod.
        assert matched == {"proxy", "exporter"}
        assert len(admitted) == 2


def test_certificates_name_the_pods_and_services(rendered):
    """What the proxy, the exporter, the replicas and Sentinels dial is in the certificates
    (redkeep's clients check the name), and the bundle's CA signed them."""
    now = dt.datetime.now(dt.UTC)
    for topology in TOPOLOGIES:
        r = rendered[topology]
        ca = load_certificate(r.bundle.tls.ca_cert)
        cert = x509.load_pem_x509_certificate(r.secret("redis-tls", "server.crt").encode())
        assert verify_certificate(cert, ca, now) == []
        names = set(subject_alt_names(cert))
        pods = int(r.get("StatefulSet", "redis")["spec"]["replicas"])
        for i in range(pods):
            assert f"redis-{i}.redis.{NAMESPACE}.svc.{DOMAIN}" in names
        client = "sentinel-client" if topology == "sentinel" else "redis-client"
        assert f"{client}.{NAMESPACE}.svc.{DOMAIN}" in names
        if topology == "sentinel":
            assert f"sentinel-2.sentinel.{NAMESPACE}.svc.{DOMAIN}" in names
        if topology == "standalone":
            proxy = x509.load_pem_x509_certificate(r.secret("proxy-tls", "tls.crt").encode())
            assert verify_certificate(proxy, ca, now) == []
            assert f"proxy.{NAMESPACE}.svc.{DOMAIN}" in subject_alt_names(proxy)


def bundle_of(r: Rendered, name: str, root: Path) -> Bundle:
    """The bundle directory the proxy or exporter Deployment mounts at /bundle, at `root`:
    redkeep.yaml from the ConfigMap and the Secret files projected beside it."""
    pod = r.get("Deployment", name)["spec"]["template"]["spec"]
    (config,) = [v for v in pod["volumes"] if v["name"] == "config"]
    root.mkdir()
    config_map = r.get("ConfigMap", "redkeep-config")["data"]
    for source in config.get("projected", {"sources": [{"configMap": config.get("configMap")}]})[
        "sources"
    ]:
        kind, ref = next(iter(source.items()))
        data = config_map if kind == "configMap" else r.get("Secret", ref["name"])["stringData"]
        for item in ref["items"]:
            (root / item["path"]).parent.mkdir(exist_ok=True)
            (root / item["path"]).write_text(data[item["key"]])
    return Bundle(root)


def test_sentinel_proxy_follows_the_sentinel_pods(rendered, tmp_path):
    """The proxy of a sentinel deployment, as `redkeep proxy` reads its mounted bundle: it
    asks every Sentinel pod by its DNS name, as app with the bundle's password, over TLS
    checked against a name the pods' certificate holds; the proxy may reach the Sentinels and
    the data pods; applications get its URL."""
    r = rendered["sentinel"]
    bundle = bundle_of(r, "proxy", tmp_path / "bundle")
    settings = bundle.settings  # our loader: the schema and the environment overrides
    config = build_config(settings.proxy, settings, bundle.root, follow_sentinel=True)
    sentinels = tuple((f"sentinel-{j}.sentinel.{NAMESPACE}.svc.{DOMAIN}", 26379) for j in range(3))
    assert config.sentinel.addresses == sentinels
    assert config.sentinel.master_name == r.bundle.settings.deployment.master_name
    app_password = read_env(r.bundle.env_path)["REDIS_APP_PASSWORD"]
    assert (config.sentinel.user, config.sentinel.password) == ("app", app_password)
    server = x509.load_pem_x509_certificate(r.secret("redis-tls", "server.crt").encode())
    assert config.upstream_tls.server_name in subject_alt_names(server)
    # Mutual TLS with the files the proxy pod mounts at /tls.
    proxy = r.get("Deployment", "proxy")["spec"]["template"]["spec"]
    assert {"name": "tls", "mountPath": "/tls", "readOnly": True} in proxy["containers"][0][
        "volumeMounts"
    ]
    tls = [Path(config.upstream_tls.ca), Path(config.upstream_tls.cert)]
    assert tls == [Path("/tls/ca.crt"), Path("/tls/client.crt")]
    # The proxy's pods may reach the Sentinels and the data pods.
    proxy_labels = r.get("Deployment", "proxy")["spec"]["template"]["metadata"]["labels"]
    for policy in ("sentinel", "redis"):
        spec = r.get("NetworkPolicy", policy)["spec"]
        peers = [
            peer["podSelector"]["matchLabels"] for rule in spec["ingress"] for peer in rule["from"]
        ]
        assert any(labels.items() <= proxy_labels.items() for labels in peers), policy
    url = r.secret("app-credentials", "url")
    assert url.endswith(f"@proxy.{NAMESPACE}.svc.{DOMAIN}:{config.listen[1]}")
    assert r.secret("app-credentials", "sentinels") == (
        f"sentinel-client.{NAMESPACE}.svc.{DOMAIN}:26379"
    )


def test_sentinel_exporter_checks_follow_the_sentinel_pods(rendered, tmp_path):
    """The exporter of a sentinel deployment, as it reads its mounted bundle: its app checks
    start at the Sentinel pods (by DNS name and port) and go to the data pods they name, with
    the CA and client certificate projected into the bundle; a cluster's stays as it was."""
    r = rendered["sentinel"]
    bundle = bundle_of(r, "exporter", tmp_path / "bundle")
    nodes, sentinel_count = deployment_nodes(bundle, {"REDIS_EXPORTER_PASSWORD": "x"})
    assert sentinel_count == 3
    addresses = [(node.host, node.port) for node in nodes]
    pods = [f"sentinel-{j}.sentinel" for j in range(3)] + ["redis-0.redis", "redis-1.redis"]
    ports = [26379] * 3 + [r.bundle.settings.redis.tls_port] * 2
    assert addresses == [
        (f"{pod}.{NAMESPACE}.svc.{DOMAIN}", port) for pod, port in zip(pods, ports, strict=True)
    ]
    for node in nodes:
        assert (node.username, node.password) == ("exporter", "x")
        assert Path(node.tls_ca).read_text() == r.secret("redis-tls", "ca.crt")
        assert Path(node.tls_cert).read_text() == r.secret("redis-tls", "client.crt")
    cluster = bundle_of(rendered["cluster"], "exporter", tmp_path / "cluster")
    assert deployment_nodes(cluster, {}) == ([], 0)


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_prometheus_jobs_scrape_every_pod_through_the_exporter(rendered, topology, tmp_path):
    """prometheus-scrape.yml: Prometheus' own check accepts it; behind Sentinel and for a
    cluster it scrapes every pod at the exporter Service's /scrape, each by a URL the
    exporter's allow-list accepts (the Sentinels too), and the deployment at /metrics."""
    r = rendered[topology]
    path = r.out / "prometheus-scrape.yml"
    assert mode_of(path) == 0o644
    check = subprocess.run(
        [require_binary("promtool"), "check", "config", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    jobs = {job["job_name"]: job for job in yaml.safe_load(path.read_text())["scrape_configs"]}
    exporter = f"exporter.{NAMESPACE}.svc.{DOMAIN}:9121"
    if topology == "standalone":
        assert jobs["redis"]["static_configs"][0]["targets"] == [exporter]
        return
    nodes = jobs["redis"]
    assert nodes["metrics_path"] == "/scrape"
    assert nodes["http_sd_configs"][0]["url"] == f"http://{exporter}/discover-cluster-nodes"
    assert {"target_label": "__address__", "replacement": exporter} in nodes["relabel_configs"]
    assert jobs["redkeep-deployment"]["static_configs"][0]["targets"] == [exporter]
    port = r.bundle.settings.redis.tls_port
    pods = [f"redis-{i}.redis" for i in range(6 if topology == "cluster" else 2)]
    if topology == "sentinel":
        pods += [f"sentinel-{j}.sentinel" for j in range(3)]
    urls = [
        f"rediss://{pod}.{NAMESPACE}.svc.{DOMAIN}:{26379 if 'sentinel' in pod else port}"
        for pod in pods
    ]
    assert nodes["static_configs"][0]["targets"] == urls
    # What the exporter (its mounted bundle) accepts at /scrape: the same URLs.
    bundle = bundle_of(r, "exporter", tmp_path / "bundle")
    env = {"REDIS_EXPORTER_PASSWORD": "x"}  # the pod's, from the Secret
    allowed = set(allowed_targets(bundle.settings.exporter, env))  # keyed by key_of
    allowed |= {key_of(node) for node in deployment_nodes(bundle, env)[0]}
    assert {key_of(parse_url(url)) for url in urls} == allowed


def test_missing_ha_password_is_a_usage_error(base_bundle, tmp_path):
    bundle = make_bundle(base_bundle, tmp_path / "b", "cluster")
    env = bundle.env_path.read_text()
    bundle.env_path.write_text(
        "".join(line + "\n" for line in env.splitlines() if not line.startswith(HA_KEYS[0]))
    )
    result = run_redkeep("render", "k8s", bundle.root, "--out", tmp_path / "out")
    assert result.returncode == 2
    assert "REDIS_REPLICATION_PASSWORD missing" in result.stderr
    assert not (tmp_path / "out").exists()


# --- The pods' configs and scripts on real servers ---


class Pods:
    """Runs the pods of one rendered deployment as local processes (see the module doc)."""

    def __init__(self, rendered: Rendered, base: Path, first_address: int = 2) -> None:
        self.r = rendered
        self.first_address = first_address
        # A cluster node's name is only announced (cluster-announce-hostname), never resolved
        # here: it stays the DNS name. A replica compares its name with the primary's.
        self.localize_own_name = rendered.bundle.settings.deployment.topology != "cluster"
        self.base = base
        self.port, self.bus, self.sentinel_port = free_port(), free_port(), free_port()
        self.proxy_port, self.proxy_metrics, self.exporter_port = (free_port() for _ in "123")
        self.processes: list[subprocess.Popen] = []
        self.addresses: dict[str, str] = {}  # pod name -> 127.0.0.x
        self.tls = self._files("tls", "redis-tls")
        self.secret = self._files("secret", "redis-users")
        self.config = self._files("config", None)
        self.password = read_env(rendered.bundle.env_path)["REDIS_EXPORTER_PASSWORD"]

    def _files(self, name: str, secret: str | None) -> Path:
        directory = self.base / name
        directory.mkdir(mode=0o700)
        if secret is None:
            data = self.r.get("ConfigMap", "redis-config")["data"]
        else:
            data = self.r.get("Secret", secret)["stringData"]
        for key, text in data.items():
            path = directory / key
            path.write_text(text)
            path.chmod(0o600)
        return directory

    def address(self, pod: str) -> str:
        if pod not in self.addresses:
            self.addresses[pod] = f"127.0.0.{len(self.addresses) + self.first_address}"
        return self.addresses[pod]

    def localize(self, text: str, pod: str, run: Path, tls: Path | None = None) -> str:
        """The pod's view, on this machine: its address for names, temp dirs for paths."""
        pods = [f"redis-{i}" for i in range(12)] + [f"sentinel-{i}" for i in range(5)]
        replacements = {}
        if self.localize_own_name:
            for service in ("redis", "sentinel"):
                replacements[f"${{POD_NAME}}.{service}.{NAMESPACE}.svc.{DOMAIN}"] = "${POD_IP}"
        for name in pods:
            service = name.rsplit("-", 1)[0]
            replacements[f"{name}.{service}.{NAMESPACE}.svc.{DOMAIN}"] = self.address(name)
        # The data pods' Service: the first pod stands for it.
        replacements[f"redis-client.{NAMESPACE}.svc.{DOMAIN}"] = self.address("redis-0")
        replacements |= {
            "/etc/redis-secret": str(self.secret),
            "/etc/redis": str(run / "config"),
            "/etc/sentinel": str(run / "config"),
            "/tls": str(tls or self.tls),
            "/bundle": str(run / "bundle"),
            "0.0.0.0": self.address(pod),
            "/run/redis": str(run),
            "/data": str(run),
            "/sentinel": str(run),
            # Connections leave from the pod's own address too (the kernel would pick
            # 127.0.0.1), as they do from a pod.
            "bind * -::*": f"bind {self.address(pod)}\nbind-source-addr {self.address(pod)}",
            "-h 127.0.0.1": f"-h {self.address(pod)}",
        }
        ports = {"16380": self.bus, "26379": self.sentinel_port, "6380": self.port}
        ports |= {"9122": self.proxy_metrics, "9121": self.exporter_port}
        if self.r.bundle.settings.deployment.topology != "cluster":
            # The bundle's proxy port, as its Service has it.
            service = self.r.get("Service", "proxy")["spec"]["ports"][0]
            ports[str(service["port"])] = self.proxy_port
        # Whole names only: "/sentinel" not in "/sentinel.conf", "0.0.0.0" not in "10.0.0.0".
        pattern = "|".join(
            [
                rf"(?<![\w.]){re.escape(key)}(?![\w.-])"
                for key in sorted(replacements, key=len, reverse=True)
            ]
            + [rf"\b{port}\b" for port in ports]
        )

        def swap(match: re.Match) -> str:
            found = match.group(0)
            return replacements.get(found) or str(ports[found])

        return re.sub(pattern, swap, text)

    def certify_addresses(self) -> None:
        """The pods' certificate names the 127.0.0.x addresses that stand for their DNS names
        here, as it names those names: the exporter checks each pod it scrapes by the name it
        reaches it at. Before any pod starts."""
        ca_cert, ca_key = load_ca(self.r.bundle.tls)
        rendered = load_certificate(self.tls / "server.crt")
        addresses = [f"127.0.0.{i}" for i in range(1, 33)]  # every pod's (see localize)
        names = [*subject_alt_names(rendered), *addresses]
        now = dt.datetime.now(dt.UTC)
        cert, key = issue.make_server_cert(ca_cert, ca_key, names, "ecdsa-p256", 1, now)
        (self.tls / "server.crt").write_bytes(issue.cert_pem(cert))
        (self.tls / "server.key").write_bytes(issue.key_pem(key))

    def prepare(self, pod: str) -> Path:
        """The pod's own directory with its localized configs and scripts."""
        run = self.base / pod
        (run / "config").mkdir(mode=0o700, parents=True, exist_ok=True)
        for path in self.config.iterdir():
            (run / "config" / path.name).write_text(self.localize(path.read_text(), pod, run))
        return run

    def env(self, pod: str, **extra: str) -> dict[str, str]:
        return {
            "PATH": "/usr/bin:/bin",
            "POD_NAME": pod,
            "POD_IP": self.address(pod),
            "REDISCLI_AUTH": self.password,
            **extra,
        }

    def start_data(self, pod: str) -> Path:
        """start.sh, which execs redis-server; wait until it answers."""
        run = self.prepare(pod)
        log = (run / "stdout").open("w")
        process = subprocess.Popen(
            ["sh", str(run / "config" / "start.sh")],
            env=self.env(pod),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        self.wait(lambda: self.probe(pod, "live") == 0, f"{pod} answers", run)
        return run

    def start_sentinel(self, pod: str) -> Path:
        run = self.prepare(pod)
        init = subprocess.run(
            ["sh", str(run / "config" / "sentinel-init.sh")],
            env=self.env(pod),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert init.returncode == 0, init.stderr
        (run / "init.out").write_text(init.stdout)
        process = subprocess.Popen(
            ["redis-server", str(run / "sentinel.conf"), "--sentinel"],
            stdout=(run / "stdout").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        self.wait(lambda: self.probe(pod, "live", self.sentinel_port) == 0, f"{pod} up", run)
        return run

    def start_redkeep(self, name: str) -> Path:
        """The proxy or the exporter Deployment's container: its args, its redkeep.yaml from
        the ConfigMap, its projected Secret files, its environment from the Secrets."""
        pod = self.r.get("Deployment", name)["spec"]["template"]["spec"]
        run = self.base / name
        tls = run / "tls"
        for directory in (run / "bundle", tls):
            directory.mkdir(mode=0o700, parents=True)
        config = self.r.get("ConfigMap", "redkeep-config")["data"]["redkeep.yaml"]
        (run / "bundle" / "redkeep.yaml").write_text(self.localize(config, name, run, tls))
        container = pod["containers"][0]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        where = {"/tls": tls, "/bundle": run / "bundle"}
        for volume in pod["volumes"]:
            for source in volume.get("projected", {}).get("sources", []):
                if "secret" not in source:
                    continue  # the ConfigMap's redkeep.yaml, written above
                data = self.r.get("Secret", source["secret"]["name"])["stringData"]
                for item in source["secret"]["items"]:
                    path = where[mounts[volume["name"]]] / item["path"]
                    path.parent.mkdir(mode=0o700, exist_ok=True)
                    path.write_text(data[item["key"]])
                    path.chmod(0o600)
        env = {"PATH": "/usr/bin:/bin"}
        for variable in container["env"]:
            ref = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = self.r.secret(ref["name"], ref["key"])
        args = [self.localize(arg, name, run, tls) for arg in container["args"]]
        process = subprocess.Popen(
            [REDKEEP, *args],
            env=env,
            stdout=(run / "stdout").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return run

    def probe(self, pod: str, check: str, port: int | None = None, password=None) -> int:
        run = self.base / pod
        env = self.env(pod, REDISCLI_AUTH=password or self.password)
        result = subprocess.run(
            ["sh", str(run / "config" / "probe.sh"), check, str(port or self.port)],
            env=env,
            capture_output=True,
            timeout=30,
            check=False,
        )
        return result.returncode

    def cli(self, pod: str, *args: str, user="admin", port: int | None = None) -> str:
        password = read_env(self.r.bundle.env_path)[f"REDIS_{user.upper()}_PASSWORD"]
        result = subprocess.run(
            [
                "redis-cli", "--no-auth-warning", "--tls", "--cacert", f"{self.tls}/ca.crt",
                "--cert", f"{self.tls}/client.crt", "--key", f"{self.tls}/client.key",
                "-h", self.address(pod), "-p", str(port or self.port), "--user", user, *args,
            ],
            env={"PATH": "/usr/bin:/bin", "REDISCLI_AUTH": password},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )  # fmt: skip
        return result.stdout + result.stderr

    def wait(self, condition, what: str, run: Path | None = None) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            if time.monotonic() > deadline:
                logs = (run / "stdout").read_text()[-2000:] if run else ""
                pytest.fail(f"not within {WAIT} s: {what}\n{logs}")
            time.sleep(0.1)

    def stop(self) -> None:
        for process in self.processes:
            stop_process(process)


@pytest.fixture
def pods(tmp_path):
    require_binary("redis-server")
    require_binary("redis-cli")
    started = []

    def make(rendered: Rendered, first_address: int = 2) -> Pods:
        pods = Pods(rendered, tmp_path, first_address)
        started.append(pods)
        return pods

    yield make
    for pods in started:
        pods.stop()


def test_standalone_pod_runs_and_probes_authenticate(rendered, pods):
    deployment = pods(rendered["standalone"])
    deployment.start_data("redis-0")
    assert deployment.probe("redis-0", "ready") == 0
    # The probe logs in: a wrong password fails it (a bare PING would pass).
    assert deployment.probe("redis-0", "ready", password="wrong") != 0
    assert deployment.probe("redis-0", "live", password="wrong") != 0
    # What the server holds: the ACL from the Secret, TLS only.
    users = deployment.cli("redis-0", "acl", "users")
    assert users.split() == ["admin", "app", "backup", "default", "exporter"]
    assert deployment.cli("redis-0", "config", "get", "port").split()[1] == "0"


def test_proxy_and_exporter_deployments_serve_with_their_config(rendered, pods):
    """The proxy and the exporter as their Deployments run them (args, redkeep.yaml from the
    ConfigMap, Secret files): an application through the proxy, metrics from the exporter.
    The first pod gets 127.0.0.1, which the pods' certificate names (as it names the pods'
    DNS names, which the proxy and the exporter verify in the cluster)."""
    r = rendered["standalone"]
    deployment = pods(r, first_address=1)
    deployment.start_data("redis-0")
    proxy = deployment.start_redkeep("proxy")
    exporter = deployment.start_redkeep("exporter")
    app_password = r.secret("app-credentials", "password")

    def answers() -> bool:
        return through_proxy(deployment, app_password, "PING") == b"+OK\r\n+PONG\r\n"

    deployment.wait(answers, "the app through the proxy", proxy)

    def metrics() -> str:
        url = f"http://{deployment.address('exporter')}:{deployment.exporter_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
                return response.read().decode()
        except OSError:
            return ""

    deployment.wait(lambda: "\nredis_up 1" in metrics(), "the exporter scrapes", exporter)


def through_proxy(deployment: Pods, app_password: str, command: str) -> bytes:
    """AUTH as app and one inline command through the proxy: the two replies (b"" when the
    proxy does not answer yet)."""
    context = ssl.create_default_context(cafile=str(deployment.tls / "ca.crt"))
    context.load_cert_chain(deployment.tls / "client.crt", deployment.tls / "client.key")
    address = (deployment.address("proxy"), deployment.proxy_port)
    try:
        with socket.create_connection(address, timeout=5) as raw:
            # The name applications use in the cluster, which the proxy's certificate holds.
            name = f"proxy.{NAMESPACE}.svc.{DOMAIN}"
            with context.wrap_socket(raw, server_hostname=name) as tls:
                tls.sendall(f"AUTH app {app_password}\r\n{command}\r\n".encode())
                reply = b""
                while reply.count(b"\r\n") < 2:
                    chunk = tls.recv(100)
                    if not chunk:
                        return b""
                    reply += chunk
                return reply
    except OSError:
        return b""


def exporter_get(deployment: Pods, path: str) -> str:
    """The exporter's answer at `path` ("" while it does not answer yet)."""
    url = f"http://{deployment.address('exporter')}:{deployment.exporter_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            return response.read().decode()
    except OSError:
        return ""


def exporter_lists(deployment: Pods) -> set[str]:
    """The targets of the exporter's /discover-cluster-nodes."""
    answer = exporter_get(deployment, "/discover-cluster-nodes")
    return {target for group in json.loads(answer or "[]") for target in group["targets"]}


def pod_role(deployment: Pods, target: str) -> str:
    """The role one /scrape of `target` reports: redis_instance_info's, or "sentinel"."""
    lines = exporter_get(deployment, f"/scrape?target={target}").splitlines()
    if "redis_up 1" not in lines:
        return ""
    if any(line.startswith("redis_sentinel_masters ") for line in lines):
        return "sentinel"
    info = [line for line in lines if line.startswith("redis_instance_info{")]
    return re.search(r'role="(\w+)"', info[0]).group(1) if info else ""


def test_a_typo_in_a_directive_stops_the_server(rendered, pods):
    """The real-server check above can fail: redis-server refuses an unknown directive."""
    deployment = pods(rendered["standalone"])
    run = deployment.prepare("redis-0")
    conf = run / "config" / "redis.conf"
    conf.write_text(conf.read_text().replace("maxmemory-policy", "maxmemory-polcy"))
    result = subprocess.run(
        ["redis-server", str(conf)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode != 0
    assert "maxmemory-polcy" in result.stdout + result.stderr


def test_sentinel_pods_replicate_reach_quorum_and_fail_over(rendered, pods):
    r = rendered["sentinel"]
    deployment = pods(r)
    deployment.certify_addresses()
    deployment.start_data("redis-0")
    replica = deployment.start_data("redis-1")
    assert "no Sentinel answered" in (replica / "stdout").read_text()
    # The replica logs in as `replication` (masterauth from the Secret) over TLS.
    deployment.wait(lambda: deployment.probe("redis-1", "ready-replicated") == 0, "redis-1 synced")
    assert deployment.probe("redis-0", "ready-replicated") == 0
    info = deployment.cli("redis-1", "info", "replication")
    assert (
        "master_link_status:up" in info and f"master_host:{deployment.address('redis-0')}" in info
    )
    deployment.cli("redis-0", "set", "k", "v")  # needs the replica: min-replicas-to-write 1
    deployment.wait(lambda: deployment.cli("redis-1", "get", "k").strip() == "v", "k replicated")

    for sentinel in ("sentinel-0", "sentinel-1", "sentinel-2"):
        deployment.start_sentinel(sentinel)
    # The first one found no peer; the later ones asked it (the `sentinel` user on Sentinels).
    assert "no other Sentinel answered" in (deployment.base / "sentinel-0" / "init.out").read_text()
    assert "names the primary" in (deployment.base / "sentinel-2" / "init.out").read_text()
    # Hello messages over the data nodes (the `sentinel` user there) and between Sentinels:
    # quorum reachable on every Sentinel.
    for sentinel in ("sentinel-0", "sentinel-1", "sentinel-2"):
        deployment.wait(
            lambda s=sentinel: deployment.probe(s, "ready-sentinel", deployment.sentinel_port) == 0,
            f"{sentinel} sees a quorum",
        )
    # The proxy asks the Sentinels (as app, over TLS, by their pods' names) for the primary.
    app_password = r.secret("app-credentials", "password")
    proxy = deployment.start_redkeep("proxy")

    def writes(key: str) -> bool:
        return through_proxy(deployment, app_password, f"SET {key} v") == b"+OK\r\n+OK\r\n"

    deployment.wait(lambda: writes("before"), "a write through the proxy", proxy)
    assert deployment.cli("redis-0", "get", "before").strip() == "v"
    # The exporter, as `up` runs one for a sentinel bundle: every pod at /scrape, listed by
    # /discover-cluster-nodes; /metrics holds the deployment's own metrics, no one pod's.
    exporter = deployment.start_redkeep("exporter")
    data_port, sentinel_port = deployment.port, deployment.sentinel_port
    url = {pod: f"rediss://{deployment.address(pod)}:{data_port}" for pod in ("redis-0", "redis-1")}
    url |= {
        f"sentinel-{j}": f"rediss://{deployment.address(f'sentinel-{j}')}:{sentinel_port}"
        for j in range(3)
    }
    deployment.wait(
        lambda: exporter_lists(deployment) == set(url.values()),
        "the exporter lists every pod",
        exporter,
    )
    roles = {"redis-0": "master", "redis-1": "slave"}
    assert {pod: pod_role(deployment, target) for pod, target in url.items()} == {
        pod: roles.get(pod, "sentinel") for pod in url
    }
    deployment_metrics = exporter_get(deployment, "/metrics").splitlines()
    assert 'redkeep_exporter_collector_success{collector="background"} 1' in deployment_metrics
    assert not [line for line in deployment_metrics if line.startswith("redis_up")]
    assert exporter_get(deployment, "/health")  # its probes' path answers 200
    # A data pod that restarts asks the Sentinels whom to follow (the `replication` user).
    deployment.cli("redis-1", "shutdown", "nosave")
    deployment.wait(lambda: deployment.probe("redis-1", "live") != 0, "redis-1 stopped")
    replica = deployment.start_data("redis-1")
    assert "names the primary" in (replica / "stdout").read_text()
    deployment.wait(lambda: deployment.probe("redis-1", "ready-replicated") == 0, "resynced")

    # A failover with the rendered users: the Sentinels agree (the `sentinel` user between
    # them) and promote redis-1 (the `sentinel` user on the data nodes).
    deployment.cli("redis-0", "shutdown", "nosave")
    new_primary = deployment.address("redis-1")

    def promoted() -> bool:
        answer = deployment.cli(
            "sentinel-0",
            "sentinel",
            "get-master-addr-by-name",
            "redkeep",
            user="app",
            port=deployment.sentinel_port,
        )
        return answer.split()[:1] == [new_primary]

    deployment.wait(promoted, "the Sentinels promote redis-1")
    deployment.wait(
        lambda: "role:master" in deployment.cli("redis-1", "info", "replication"),
        "redis-1 is the primary",
    )
    # redis-0 comes back as a replica of the new primary: start.sh asked the Sentinels.
    restarted = deployment.start_data("redis-0")
    assert f"names the primary: {new_primary}" in (restarted / "stdout").read_text()
    deployment.wait(lambda: deployment.probe("redis-0", "ready-replicated") == 0, "redis-0 follows")
    assert f"master_host:{new_primary}" in deployment.cli("redis-0", "info", "replication")
    # The exporter sees the new roles: redis-1 the primary, redis-0 its replica.
    deployment.wait(
        lambda: (
            [pod_role(deployment, url[pod]) for pod in ("redis-1", "redis-0")]
            == ["master", "slave"]
        ),
        "the exporter scrapes redis-1 as the primary",
        exporter,
    )
    # The proxy followed: a write through it lands on redis-1 (a replica would refuse it).
    deployment.wait(lambda: writes("after"), "a write through the proxy after failover", proxy)
    assert "role:master" in deployment.cli("redis-1", "info", "replication")
    assert deployment.cli("redis-1", "get", "after").strip() == "v"


def test_cluster_pods_form_a_cluster_with_the_job_script(rendered, pods):
    r = rendered["cluster"]
    deployment = pods(r)
    nodes = [f"redis-{i}" for i in range(6)]
    for node in nodes:
        deployment.start_data(node)
        # Alive, not ready: no slots yet.
        assert deployment.probe(node, "ready-cluster") != 0
    job_env = deployment.env(
        "redis-0", REDISCLI_AUTH=read_env(r.bundle.env_path)["REDIS_ADMIN_PASSWORD"]
    )
    job = subprocess.run(
        ["sh", str(deployment.base / "redis-0" / "config" / "cluster-create.sh")],
        env=job_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert job.returncode == 0, job.stdout + job.stderr
    for node in nodes:
        deployment.wait(lambda n=node: deployment.probe(n, "ready-cluster") == 0, f"{node} ready")
    info = deployment.cli("redis-0", "cluster", "info")
    assert "cluster_slots_assigned:16384" in info and "cluster_known_nodes:6" in info
    # Shards as plan_nodes lays them out: redis-3 replicates redis-0, and so on.
    for replica, primary in (
        ("redis-3", "redis-0"),
        ("redis-4", "redis-1"),
        ("redis-5", "redis-2"),
    ):
        primary_id = deployment.cli(primary, "cluster", "myid").strip()
        assert f"master_host:{deployment.address(primary)}" in deployment.cli(
            replica, "info", "replication"
        )
        assert primary_id in deployment.cli(replica, "cluster", "nodes")
    # Redirections name the pods by DNS name (cluster-preferred-endpoint-type hostname):
    # slot 15495 ({a}) is shard 2's.
    moved = deployment.cli("redis-0", "set", "{a}key", "v", user="app")
    assert f"MOVED 15495 redis-2.redis.{NAMESPACE}.svc.{DOMAIN}:{deployment.port}" in moved
    shards = deployment.cli("redis-0", "cluster", "shards")
    assert f"redis-4.redis.{NAMESPACE}.svc.{DOMAIN}" in shards
    # A failover: redis-3 takes shard 0 over; redis-0 comes back as its replica (nodes.conf
    # on the data volume). Running the Job again then changes nothing.
    deployment.cli("redis-0", "shutdown", "nosave")
    deployment.wait(
        lambda: "role:master" in deployment.cli("redis-3", "info", "replication"),
        "redis-3 takes shard 0 over",
    )
    deployment.start_data("redis-0")
    deployment.wait(lambda: deployment.probe("redis-0", "ready-cluster") == 0, "redis-0 back")
    again = subprocess.run(
        ["sh", str(deployment.base / "redis-0" / "config" / "cluster-create.sh")],
        env=job_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "role:master" in deployment.cli("redis-3", "info", "replication")
    assert f"master_host:{deployment.address('redis-3')}" in deployment.cli(
        "redis-0", "info", "replication"
    )
    assert "cluster_state:ok" in deployment.cli("redis-0", "cluster", "info")
