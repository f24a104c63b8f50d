"""`redkeep init DIR`: render a complete bundle; never replace an existing secret."""

import datetime as dt
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyrage
from pydantic import ValidationError

from redkeep.actions.stack import proxy_clash
from redkeep.bundle import CONFIG_NAME, Bundle
from redkeep.config.deployment import BUS_PORT_OFFSET, SENTINEL_PORT_OFFSET, plan_nodes
from redkeep.config.exporter import ExporterSettings
from redkeep.config.load import format_problem, load_settings
from redkeep.config.proxy import ProxySettings
from redkeep.config.schema import Settings
from redkeep.envfile import generate_password, parse_env, read_env, update_env
from redkeep.errors import ConfigError, RedkeepError, UsageError
from redkeep.fsutil import SECRET_MODE, atomic_write, ensure_private_dir
from redkeep.pki import issue
from redkeep.pki.files import DEFAULT_CLIENT, TLSFiles, issue_node, node_names, write_pair
from redkeep.pki.inspect import (
    key_description,
    key_matches,
    load_certificate,
    load_private_key,
    subject_alt_names,
    verify_certificate,
)
from redkeep.redis.target import parse_host_port
from redkeep.render import conf_quote
from redkeep.render import nodes as node_files
from redkeep.render.acl import hashes_in
from redkeep.render.bundle import bundle_files
from redkeep.render.env import (
    ALL_PASSWORD_KEYS,
    GENERATED_SECRETS,
    OPERATOR_SECRETS,
    password_roles,
)
from redkeep.render.redis_conf import ConfPaths, render_redis_conf
from redkeep.render.sentinel_conf import render_sentinel_conf
from redkeep.stack import redis_server
from redkeep.stack.children import end_child

DEFAULT_TLS_PORT = 6380  # redis.tls_port's default; the helpers' default ports are set from it
MAX_PORT = 65535
KEY_NAMES = {"ecdsa-p256": "ECDSA secp256r1", "rsa-3072": "RSA 3072"}
# What init creates besides files at the top: removed again when init fails.
BUNDLE_DIRS = ("tls", "keys", "data", "run", "redis", "prometheus", "alertmanager", "grafana",
               "nginx", "image")  # fmt: skip
CHECK_TIMEOUT = 30  # seconds redis-server may take to load the files under check
# "12345:M 30 Nov 2026 12:34:04.056 # ": the prefix of a redis-server log line.
LOG_PREFIX = re.compile(r"^\d+:[A-Z] \d+ \w+ \d+ [\d:.]+ [.*#-] ")
# Log lines that say nothing about the files under check.
LOG_NOISE = (
    "Configuration loaded",
    "Server initialized",
    "WARNING Memory overcommit",
    "Failed to configure TLS.",
)


@dataclass
class InitReport:
    root: Path
    written: list[str] = field(default_factory=list)
    kept_secrets: list[str] = field(default_factory=list)
    new_secrets: list[str] = field(default_factory=list)
    certificates: list[str] = field(default_factory=list)
    kept_hashes: int = 0
    checked_with: str = ""
    topology: str = "standalone"
    notes: list[str] = field(default_factory=list)  # learned Sentinel state left out, and why


# `init --topology ... --replicas N ...`: the flag that stands for each deployment setting.
DEPLOYMENT_FLAGS = {
    "topology": "--topology",
    "replicas": "--replicas",
    "sentinels": "--sentinels",
    "shards": "--shards",
}


def init_bundle(
    root: Path,
    force: bool = False,
    tls_port: int | None = None,
    now: dt.datetime | None = None,
    deployment: dict[str, object] | None = None,
) -> InitReport:
    """Write a bundle into `root`, or re-render an existing one with `force`.

    `deployment` sets settings of the `deployment:` section (topology, replicas, sentinels,
    shards: the flags of `init`). Secrets already in `.env` and an existing CA are kept;
    only missing ones are created. A Sentinel's learned state in its sentinel.conf is kept.
    Raise UsageError if `root` already holds bundle files and `force` is not set, or if the
    flags would change an existing bundle's topology.
    """
    now = now or dt.datetime.now(dt.UTC)
    bundle = Bundle(root)
    _refuse_overwrite(bundle, force)
    settings, settings_changed = _settings(bundle, tls_port, deployment or {})
    # A failed init removes the directories it created, so a first attempt with a bad setting
    # leaves nothing behind that a second one would take for an existing bundle.
    created = [path for path in (root, *(root / name for name in BUNDLE_DIRS)) if not path.exists()]
    try:
        return _render(bundle, settings, settings_changed, now)
    except BaseException:
        for path in created:
            shutil.rmtree(path, ignore_errors=True)
        raise


def _render(
    bundle: Bundle, settings: Settings, settings_changed: bool, now: dt.datetime
) -> InitReport:
    root = bundle.root
    topology = settings.deployment.topology
    report = InitReport(root=root, topology=topology)
    ensure_private_dir(root)
    passwords, other_secrets = _passwords(bundle, report, topology)
    report.certificates = ensure_certificates(bundle.tls, settings, now)
    if topology != "standalone":
        report.certificates += ensure_node_certificates(bundle.tls, settings, now)
    if not bundle.exists():  # a new bundle: encrypted backups from the start
        settings, line = ensure_backup_key(bundle, settings)
        report.certificates.append(line)
    for directory in (bundle.data_dir, bundle.run_dir):
        ensure_private_dir(directory)
    if topology != "standalone":  # each node's own data directory, as compose mounts it
        for node in plan_nodes(settings.deployment, settings.redis.tls_port):
            ensure_private_dir(bundle.node_data_dir(node.name))
    bundle.redis_dir.mkdir(exist_ok=True)
    kept = kept_hashes(bundle, settings)
    report.kept_hashes = sum(len(hashes) for hashes in kept.values())
    state = None
    if topology == "sentinel":
        state = node_files.sentinel_state(
            settings, sentinel_texts(bundle, settings), node_files.layout(settings, True)
        )
        report.notes += state.notes
    files = bundle_files(
        settings,
        passwords,
        os.getuid(),
        os.getgid(),
        kept,
        other_secrets,
        root=root.resolve(),
        sentinel_state=state,
    )
    # redis-server judges the new redis.conf and users.acl before any file is replaced, so a
    # setting it refuses leaves the bundle as it was.
    acl_path = "redis/users.acl" if topology == "standalone" else "redis/nodes/redis-0/users.acl"
    acl = next(item.content for item in files if item.path == acl_path)
    report.checked_with = check_local_config(bundle, settings, acl, passwords)
    marker = files.pop()  # redkeep.yaml: written only once everything else is in place
    for item in files:
        if item.path == ".env" and bundle.env_path.exists():
            update_env(bundle.env_path, parse_env(item.content))
        else:
            atomic_write(root / item.path, item.content, item.mode)
        _note_written(report, item.path)
    _remove_stale_image_files(root / "image", {Path(item.path).name for item in files})
    if settings_changed:
        atomic_write(root / marker.path, marker.content, marker.mode)
        _note_written(report, marker.path)
    return report


def _note_written(report: InitReport, path: str) -> None:
    """Record a written file by what a person looks for: a top-level file or its directory."""
    top, _, rest = path.partition("/")
    name = f"{top}/" if rest else top
    if name not in report.written:
        report.written.append(name)


def _remove_stale_image_files(image_dir: Path, current: set[str]) -> None:
    """Remove what older releases put into image/: the package source and other wheels."""
    for stale in (
        image_dir / "src",
        image_dir / "pyproject.toml",
        *image_dir.glob("redkeep-*.whl"),
    ):
        if stale.name in current:
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)
        else:
            stale.unlink(missing_ok=True)


def kept_hashes(bundle: Bundle, settings: Settings) -> dict[str, list[str]]:
    """Password hashes already valid for each user, from every ACL file the bundle holds (its
    users.acl, or each node's and each Sentinel's): they stay valid when it is re-rendered."""
    if settings.deployment.topology == "standalone":
        return hashes_in(bundle.acl_path.read_text()) if bundle.acl_path.exists() else {}
    kept: dict[str, list[str]] = {}
    for node in plan_nodes(settings.deployment, settings.redis.tls_port):
        path = bundle.node_dir(node.name) / "users.acl"
        if path.exists():
            for user, hashes in hashes_in(path.read_text()).items():
                known = kept.setdefault(user, [])
                known += [digest for digest in hashes if digest not in known]
    return kept


def sentinel_texts(bundle: Bundle, settings: Settings) -> dict[str, str]:
    """The bundle's sentinel.conf files as the Sentinels (may have) rewritten them, by name."""
    texts = {}
    for node in plan_nodes(settings.deployment, settings.redis.tls_port):
        path = bundle.node_dir(node.name) / "sentinel.conf"
        if node.role == "sentinel" and path.exists():
            texts[node.name] = path.read_text()
    return texts


def _refuse_overwrite(bundle: Bundle, force: bool) -> None:
    if force:
        return
    existing = [
        name
        for name in (
            CONFIG_NAME,
            ".env",
            "redis/redis.conf",
            "redis/users.acl",
            "redis/nodes",
            "tls/ca.crt",
        )
        if (bundle.root / name).exists()
    ]
    if existing:
        raise UsageError(
            f"{bundle.root} already holds a bundle ({', '.join(existing)}); pass --force to "
            "re-render it (existing secrets and certificates are kept)"
        )


def _settings(
    bundle: Bundle, tls_port: int | None, deployment: dict[str, object]
) -> tuple[Settings, bool]:
    """The effective settings (file, environment, flags) and whether redkeep.yaml must change."""
    path = bundle.config_path if bundle.exists() else None
    on_file = load_settings(path, environ={})
    settings = load_settings(path)
    flags = {key: value for key, value in deployment.items() if value is not None}
    if tls_port is not None or flags:
        data = settings.model_dump()
        if tls_port is not None:
            data["redis"]["tls_port"] = tls_port
        data["deployment"] |= flags
        try:
            settings = Settings.model_validate(data)
        except ValidationError as error:
            origins = {f"deployment.{key}": DEPLOYMENT_FLAGS[key] for key in flags}
            # A rule across settings (an even number of Sentinels) is the section's.
            origins["deployment"] = " ".join(
                f"{DEPLOYMENT_FLAGS[key]} {value}" for key, value in flags.items()
            )
            problems = [format_problem(item, origins) for item in error.errors()]
            raise ConfigError(
                f"{bundle.root}: {len(problems)} invalid setting(s)", problems
            ) from None
    if path is None:  # a new bundle: --tls-port or REDKEEP_REDIS__TLS_PORT
        settings = _helpers_follow_tls_port(settings)
    if path is None and proxy_clash(settings) and settings.redis.tls_port > 1:
        settings = _proxy_moved(settings)
    _refuse_ports_out_of_range(settings)
    _refuse_helper_on_node_port(settings)
    now, before = settings.deployment.topology, on_file.deployment.topology
    if path is not None and now != before:
        raise UsageError(
            f"{bundle.root} is a {before} bundle; init does not turn it into a {now} one "
            "(its data and files are laid out per node): create a new bundle with "
            f"`redkeep init NEWDIR --topology {now}` and restore a backup into it"
        )
    return settings, path is None or settings != on_file


def _helpers_follow_tls_port(settings: Settings) -> Settings:
    """A new bundle's proxy, proxy metrics and exporter ports move with --tls-port, keeping
    their distance from the default TLS port (6380: 6381, 9122, 9121), so that bundles
    whose TLS ports are a few apart do not share them. Ports set in the file or the
    environment stay as set."""
    tls_port = settings.redis.tls_port
    if tls_port == DEFAULT_TLS_PORT:
        return settings

    def moved(listen: str | None, default: str | None) -> str | None:
        if listen is None or listen != default:
            return listen
        host, port = parse_host_port(listen)
        offset = port - DEFAULT_TLS_PORT
        port = tls_port + offset if tls_port + offset <= MAX_PORT else tls_port - offset
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    proxy_defaults, exporter_defaults = ProxySettings(), ExporterSettings()
    proxy = settings.proxy.model_copy(
        update={
            "listen": moved(settings.proxy.listen, proxy_defaults.listen),
            "metrics_listen": moved(settings.proxy.metrics_listen, proxy_defaults.metrics_listen),
        }
    )
    exporter = settings.exporter.model_copy(
        update={"listen": moved(settings.exporter.listen, exporter_defaults.listen)}
    )
    return settings.model_copy(update={"proxy": proxy, "exporter": exporter})


def _proxy_moved(settings: Settings) -> Settings:
    """A new deployment's proxy on the port below redis.tls_port (6379 by default): its
    default port is the one a data node takes (tls_port + 1)."""
    host, _ = parse_host_port(settings.proxy.listen, "proxy.listen")
    port = settings.redis.tls_port - 1
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    proxy = settings.proxy.model_copy(update={"listen": listen})
    return settings.model_copy(update={"proxy": proxy})


# Why a node's port is where it is: tls_port plus an offset per role (config/deployment.py).
PORT_LAYOUT = {
    "primary": "data node i listens on tls_port + i",
    "replica": "data node i listens on tls_port + i",
    "sentinel": f"Sentinel j listens on tls_port + {SENTINEL_PORT_OFFSET} + j",
    "bus": f"node i's cluster bus is tls_port + {BUS_PORT_OFFSET} + i",
}


def _refuse_ports_out_of_range(settings: Settings) -> None:
    """Every node's port and cluster bus must exist: say which would not, and why, before
    redis-server refuses the rendered file."""
    tls_port = settings.redis.tls_port
    ports = [
        (port, node.name, kind)
        for node in plan_nodes(settings.deployment, tls_port)
        for port, kind in ((node.port, node.role), (node.bus_port, "bus"))
        if port
    ]
    port, name, kind = max(ports)
    if port > MAX_PORT:
        what = f"{name}'s cluster bus" if kind == "bus" else name
        raise UsageError(
            f"redis.tls_port {tls_port} puts {what} on port {port}, past {MAX_PORT} "
            f"({PORT_LAYOUT[kind]}): choose a --tls-port of at most {tls_port - (port - MAX_PORT)}"
        )


def _refuse_helper_on_node_port(settings: Settings) -> None:
    """The proxy, its metrics and the exporter must not listen on a node's, a Sentinel's or a
    cluster bus port: `up` would refuse to start, or a helper would take a node's port."""
    taken = {}
    for node in plan_nodes(settings.deployment, settings.redis.tls_port):
        taken[node.port] = f"{node.name}'s port"
        if node.bus_port:
            taken[node.bus_port] = f"{node.name}'s cluster bus port"
    helpers = {"exporter.listen": settings.exporter.listen}
    if settings.proxy.enabled and settings.deployment.topology != "cluster":
        helpers |= {
            "proxy.listen": settings.proxy.listen,
            "proxy.metrics_listen": settings.proxy.metrics_listen,
        }
    for setting, listen in helpers.items():
        port = parse_host_port(listen, setting)[1] if listen else None
        if port in taken:
            raise UsageError(
                f"{setting} {listen} is {taken[port]} (redis.tls_port "
                f"{settings.redis.tls_port}): set {setting} in redkeep.yaml to a free port, "
                "or choose another --tls-port"
            )


def _passwords(
    bundle: Bundle, report: InitReport, topology: str
) -> tuple[dict[str, str], dict[str, str]]:
    """(ACL passwords by role, other secrets by .env key): kept when present, else new."""
    existing = read_env(bundle.env_path)

    def secret(key: str) -> str:
        if existing.get(key):
            report.kept_secrets.append(key)
            return existing[key]
        report.new_secrets.append(key)
        return generate_password()

    passwords = {role: secret(ALL_PASSWORD_KEYS[role]) for role in password_roles(topology)}
    others = {key: secret(key) for key in GENERATED_SECRETS}
    others |= {key: existing[key] for key in OPERATOR_SECRETS if existing.get(key)}
    return passwords, others


def ensure_certificates(files: TLSFiles, settings: Settings, now: dt.datetime) -> list[str]:
    """Create what is missing or unusable of CA, server and client certificate; keep the rest.

    A leaf is re-issued when it is missing, not issued by the CA, expired, not matching its
    key, of another key type, or (server) for other names. Return one line per action taken.
    Raise UsageError if only half of the CA is there: a new CA would orphan every client.
    """
    ensure_private_dir(files.directory)
    tls = settings.tls
    if files.ca_cert.exists() != files.ca_key.exists():
        present, absent = (
            (files.ca_cert, files.ca_key)
            if files.ca_cert.exists()
            else (files.ca_key, files.ca_cert)
        )
        raise UsageError(
            f"{present} exists but {absent} does not: restore it (certificates are issued "
            f"with the CA's key), or move {files.directory} away to start a new CA"
        )
    actions = []
    if files.ca_cert.exists():
        ca_cert, ca_key = load_certificate(files.ca_cert), load_private_key(files.ca_key)
        actions.append("kept CA tls/ca.crt")
    else:
        ca_cert, ca_key = issue.make_ca(f"{settings.name} Redis CA", tls.key_type, tls.ca_days, now)
        write_pair(files.ca_cert, files.ca_key, ca_cert, ca_key)
        actions.append("created CA tls/ca.crt")
    server = (files.server_cert, files.server_key)
    if not _leaf_usable(*server, ca_cert, tls.key_type, now, names=tls.server_names):
        cert, key = issue.make_server_cert(
            ca_cert, ca_key, tls.server_names, tls.key_type, tls.cert_days, now
        )
        write_pair(*server, cert, key)
        actions.append(f"issued server certificate for {', '.join(tls.server_names)}")
    client = (files.client_cert(), files.client_key())
    if not _leaf_usable(*client, ca_cert, tls.key_type, now):
        cert, key = issue.make_client_cert(
            ca_cert, ca_key, f"{settings.name}-{DEFAULT_CLIENT}", tls.key_type, tls.cert_days, now
        )
        write_pair(*client, cert, key)
        actions.append("issued client certificate tls/client.crt")
    return actions


def ensure_node_certificates(files: TLSFiles, settings: Settings, now: dt.datetime) -> list[str]:
    """Give every node and Sentinel of the deployment its own server certificate
    (tls/nodes/NAME.crt), naming it first; keep one that is still usable."""
    tls = settings.tls
    ca_cert = load_certificate(files.ca_cert)
    issued = []
    for node in plan_nodes(settings.deployment, settings.redis.tls_port):
        names = node_names(node.name, tls.server_names)
        pair = (files.node_cert(node.name), files.node_key(node.name))
        if not _leaf_usable(*pair, ca_cert, tls.key_type, now, names=names):
            issue_node(files, node.name, tls.server_names, tls.key_type, tls.cert_days, now)
            issued.append(node.name)
    if not issued:
        return ["kept the node certificates in tls/nodes/"]
    return [f"issued node certificates tls/nodes/ for {', '.join(issued)}"]


def _leaf_usable(
    cert_path: Path,
    key_path: Path,
    ca_cert,
    key_type: str,
    now: dt.datetime,
    names: list[str] | None = None,
) -> bool:
    if not (cert_path.exists() and key_path.exists()):
        return False
    cert = load_certificate(cert_path)
    if verify_certificate(cert, ca_cert, now) or not key_matches(cert, load_private_key(key_path)):
        return False
    if key_description(cert.public_key()) != KEY_NAMES[key_type]:
        return False
    return names is None or sorted(subject_alt_names(cert)) == sorted(names)


def ensure_backup_key(bundle: Bundle, settings: Settings) -> tuple[Settings, str]:
    """Give a new bundle an age key pair, so its backups are encrypted from the first one.

    The identity (private key) goes to keys/backup.key (0600); move it off this host and keep
    it safe: without it the backups cannot be restored. redkeep.yaml gets the public key.
    """
    if settings.backup.age_recipients:
        return settings, "backups encrypted to the configured age recipients"
    path = bundle.backup_key_path
    if path.exists():
        identity = pyrage.x25519.Identity.from_str(path.read_text().split()[-1])
        line = f"kept backup key {path.relative_to(bundle.root)}"
    else:
        identity = pyrage.x25519.Identity.generate()
        ensure_private_dir(path.parent)
        atomic_write(
            path, f"# redkeep backup identity: keep a copy offline\n{identity}\n", SECRET_MODE
        )
        line = f"created backup key {path.relative_to(bundle.root)} (age; keep a copy offline)"
    data = settings.model_dump()
    data["backup"]["age_recipients"] = [str(identity.to_public())]
    data["backup"]["identity_file"] = str(path.relative_to(bundle.root))
    return Settings.model_validate(data), line


def check_local_config(
    bundle: Bundle,
    settings: Settings,
    acl: str | bytes,
    passwords: dict[str, str] | None = None,
) -> str:
    """Have the local redis-server load this configuration and the ACL file text `acl`, both
    in a temp dir (with the bundle's certificates); return its version.

    Two steps: redis-server parses redis.conf and loads the TLS files without listening (its
    own message for a bad line); then it starts for real on a private UNIX socket only, the
    one way it loads the ACL file, and is stopped once it answers. Skipped (returns "") when
    redis-server is not installed: the bundle targets Docker too. In a sentinel or cluster
    deployment, the configuration is the first data node's (with `passwords`), and a
    sentinel.conf is parsed too.
    """
    try:
        binary = redis_server.find_redis_server()
    except UsageError:
        return ""
    version = redis_server.server_version(binary)
    with tempfile.TemporaryDirectory(prefix="redkeep-check-") as tmp:
        scratch = Path(tmp)
        log = scratch / "redis.log"
        paths = ConfPaths(
            tls=str(bundle.tls.directory.resolve()), redis=tmp, data=tmp, log=str(log)
        )
        conf = _conf_to_check(settings, paths, version[:2], passwords or {})
        conf_path = scratch / "redis.conf"
        conf_path.write_text(conf)
        atomic_write(scratch / "users.acl", acl, SECRET_MODE)
        try:
            redis_server.check_config(binary, conf_path)
        except ConfigError as error:
            reason = str(error).partition("rejects this configuration: ")[2] or str(error)
            raise _refused(version, reason, scratch) from None
        if settings.deployment.topology == "sentinel":
            _check_sentinel_conf(binary, version, settings, paths, passwords or {}, scratch)
        socket_path = scratch / "redis.sock"
        # Not a node of a cluster here: it would open the cluster bus port.
        alone = "cluster-enabled no\n" if settings.deployment.topology == "cluster" else ""
        conf_path.write_text(
            f"{conf}port 0\ntls-port 0\nunixsocket {conf_quote(str(socket_path))}\n"
            f"unixsocketperm 700\n{alone}"
        )
        if not _started(binary, conf_path, socket_path):
            raise _refused(version, "; ".join(redis_server.log_tail(log, 4)), scratch)
    return ".".join(map(str, version))


def _conf_to_check(
    settings: Settings, paths: ConfPaths, version: tuple[int, int], passwords: dict[str, str]
) -> str:
    """redis.conf to check: the server's, or the first data node's of a deployment."""
    bind = settings.redis.bind
    if settings.deployment.topology == "standalone":
        return render_redis_conf(settings, paths, version, bind, target="check")
    planned = node_files.planned(settings)
    where = node_files.layout(settings, container=False)
    node = node_files.node_conf(
        settings, planned[0], planned, passwords, where, node_files.SentinelState()
    )
    return render_redis_conf(settings, paths, version, bind, target="check", node=node)


def _check_sentinel_conf(
    binary: str,
    version: tuple[int, ...],
    settings: Settings,
    paths: ConfPaths,
    passwords: dict[str, str],
    scratch: Path,
) -> None:
    """Have redis-server parse the first Sentinel's sentinel.conf (its users, its TLS files)."""
    planned = node_files.planned(settings)
    sentinel = next(node for node in planned if node.role == "sentinel")
    where = node_files.layout(settings, container=False)
    text = render_sentinel_conf(
        settings, sentinel, planned, where, node_files.SentinelState(), paths,
        settings.redis.bind, passwords, "check",
    )  # fmt: skip
    path = scratch / "sentinel.conf"
    atomic_write(path, text, SECRET_MODE)
    try:
        redis_server.check_config(binary, path, sentinel=True)
    except ConfigError as error:
        reason = str(error).partition("rejects this configuration: ")[2] or str(error)
        raise _refused(version, reason, scratch) from None


def _refused(version: tuple[int, ...], log_text: str, scratch: Path) -> ConfigError:
    """One line: what redis-server said (without log prefixes, noise and the temp dir)."""
    said = []
    for part in re.split(r"; |\n", log_text):
        prefix = LOG_PREFIX.match(part)
        if prefix and not prefix[0].endswith("# "):
            continue  # not a warning
        text = part[prefix.end() if prefix else 0 :].strip()
        if text and not text.startswith(LOG_NOISE):
            said.append(text.split(". WARNING: ACL errors detected")[0])
    reason = "; ".join(said).replace(f"{scratch}/", "") or "no reason in its log"
    return ConfigError(
        f"redis-server {'.'.join(map(str, version))} refuses the rendered redis.conf or "
        f"users.acl: {reason}; nothing was written: fix the setting (redkeep.yaml or "
        "REDKEEP_* variables) and run init again"
    )


def _started(binary: str, conf_path: Path, socket_path: Path) -> bool:
    """Start redis-server on `conf_path` until it answers on `socket_path`, then stop it.

    False if it exits first (it refused a file: the reason is in its log). It dies with this
    process, even a SIGKILLed one.
    """
    process = redis_server.start(binary, conf_path, die_with_parent=True)
    try:
        deadline = time.monotonic() + CHECK_TIMEOUT
        while process.poll() is None:
            if _answers(socket_path):
                return True
            if time.monotonic() > deadline:
                raise RedkeepError(
                    f"redis-server did not start within {CHECK_TIMEOUT} s to check the "
                    "configuration (is this machine overloaded?); run init again"
                )
            time.sleep(0.02)
        return False
    finally:
        end_child(process, timeout=10)  # a throw-away server with nothing to save


def _answers(socket_path: Path) -> bool:
    """Whether a server answers PING on this UNIX socket (any reply: it has loaded its files)."""
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(1)
        try:
            client.connect(str(socket_path))
            client.sendall(b"PING\r\n")
            return bool(client.recv(64))
        except OSError:
            return False
