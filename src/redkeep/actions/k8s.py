"""`redkeep render k8s DIR`: write the Kubernetes manifests of a bundle's deployment.

The manifests (render/k8s.py) hold no secret; the Secrets go to their own file, 0600. The pods'
server certificates are issued here, from the bundle's CA, for the names pods and Services have
in the cluster (each pod's DNS name under the headless Service): the bundle's own certificates
name the hosts `redkeep up` and compose use, and redkeep's clients check the name.
"""

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from redkeep import __version__
from redkeep.bundle import Bundle
from redkeep.errors import UsageError
from redkeep.fsutil import PUBLIC_MODE, SECRET_MODE, atomic_write, ensure_private_dir
from redkeep.pki import issue
from redkeep.pki.files import load_ca
from redkeep.render.acl import hashes_in, render_acl
from redkeep.render.env import ALL_PASSWORD_KEYS, password_roles
from redkeep.render.k8s import (
    HEADER,
    SECRETS_HEADER,
    K8sOptions,
    SecretMaterial,
    has_proxy,
    layout_of,
    proxy_names,
    render_manifests,
    render_prometheus_scrape,
    render_secrets,
    server_names,
    to_yaml,
)

BASIC_AUTH_KEY = "EXPORTER_BASIC_AUTH_PASSWORD"
NAMESPACE_FILE = "namespace.yaml"
MANIFESTS_FILE = "deployment.yaml"
SECRETS_FILE = "secrets.yaml"
PROMETHEUS_FILE = "prometheus-scrape.yml"


@dataclass
class K8sReport:
    out: Path
    topology: str
    namespace: str
    written: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def render_k8s(
    bundle: Bundle, out: Path, options: K8sOptions, now: dt.datetime | None = None
) -> K8sReport:
    """Write namespace.yaml, deployment.yaml, secrets.yaml (0600) and prometheus-scrape.yml
    (the jobs that scrape every pod through the exporter) into `out`.

    Raise UsageError when the bundle lacks a password or its CA key (to sign the pods'
    certificates): nothing is written then.
    """
    now = now or dt.datetime.now(dt.UTC)
    settings = bundle.settings
    layout = layout_of(settings, options)
    passwords = _passwords(bundle)
    material = _material(bundle, passwords, layout, now)
    namespace, objects = render_manifests(settings, options)
    values = {"name": settings.name, "topology": layout.topology, "version": __version__}
    files = [
        (NAMESPACE_FILE, to_yaml(namespace, HEADER.format(**values)), PUBLIC_MODE),
        (MANIFESTS_FILE, to_yaml(objects, HEADER.format(**values)), PUBLIC_MODE),
        (
            SECRETS_FILE,
            to_yaml(render_secrets(settings, options, material), SECRETS_HEADER.format(**values)),
            SECRET_MODE,
        ),
        (PROMETHEUS_FILE, render_prometheus_scrape(settings, options), PUBLIC_MODE),
    ]
    ensure_private_dir(out)  # it holds the secrets file
    report = K8sReport(out=out, topology=layout.topology, namespace=options.namespace)
    for name, text, mode in files:
        atomic_write(out / name, text, mode)
        report.written.append(name)
    report.notes = _notes(bundle, layout)
    return report


def _passwords(bundle: Bundle) -> dict[str, str]:
    """Every password the pods need, from .env; a missing one is a usage error."""
    settings = bundle.settings
    secrets = bundle.secrets()
    keys = {role: ALL_PASSWORD_KEYS[role] for role in password_roles(settings.deployment.topology)}
    if settings.exporter.basic_auth_user:
        keys["exporter-basic-auth"] = BASIC_AUTH_KEY
    missing = [key for key in keys.values() if not secrets.get(key)]
    if missing:
        raise UsageError(
            f"{bundle.env_path}: {', '.join(missing)} missing; the {settings.deployment.topology} "
            f"deployment needs it: run `redkeep init {bundle.root} --force` to add new "
            "passwords (existing ones are kept), or restore .env from your secret store"
        )
    return {role: secrets[key] for role, key in keys.items()}


def _material(
    bundle: Bundle, passwords: dict[str, str], layout, now: dt.datetime
) -> SecretMaterial:
    settings = bundle.settings
    tls = settings.tls
    files = bundle.tls
    ca_cert, ca_key = load_ca(files)
    client_cert, client_key = files.client_cert(), files.client_key()
    for path in (client_cert, client_key):
        if not path.is_file():
            raise UsageError(
                f"{path}: not found; the pods present the bundle's client certificate: run "
                f"`redkeep init {bundle.root} --force` to issue it again"
            )
    server = issue.make_server_cert(
        ca_cert, ca_key, server_names(layout), tls.key_type, tls.cert_days, now
    )
    proxy = issue.make_server_cert(
        ca_cert, ca_key, proxy_names(layout), tls.key_type, tls.cert_days, now
    )
    return SecretMaterial(
        passwords=passwords,
        acl=render_acl(settings, passwords, _kept_hashes(bundle)),
        ca_cert=issue.cert_pem(ca_cert).decode(),
        client_cert=client_cert.read_text(),
        client_key=client_key.read_text(),
        server_cert=issue.cert_pem(server[0]).decode(),
        server_key=issue.key_pem(server[1]).decode(),
        proxy_cert=issue.cert_pem(proxy[0]).decode(),
        proxy_key=issue.key_pem(proxy[1]).decode(),
    )


def _kept_hashes(bundle: Bundle) -> dict[str, list[str]]:
    """Password hashes the bundle's servers accept now (old ones during a rotation stay valid
    in the pods too): from the first data node's ACL file, or the standalone one."""
    for path in (bundle.node_dir("redis-0") / "users.acl", bundle.acl_path):
        if path.is_file():
            return hashes_in(path.read_text())
    return {}


def _notes(bundle: Bundle, layout) -> list[str]:
    """What the manifests leave out, said at render time."""
    settings = bundle.settings
    notes = []
    if not has_proxy(layout):
        notes.append(
            f"no proxy: it is no cluster router (it would pass Cluster redirections to other "
            f"pods on to clients); applications connect directly (label their pods "
            f"redkeep/client={settings.name})"
        )
    notes.append(
        "prometheus-scrape.yml: add its jobs to your Prometheus (every pod through the exporter)"
    )
    if settings.exporter.tls_cert_file:
        notes.append("the exporter serves plain HTTP in the cluster (HTTPS is not rendered)")
    if not settings.redis.maxmemory_bytes():
        notes.append("maxmemory is 0: the Redis pods get no memory limit")
    return notes
