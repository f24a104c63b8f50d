"""The processes of a sentinel or cluster deployment on this machine: one redis-server per data
node and per Sentinel, each with its own run/NAME.conf, run/NAME.pid, run/NAME.log and
data/NAME/ (its working directory, by which `processes.is_ours` knows it).

run/NAME.conf is the node's configuration with this machine's paths and loopback addresses.
A Sentinel rewrites its run/sentinel-J.conf as it learns; rendering it again keeps what every
Sentinel learned (`render/sentinel_conf.py`), and a data node started after a failover
replicates the primary the Sentinels named last, not the one the plan started with.
"""

import subprocess
from pathlib import Path

from redkeep.bundle import Bundle
from redkeep.config.schema import Settings
from redkeep.fsutil import SECRET_MODE, atomic_write, ensure_private_dir
from redkeep.render import nodes as node_files
from redkeep.render.env import password_roles
from redkeep.render.redis_conf import local_paths
from redkeep.render.sentinel_conf import SentinelState, read_state
from redkeep.stack import redis_server
from redkeep.stack.processes import Service, node_service


def services(bundle: Bundle) -> list[Service]:
    """Every process of the deployment, in start order: data nodes, then the Sentinels (they
    find the replicas already connected)."""
    return [node_service(node.name) for node in node_files.planned(bundle.settings)]


def is_sentinel(service: Service) -> bool:
    return service.node.startswith("sentinel-")


def conf_path(bundle: Bundle, name: str) -> Path:
    return bundle.run_dir / f"{name}.conf"


def log_path(bundle: Bundle, name: str) -> Path:
    return bundle.run_dir / f"{name}.log"


def local_state(bundle: Bundle) -> SentinelState:
    """What this machine's Sentinels learned (their run/sentinel-J.conf); a Sentinel that has
    none yet takes its id from the bundle's sentinel.conf (or a new one)."""
    settings = bundle.settings
    planned = node_files.planned(settings)
    sentinels = [node.name for node in planned if node.role == "sentinel"]
    texts = {
        name: conf_path(bundle, name).read_text()
        for name in sentinels
        if conf_path(bundle, name).exists()
    }
    names = node_files.layout(settings, False).names()
    for then in _tls_ports_then(settings, texts):
        # `init --force --tls-port` since: read the old addresses as the nodes they were, or
        # `up` would start the planned primary over the one the Sentinels promoted.
        earlier = settings.model_copy(update={"redis": settings.redis.model_copy(
            update={"tls_port": then})})  # fmt: skip
        names = node_files.layout(earlier, False).names() | names
    state = read_state(texts, settings.deployment.master_name, names).with_new_ids(sentinels)
    bundle_texts = {
        name: (bundle.node_dir(name) / "sentinel.conf").read_text()
        for name in sentinels
        if (bundle.node_dir(name) / "sentinel.conf").exists()
    }
    if bundle_texts:
        known = node_files.sentinel_state(
            settings, bundle_texts, node_files.layout(settings, True)
        ).ids
        for name in sentinels:
            if name not in texts and name in known:
                state.ids[name] = known[name]
    return state


def _tls_ports_then(settings: Settings, texts: dict[str, str]) -> set[int]:
    """The redis.tls_port each run/sentinel-J.conf was rendered for, from its own `tls-port`
    line (ours; Sentinel's rewrites keep it) and its planned offset from redis.tls_port."""
    offsets = {
        node.name: node.port - settings.redis.tls_port for node in node_files.planned(settings)
    }
    found = set()
    for name, text in texts.items():
        ports = [line.split()[1] for line in text.splitlines() if line.startswith("tls-port ")]
        if (
            ports
            and ports[-1].isdigit()
            and int(ports[-1]) - offsets[name] != settings.redis.tls_port
        ):
            found.add(int(ports[-1]) - offsets[name])
    return found


def write_run_confs(bundle: Bundle, names: set[str], version: tuple[int, int]) -> list[str]:
    """Render run/NAME.conf (0600) for the nodes `names` that are about to start; return notes
    on learned Sentinel state that was left out."""
    settings = bundle.settings
    ensure_private_dir(bundle.run_dir)
    state = local_state(bundle)
    root = bundle.root.resolve()
    passwords = {
        role: bundle.password(role) for role in password_roles(settings.deployment.topology)
    }
    files = node_files.node_confs(
        settings,
        passwords,
        node_files.layout(settings, False),
        state,
        lambda name: local_paths(root, name),
        version,
        settings.redis.bind,
        "redkeep up",
    )
    for item in files:
        if item.node in names:
            ensure_private_dir(bundle.node_data_dir(item.node))
            atomic_write(conf_path(bundle, item.node), item.text, SECRET_MODE)
    return state.notes


def start(bundle: Bundle, binary: str, service: Service) -> subprocess.Popen:
    """Start the node or Sentinel `service` on its run/NAME.conf (written before)."""
    path = conf_path(bundle, service.node)
    redis_server.check_config(binary, path, sentinel=is_sentinel(service))
    (bundle.run_dir / f"{service.name}.pid").unlink(missing_ok=True)  # it writes its own
    return redis_server.start(binary, path, sentinel=is_sentinel(service))
