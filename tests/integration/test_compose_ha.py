"""docker-compose.yml of a sentinel or cluster bundle, proven without a Docker engine.

The cluster's one-shot `cluster-create` service: its script (the one the Kubernetes Job runs
too) runs here against real redis-server processes started from the bundle's own node
configurations, forms the cluster over TLS as admin and changes nothing when run again. The
exporter's, the proxy's and the backup schedule's commands go through redkeep's own parser and
configuration loading
as the containers see the bundle (mounted at /bundle, the exporter's redkeep.yaml the compose
view). And the Docker copy of a Sentinel's file keeps what it learned across a port change."""

import re
import shutil
import subprocess
import time
from pathlib import Path, PurePosixPath

import click
import pytest
import redis
import yaml
from pydantic import TypeAdapter
from redis.sentinel import Sentinel

from redkeep.actions import backup_commands
from redkeep.actions.backup_context import BackupContext
from redkeep.actions.backup_requests import RunRequest
from redkeep.actions.exporter import _background, _deployment_nodes
from redkeep.app import Application
from redkeep.bundle import Bundle
from redkeep.cli import cli
from redkeep.cli.proxy import proxy_loader
from redkeep.config.deployment import SENTINEL_PORT_OFFSET
from redkeep.config.schema import CheckSettings
from redkeep.envfile import read_env
from redkeep.exporter.targets import allowed_targets, key_of
from redkeep.redis.target import ConnectionOptions, parse_host_port, parse_url
from redkeep.render import nodes as node_files
from tests.conftest import run_redkeep
from tests.servers import free_port_span, stop_process

WAIT = 60.0  # seconds for a real condition (a node answering, the cluster forming)
CLUSTER_OFFSETS = [*range(6), *range(10000, 10006)]


def init(root: Path, *flags: str) -> Bundle:
    # The image of the server installed here (7.0): the node configurations are rendered
    # for the image's version, and this machine's redis-server runs them.
    result = run_redkeep("init", root, *flags, env={"REDKEEP_REDIS__IMAGE": "redis:7.0"})
    assert result.returncode == 0, result.stderr
    return Bundle(root)


def compose(bundle: Bundle) -> dict:
    return yaml.safe_load((bundle.root / "docker-compose.yml").read_text())


def host_path(root: Path, service: dict, inside: str) -> Path:
    """The bundle file a service sees at `inside` (its bind mounts, the longest first)."""
    mounts = [volume.split(":")[:2] for volume in service["volumes"]]
    for source, target in sorted(mounts, key=lambda mount: -len(mount[1])):
        target_path = PurePosixPath(target)
        if PurePosixPath(inside).is_relative_to(target_path):
            return root / source / PurePosixPath(inside).relative_to(target_path)
    raise AssertionError(f"{inside} is not mounted")


def localize(text: str, replacements: dict[str, str]) -> str:
    """The container's view on this machine: whole names and paths swapped, nothing inside
    another word ("/tls" not in "/tlsx", "redis-1" not in "redis-10")."""
    pattern = "|".join(
        rf"(?<![\w./-]){re.escape(key)}(?![\w-])" for key in sorted(replacements, key=len)[::-1]
    )
    return re.sub(pattern, lambda match: replacements[match.group(0)], text)


class Nodes:
    """The bundle's data nodes as redis-server processes on loopback, each from its own
    redis/nodes/NAME/redis.conf with the container paths pointed at the bundle."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.tls = bundle.root / "tls"
        self.password = read_env(bundle.env_path)["REDIS_ADMIN_PASSWORD"]
        self.planned = [node for node in node_files.planned(bundle.settings) if node.holds_data]
        self.processes: list[subprocess.Popen] = []

    def start(self) -> None:
        for node in self.planned:
            directory = self.bundle.node_dir(node.name)
            text = localize(
                (directory / "redis.conf").read_text(),
                {
                    "/usr/local/etc/redis": str(directory),
                    "/tls": str(self.tls),
                    "/data": str(self.bundle.node_data_dir(node.name)),
                },
            ).replace("bind * -::*", "bind 127.0.0.1")
            conf = directory / "local.conf"
            conf.write_text(text)
            conf.chmod(0o600)
            log = (self.bundle.run_dir / f"{node.name}.log").open("w")
            self.processes.append(
                subprocess.Popen(["redis-server", str(conf)], stdout=log, stderr=subprocess.STDOUT)
            )
        for node in self.planned:
            self.wait(lambda n=node: self.cli(n.port, "ping").strip() == "PONG", f"{node.name}")

    def stop(self) -> None:
        for process in self.processes:
            stop_process(process)

    def cli(self, port: int, *args: str) -> str:
        result = subprocess.run(
            [
                "redis-cli", "--no-auth-warning", "--tls", "--cacert", f"{self.tls}/ca.crt",
                "--cert", f"{self.tls}/client.crt", "--key", f"{self.tls}/client.key",
                "-h", "127.0.0.1", "-p", str(port), "--user", "admin", *args,
            ],
            env={"PATH": "/usr/bin:/bin", "REDISCLI_AUTH": self.password},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )  # fmt: skip
        return result.stdout + result.stderr

    def wait(self, condition, what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"not within {WAIT} s: {what}")
            time.sleep(0.1)

    def topology(self) -> dict[str, tuple[str, str, str]]:
        """{node: (its id, master or replica, whom it replicates and the slots it serves)}
        as each node says of itself, plus the cluster's current epoch."""
        found = {}
        for node in self.planned:
            mine = next(
                line.split() for line in self.cli(node.port, "cluster", "nodes").splitlines()
                if "myself" in line
            )  # fmt: skip
            role = "master" if "master" in mine[2] else "replica"
            found[node.name] = (mine[0], role, " ".join([mine[3], *mine[8:]]))
        return found


@pytest.fixture
def cluster_bundle(tmp_path, redis_binary):
    base = free_port_span(CLUSTER_OFFSETS)
    bundle = init(tmp_path / "cl", "--topology", "cluster", "--tls-port", str(base))
    nodes = Nodes(bundle)
    yield bundle, nodes
    nodes.stop()


def run_script(script: Path, password: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(script)],
        env={"PATH": "/usr/bin:/bin", "REDISCLI_AUTH": password},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_the_cluster_create_service_forms_the_cluster_and_a_second_run_changes_nothing(
    cluster_bundle, tmp_path
):
    bundle, nodes = cluster_bundle
    service = compose(bundle)["services"]["cluster-create"]
    # The admin password comes from .env through the environment, never the file's text.
    assert service["environment"] == {
        "REDISCLI_AUTH": "${REDIS_ADMIN_PASSWORD:?REDIS_ADMIN_PASSWORD must be set in .env}"
    }
    assert nodes.password not in (bundle.root / "docker-compose.yml").read_text()
    assert service["restart"] == "no"
    assert set(service["depends_on"]) == {node.name for node in nodes.planned}
    shell, script_inside = service["command"]
    script = host_path(bundle.root, service, script_inside)
    assert shell == "sh" and nodes.password not in script.read_text()
    assert host_path(bundle.root, service, "/tls/ca.crt") == bundle.root / "tls" / "ca.crt"

    nodes.start()
    assert "cluster_state:fail" in nodes.cli(nodes.planned[0].port, "cluster", "info")
    # The script as the container runs it: the service names resolve to this machine.
    local = tmp_path / "cluster-create.sh"
    names = {node.name: "127.0.0.1" for node in nodes.planned}
    local.write_text(localize(script.read_text(), {**names, "/tls": str(nodes.tls)}))
    first = run_script(local, nodes.password)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "cluster_state:ok on every node" in first.stdout

    formed = nodes.topology()
    ids = {name: item[0] for name, item in formed.items()}
    for node in nodes.planned:
        info = nodes.cli(node.port, "cluster", "info")
        assert "cluster_state:ok" in info and "cluster_slots_assigned:16384" in info
        assert "cluster_known_nodes:6" in info
        _, role, detail = formed[node.name]
        if node.role == "primary":  # the plan's slots: shard k serves an even k-th share
            assert role == "master"
            start, end = node.shard * 16384 // 3, (node.shard + 1) * 16384 // 3 - 1
            assert detail == f"- {start}-{end}"
        else:
            assert (role, detail) == ("replica", ids[node.replica_of])
    # Every link is TLS: the bus and the client port refuse plaintext.
    plain = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(nodes.planned[0].bus_port), "ping"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert "PONG" not in plain.stdout

    # A key on shard 2 ({a} hashes to slot 15495), written once its replica is attached.
    shard2 = next(node for node in nodes.planned if node.name == "redis-2")
    nodes.wait(lambda: nodes.cli(shard2.port, "set", "{a}kept", "v").strip() == "OK", "a write")
    epoch = re.search(r"cluster_current_epoch:(\d+)", nodes.cli(shard2.port, "cluster", "info"))

    again = run_script(local, nodes.password)  # the next `docker compose up`
    assert again.returncode == 0, again.stdout + again.stderr
    assert nodes.topology() == formed  # the same ids, roles, replicas and slots
    info = nodes.cli(shard2.port, "cluster", "info")
    assert f"cluster_current_epoch:{epoch.group(1)}" in info  # no slot given out again
    assert nodes.cli(shard2.port, "get", "{a}kept").strip() == "v"


def test_the_forming_script_fails_without_the_admin_password(cluster_bundle, tmp_path):
    """The run above can fail: a wrong password in the environment and the script stops
    (it never reports a cluster it could not form)."""
    bundle, nodes = cluster_bundle
    nodes.start()
    script = bundle.root / "redis" / "cluster-create.sh"
    names = {node.name: "127.0.0.1" for node in nodes.planned}
    local = tmp_path / "cluster-create.sh"
    text = localize(script.read_text(), {**names, "/tls": str(nodes.tls)})
    # One pass of the waiting loop, not forever: a refused login never turns into PONG.
    local.write_text(text.replace("sleep 2", "exit 9"))
    result = run_script(local, "not-the-password")
    assert result.returncode != 0
    assert "cluster_state:ok" not in result.stdout
    assert "cluster_state:fail" in nodes.cli(nodes.planned[0].port, "cluster", "info")


def mounted_bundle(bundle: Bundle, service: dict, tmp_path: Path) -> Path:
    """The bundle as a redkeep container sees it at /bundle: a copy, with each file mounted
    over it in place (the exporter's redkeep.yaml)."""
    view = tmp_path / "bundle-view"
    shutil.copytree(bundle.root, view, symlinks=True)
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        if target.startswith("/bundle/"):
            shutil.copy(bundle.root / source, view / PurePosixPath(target).relative_to("/bundle"))
    return view


def parse(args: list[str], view: Path) -> click.Context:
    """The service's command through redkeep's own parser (no command runs)."""
    args = [arg.replace("/bundle", str(view)) for arg in args]
    with cli.make_context("redkeep", list(args), resilient_parsing=False) as root:
        command = cli.get_command(root, args[0])
        assert command is not None, args[0]
        return command.make_context(args[0], args[1:], parent=root)


@pytest.mark.parametrize("topology", ["sentinel", "cluster"])
def test_the_exporter_service_scrapes_every_node_by_service_name(tmp_path, topology):
    bundle = init(tmp_path / "b", "--topology", topology)
    service = compose(bundle)["services"]["exporter"]
    view = mounted_bundle(bundle, service, tmp_path)
    context = parse(service["command"], view)
    assert context.params["directory"] == view
    seen = Bundle(view)
    secrets = seen.secrets()
    assert (
        secrets["REDIS_EXPORTER_PASSWORD"] == read_env(bundle.env_path)["REDIS_EXPORTER_PASSWORD"]
    )
    # The compose view reaches the planned nodes by service name (never the loopback plan),
    # Sentinels first: what a Sentinel bundle's app checks ask for the primary.
    planned = node_files.planned(bundle.settings)
    nodes, sentinel_count = _deployment_nodes(seen, secrets)
    assert [(t.host, t.port) for t in nodes] == [
        (n.name, n.port) for n in sorted(planned, key=lambda n: n.role != "sentinel")
    ]
    assert sentinel_count == sum(node.role == "sentinel" for node in planned)
    assert {t.password for t in nodes} == {secrets["REDIS_EXPORTER_PASSWORD"]}
    check = TypeAdapter(CheckSettings).validate_python({"name": "k", "type": "exists", "key": "k"})
    background = _background(
        seen.settings.exporter, [check], None, None, ConnectionOptions(), seen, nodes,
        sentinel_count,
    )  # fmt: skip
    # Its --url names redis-0, a replica after a failover: a Sentinel bundle's checks follow
    # the Sentinels instead (tests/integration/exporter/test_appchecks_sentinel.py).
    assert background.app_checks.primary_only == (topology == "sentinel")
    allowed = allowed_targets(seen.settings.exporter, secrets, view)
    assert set(allowed) == {f"rediss://{node.name}:{node.port}/0" for node in planned}
    for target in allowed.values():
        assert target.username == "exporter"
        assert target.password == secrets["REDIS_EXPORTER_PASSWORD"]
        assert target.tls_ca == view / "tls" / "ca.crt" and target.tls_key.exists()
    # The main target (the discovery seed) is one of them, by name.
    seed = parse_url(context.params["url"])
    assert key_of(seed) in allowed and seed.host == "redis-0"
    # The bundle's own redkeep.yaml (what `redkeep up` runs the exporter with) is untouched.
    assert not Bundle(bundle.root).settings.exporter.targets


def test_the_sentinel_proxy_service_follows_the_sentinels_by_name(tmp_path):
    bundle = init(tmp_path / "b", "--topology", "sentinel")
    services = compose(bundle)["services"]
    service = services["proxy"]
    view = mounted_bundle(bundle, service, tmp_path)
    context = parse(service["command"], view)
    names = ["listen", "upstream", "sentinel", "master_name", "sentinel_user", "allow", "deny",
             "deny_command", "cmd_rate", "max_conns", "max_conns_per_ip", "conn_rate",
             "tls_cert", "tls_key", "tls_client_ca", "upstream_tls_ca", "upstream_tls_cert",
             "upstream_tls_key", "upstream_tls_name", "pass_through", "access_log",
             "metrics_listen"]  # fmt: skip
    flags = {name: context.params[name] for name in names}
    config = proxy_loader(Application(), context.params["directory"], flags)()
    sentinels = [n for n in node_files.planned(bundle.settings) if n.role == "sentinel"]
    assert config.sentinel.addresses == tuple((n.name, n.port) for n in sentinels)
    assert config.sentinel.master_name == bundle.settings.deployment.master_name
    assert config.sentinel.password == read_env(bundle.env_path)["REDIS_APP_PASSWORD"]
    assert config.upstream_tls.ca == view / "tls" / "ca.crt"
    assert config.upstream_tls.cert == view / "tls" / "client.crt"
    # Applications reach it where REDIS_URL says: the published port is the one it listens on.
    port = parse_url(read_env(bundle.env_path)["REDIS_URL"]).port
    assert config.listen == ("0.0.0.0", port)  # noqa: S104 - inside its container
    assert service["ports"] == [f"127.0.0.1:{port}:{port}"]


def test_the_compose_copy_of_a_sentinel_file_keeps_what_it_learned_across_a_port_change(
    tmp_path,
):
    """`init --force --tls-port` after a failover: the bundle's sentinel.conf files (what the
    compose Sentinels run and rewrite) still name the promoted primary, at its new port."""
    old, new = 30000, 30400
    root = tmp_path / "ha"
    flags = ("--topology", "sentinel", "--replicas", "2", "--sentinels", "3")
    bundle = init(root, *flags, "--tls-port", str(old))
    ids = {}
    for j in range(3):  # what each compose Sentinel wrote after promoting redis-1 (epoch 4)
        path = bundle.node_dir(f"sentinel-{j}") / "sentinel.conf"
        text = path.read_text()
        ids[f"sentinel-{j}"] = re.search(r"(?m)^sentinel myid (\w+)$", text).group(1)
        text = text.replace(
            f"monitor redkeep redis-0 {old} ", f"monitor redkeep redis-1 {old + 1} "
        )
        text = re.sub(r"(?m)^sentinel (config-epoch redkeep|current-epoch) .*$", "", text)
        path.write_text(text + "sentinel config-epoch redkeep 4\nsentinel current-epoch 4\n")

    result = run_redkeep(
        "init", root, "--force", *flags, "--tls-port", str(new),
        env={"REDKEEP_REDIS__IMAGE": "redis:7.0"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for j in range(3):
        text = (bundle.node_dir(f"sentinel-{j}") / "sentinel.conf").read_text()
        assert f"\nsentinel monitor redkeep redis-1 {new + 1} " in text
        assert "\nsentinel config-epoch redkeep 4\n" in text
        assert "\nsentinel current-epoch 4\n" in text
        assert f"\nsentinel known-replica redkeep redis-0 {new}\n" in text
        assert f"\nsentinel myid {ids[f'sentinel-{j}']}\n" in text
        for peer in set(ids) - {f"sentinel-{j}"}:
            port = new + 100 + int(peer[-1])
            assert f"\nsentinel known-sentinel redkeep {peer} {port} {ids[peer]}\n" in text
    redis0 = (bundle.node_dir("redis-0") / "redis.conf").read_text()
    assert f"\nreplicaof redis-1 {new + 1}\n" in redis0
    assert "\nreplicaof " not in (bundle.node_dir("redis-1") / "redis.conf").read_text()


def test_the_env_of_a_sentinel_bundle_reaches_the_primary_both_ways(tmp_path, redis_binary):
    """REDIS_URL is the proxy (which follows the primary the Sentinels name), and
    REDIS_SENTINELS with REDIS_SENTINEL_MASTER_NAME are what a Sentinel-aware client needs:
    with both, a plain redis-py application finds the same primary, as `redkeep up` runs it."""
    base = free_port_span([0, 1, SENTINEL_PORT_OFFSET, SENTINEL_PORT_OFFSET + 2])
    root = tmp_path / "ha"
    fast = {"REDKEEP_DEPLOYMENT__DOWN_AFTER_MILLISECONDS": "1000"}
    result = run_redkeep(
        "init", root, "--topology", "sentinel", "--replicas", "1", "--sentinels", "3",
        "--tls-port", base, env=fast,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    bundle = Bundle(root)
    env = read_env(bundle.env_path)
    sentinels = [n for n in node_files.planned(bundle.settings) if n.role == "sentinel"]
    assert env["REDIS_SENTINELS"] == ",".join(f"localhost:{n.port}" for n in sentinels)
    assert env["REDIS_SENTINEL_MASTER_NAME"] == "redkeep"
    url = parse_url(env["REDIS_URL"])
    assert url.port == parse_host_port(bundle.settings.proxy.listen)[1]
    assert url.port not in {n.port for n in node_files.planned(bundle.settings)}
    tls = {
        "ssl_ca_certs": str(bundle.tls.ca_cert),
        "ssl_certfile": str(bundle.tls.client_cert()),
        "ssl_keyfile": str(bundle.tls.client_key()),
        "socket_timeout": 5,
    }
    up = run_redkeep("up", root, "--detach", timeout=180)
    try:
        assert up.returncode == 0, up.stderr
        app = redis.Redis.from_url(env["REDIS_URL"], **tls)
        assert app.set("cart:9", "2 items")
        app.close()
        addresses = [item.rsplit(":", 1) for item in env["REDIS_SENTINELS"].split(",")]
        auth = {"username": "app", "password": env["REDIS_APP_PASSWORD"], "ssl": True, **tls}
        sentinel = Sentinel(
            [(host, int(port)) for host, port in addresses], sentinel_kwargs=auth, **auth
        )
        primary = sentinel.discover_master(env["REDIS_SENTINEL_MASTER_NAME"])
        assert primary == ("127.0.0.1", bundle.settings.redis.tls_port)  # redis-0, as planned
        found = sentinel.master_for(env["REDIS_SENTINEL_MASTER_NAME"])
        assert found.get("cart:9") == b"2 items"  # the proxy's write, on that primary
        found.close()
    finally:
        down = run_redkeep("down", root)
    assert down.returncode == 0, down.stderr


@pytest.mark.parametrize("topology", ["sentinel", "cluster"])
def test_the_backup_service_backs_up_every_data_node_by_service_name(
    tmp_path, topology, monkeypatch
):
    """The HA compose file's backup schedule: `backup run --dir` as `redkeep up` runs it, on
    the compose view (every node by its service name), the password from .env."""
    bundle = init(tmp_path / "b", "--topology", topology)
    service = compose(bundle)["services"]["backup"]
    assert "environment" not in service  # no secret in the compose file, not even a reference
    view = mounted_bundle(bundle, service, tmp_path)
    args = [arg.replace("/bundle", str(view)) for arg in service["command"]]
    assert args[:2] == ["backup", "run"]
    requests: list[RunRequest] = []  # what the CLI hands the action, which then takes a backup
    monkeypatch.setattr(backup_commands, "run", lambda request, app: requests.append(request))
    cli.main(args, standalone_mode=False)
    (request,) = requests
    assert request.every == 1440  # backup.interval_minutes 0 in the bundle: once a day
    context = BackupContext.open(request.where, Application())
    assert context.bundle.root == view and backup_commands._deployed(context, request) == topology
    planned = [node for node in node_files.planned(bundle.settings) if node.holds_data]
    password = read_env(bundle.env_path)["REDIS_BACKUP_PASSWORD"]
    nodes = context.bundle.deployment("backup").every_node()  # what `backup run` captures
    assert sorted((n.target.host, n.target.port) for n in nodes) == sorted(
        (node.name, node.port) for node in planned
    )
    for node in nodes:
        target = node.target
        assert (target.scheme, target.username, target.password) == ("rediss", "backup", password)
        assert target.server_name == node.name  # each node's certificate holds its name
        assert target.tls_ca == view / "tls" / "ca.crt" and target.tls_key.exists()
    options = backup_commands._run_options(request, context, nodes[0].target, "rdb")
    assert options.metrics_file == view / bundle.settings.backup.metrics_file
    assert options.store.url.endswith(str(view / "backups"))
    # `redkeep up` runs the same command on the bundle itself, whose nodes are on `host`.
    assert {n.target.host for n in bundle.deployment("backup").nodes} == {bundle.settings.host}
