"""The files of a sentinel or cluster deployment as rendered: a reason above every setting,
the HA safety settings, TLS on every link and no plaintext port, least-privilege users, the
Sentinels' learned state kept on a re-render, and a compose file the Compose schema accepts."""

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator

from redkeep.config.schema import Settings
from redkeep.render import nodes
from redkeep.render.acl import hashes_in, password_hash, render_acl
from redkeep.render.bundle import bundle_files, render_compose
from redkeep.render.redis_conf import CONTAINER_BIND, CONTAINER_PATHS, ConfPaths

COMPOSE_SCHEMA = Path(__file__).parents[1] / "data" / "compose-spec.json"
ROLES = ("admin", "app", "exporter", "backup", "replication", "sentinel")
PASSWORDS = {role: f"{role}-secret-{'x' * 40}" for role in ROLES}
LOCAL = ConfPaths(tls="/b/tls", redis="/b/redis", data="/b/data", log="/b/run/x.log")


def settings(topology: str, **deployment) -> Settings:
    return Settings.model_validate(
        {"redis": {"tls_port": 7000}, "deployment": {"topology": topology, **deployment}}
    )


def render(config: Settings, container: bool = True, texts: dict | None = None) -> dict:
    """{node name: its configuration text}."""
    where = nodes.layout(config, container)
    state = nodes.sentinel_state(config, texts or {}, where)
    paths = CONTAINER_PATHS if container else LOCAL
    bind = CONTAINER_BIND if container else ["127.0.0.1"]
    files = nodes.node_confs(
        config, PASSWORDS, where, state, lambda name: paths, (7, 0), bind, "test"
    )
    return {item.node: item.text for item in files}


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition(" ")
            found.setdefault(name, []).append(value)
    return found


def sentinel_directives(text: str) -> dict[str, list[str]]:
    """`sentinel X ...` lines by X."""
    found: dict[str, list[str]] = {}
    for value in directives(text).get("sentinel", []):
        kind, _, rest = value.partition(" ")
        found.setdefault(kind, []).append(rest)
    return found


def settings_without_reason(text: str) -> list[str]:
    """Setting lines whose line above is no comment."""
    lines = text.splitlines()
    return [
        line
        for above, line in zip(["", *lines], lines, strict=False)
        if line and not line.startswith("#") and not above.startswith("#")
    ]


@pytest.mark.parametrize("topology", ["sentinel", "cluster"])
@pytest.mark.parametrize("container", [True, False], ids=["container", "local"])
def test_every_setting_of_every_node_has_a_reason_above_it(topology, container):
    rendered = render(settings(topology), container)
    assert len(rendered) == 6  # 3 nodes and 3 Sentinels, or 3 shards of 2 nodes
    for name, text in rendered.items():
        assert settings_without_reason(text) == [], name


def test_sentinel_data_nodes_have_the_ha_safety_settings_and_tls_on_every_link():
    config = settings("sentinel")
    rendered = render(config)
    for name in ("redis-0", "redis-1", "redis-2"):
        conf = directives(rendered[name])
        port = 7000 + int(name[-1])
        assert conf["port"] == ["0"], name  # no plaintext port
        assert conf["tls-port"] == [str(port)]
        for key, value in {
            "tls-replication": "yes",
            "tls-auth-clients": "yes",
            "masteruser": "replication",
            "masterauth": PASSWORDS["replication"],
            "min-replicas-to-write": "1",
            "min-replicas-max-lag": "10",
            "repl-diskless-sync-delay": "0",
            "tls-cert-file": f"/tls/nodes/{name}.crt",
            "tls-client-cert-file": "/tls/client.crt",
            "replica-announce-ip": name,
        }.items():
            assert conf[key] == [value], (name, key)
        assert "cluster-enabled" not in conf
    assert "replicaof" not in directives(rendered["redis-0"])
    assert directives(rendered["redis-1"])["replicaof"] == ["redis-0 7000"]


def test_cluster_nodes_have_tls_on_the_bus_and_announce_their_tls_and_bus_ports():
    rendered = render(settings("cluster", cluster_node_timeout_milliseconds=2000), False)
    for index in range(6):
        conf = directives(rendered[f"redis-{index}"])
        port, bus = 7000 + index, 17000 + index
        for key, value in {
            "port": "0",
            "tls-port": str(port),
            "cluster-enabled": "yes",
            "tls-cluster": "yes",
            "tls-replication": "yes",
            "cluster-port": str(bus),
            "cluster-announce-ip": "127.0.0.1",
            "cluster-announce-tls-port": str(port),
            "cluster-announce-bus-port": str(bus),
            "cluster-require-full-coverage": "yes",
            "cluster-node-timeout": "2000",
            "min-replicas-to-write": "1",
            "masteruser": "replication",
        }.items():
            assert conf[key] == [value], (index, key)
        assert "replicaof" not in conf  # CLUSTER REPLICATE, kept in nodes.conf


def test_sentinels_are_tls_only_authenticated_both_ways_and_identical_in_their_users():
    config = settings("sentinel", down_after_milliseconds=1000, quorum=2)
    rendered = render(config)
    files = {item.path: item.content for item in bundle_files(config, PASSWORDS, 1000, 1000)}
    users = set()
    for index in range(3):
        text = rendered[f"sentinel-{index}"]
        conf = directives(text)
        assert conf["port"] == ["0"]
        assert conf["tls-port"] == [str(7100 + index)]
        assert conf["tls-replication"] == ["yes"]  # TLS to the nodes and to each other
        assert conf["tls-auth-clients"] == ["yes"]
        assert conf["aclfile"] == ["/usr/local/etc/redis/users.acl"]  # ACL SAVE works
        assert "user" not in conf
        sentinel = sentinel_directives(text)
        assert sentinel["monitor"] == ["redkeep redis-0 7000 2"]
        assert sentinel["auth-user"] == ["redkeep sentinel"]
        assert sentinel["auth-pass"] == [f"redkeep {PASSWORDS['sentinel']}"]
        assert sentinel["sentinel-user"] == ["sentinel"]
        assert sentinel["sentinel-pass"] == [PASSWORDS["sentinel"]]
        assert sentinel["down-after-milliseconds"] == ["redkeep 1000"]
        assert sentinel["failover-timeout"] == ["redkeep 60000"]
        assert sentinel["announce-port"] == [str(7100 + index)]
        assert len(sentinel["known-sentinel"]) == 2  # the others, with their ids
        assert sorted(sentinel["known-replica"]) == ["redkeep redis-1 7001", "redkeep redis-2 7002"]
        acl = files[f"redis/nodes/sentinel-{index}/users.acl"]
        assert acl.splitlines()[0] == "user default off resetpass resetkeys resetchannels -@all"
        assert [line.split()[1] for line in acl.splitlines()] == [
            "default", "admin", "exporter", "app", "sentinel"
        ]  # fmt: skip
        users.add(acl)
    assert len(users) == 1  # the same users on every Sentinel


def test_the_replication_and_sentinel_users_get_only_what_they_need():
    acl = render_acl(settings("sentinel"), PASSWORDS)
    rules = {line.split()[1]: line.split()[2:] for line in acl.splitlines()}
    assert rules["default"][:2] == ["off", "resetpass"]
    replication = [rule for rule in rules["replication"] if not rule.startswith("#")]
    assert replication == ["on", "resetkeys", "resetchannels", "-@all", "+psync", "+replconf",
                           "+ping"]  # fmt: skip
    sentinel = rules["sentinel"]
    assert [rule for rule in sentinel if rule.startswith(("&", "~"))] == ["&__sentinel__:hello"]
    assert "+@all" not in sentinel and "+config|set" not in sentinel
    cluster = render_acl(settings("cluster"), PASSWORDS)
    assert "user sentinel" not in cluster  # no Sentinels, no Sentinel user
    app = next(line for line in cluster.splitlines() if line.startswith("user app "))
    assert "+cluster|slots" in app.split() and "-@dangerous" in app.split()
    standalone = render_acl(Settings(), PASSWORDS)
    assert [line.split()[1] for line in standalone.splitlines()] == [
        "default", "admin", "app", "exporter", "backup"
    ]  # fmt: skip


def rewritten_by_sentinel(text: str, primary_port: int, epoch: int) -> str:
    """`text` as a Sentinel rewrites it after a failover to the node at `primary_port`: its
    own order, quotes and defaults, and its learned state (monitor, epochs, peers)."""
    kept = [
        line
        for line in text.splitlines()
        if line.startswith(("user ", "sentinel myid", "sentinel known-sentinel", "bind", "port"))
    ]
    return "\n".join(
        [
            *kept,
            'sentinel announce-ip "redis-x"',
            f"sentinel monitor redkeep redis-{primary_port - 7000} {primary_port} 2",
            f"sentinel config-epoch redkeep {epoch}",
            f"sentinel leader-epoch redkeep {epoch}",
            f"sentinel current-epoch {epoch}",
            "sentinel known-replica redkeep redis-0 7000",
            "protected-mode no",
        ]
    )


def test_a_re_render_keeps_what_the_sentinels_learned():
    config = settings("sentinel")
    first = render(config)
    texts = {"sentinel-1": rewritten_by_sentinel(first["sentinel-1"], 7002, 3)}
    ids = {
        name: sentinel_directives(first[name])["myid"][0]
        for name in ("sentinel-0", "sentinel-1", "sentinel-2")
    }
    # Only sentinel-1's file is there (the others were lost): the others' ids still come
    # from what sentinel-1 knew of them.
    again = render(config, texts=texts)
    for index in range(3):
        sentinel = sentinel_directives(again[f"sentinel-{index}"])
        assert sentinel["monitor"] == ["redkeep redis-2 7002 2"]
        assert sentinel["config-epoch"] == ["redkeep 3"]
        assert sentinel["current-epoch"] == ["3"]
        assert sentinel["myid"] == [ids[f"sentinel-{index}"]]
        assert sorted(sentinel["known-replica"]) == ["redkeep redis-0 7000", "redkeep redis-1 7001"]
        assert sorted(entry.split()[-1] for entry in sentinel["known-sentinel"]) == sorted(
            ident for name, ident in ids.items() if name != f"sentinel-{index}"
        )
    assert sentinel_directives(again["sentinel-1"])["leader-epoch"] == ["redkeep 3"]
    # The data nodes follow: the old primary and the other replica replicate redis-2.
    assert directives(again["redis-0"])["replicaof"] == ["redis-2 7002"]
    assert directives(again["redis-1"])["replicaof"] == ["redis-2 7002"]
    assert "replicaof" not in directives(again["redis-2"])


def test_learned_state_about_nodes_that_are_gone_is_left_out_with_a_note():
    """A primary at an address that is no node now (loopback: another port; containers: a
    name the deployment no longer has, as after fewer replicas) is left out, said."""
    config = settings("sentinel")
    for container, gone in ((False, "127.0.0.1 9999"), (True, "redis-9 7009")):
        where = nodes.layout(config, container)
        moved = rewritten_by_sentinel(render(config, container)["sentinel-0"], 7002, 2)
        moved = moved.replace("redis-2 7002", gone)
        state = nodes.sentinel_state(config, {"sentinel-0": moved}, where)
        assert state.primary is None and state.notes
        assert gone.replace(" ", ":") in state.notes[0]
        again = render(config, container, texts={"sentinel-0": moved})
        first = where.addresses["redis-0"]
        monitor = f"redkeep {first[0]} {first[1]} 2"
        assert sentinel_directives(again["sentinel-0"])["monitor"] == [monitor]


def test_in_containers_learned_state_survives_a_port_change():
    """The compose copy after `init --force --tls-port`: the Sentinels' files name the
    promoted primary and their peers at the old ports; in containers a node is its service
    name, so the primary, the epochs and the peers' ids are kept at the new ports."""
    before = settings("sentinel")
    learned = rewritten_by_sentinel(render(before)["sentinel-0"], 7002, 3)
    after = before.model_copy(update={"redis": before.redis.model_copy(update={"tls_port": 8000})})
    again = render(after, texts={"sentinel-0": learned})
    sentinel = sentinel_directives(again["sentinel-0"])
    assert sentinel["monitor"] == ["redkeep redis-2 8002 2"]
    assert sentinel["config-epoch"] == ["redkeep 3"]
    assert sentinel["current-epoch"] == ["3"]
    assert sorted(sentinel["known-replica"]) == ["redkeep redis-0 8000", "redkeep redis-1 8001"]
    assert directives(again["redis-0"])["replicaof"] == ["redis-2 8002"]
    assert "replicaof" not in directives(again["redis-2"])


def test_a_rotation_in_progress_stays_valid_on_every_node_and_sentinel():
    old = password_hash("the-old-app-password")
    files = bundle_files(settings("sentinel"), PASSWORDS, 1000, 1000, {"app": [old]})
    acls = [item.content for item in files if item.path.endswith("/users.acl")]
    assert len(acls) == 6
    for acl in acls:
        assert old in hashes_in(acl)["app"]
        assert password_hash(PASSWORDS["app"]) in hashes_in(acl)["app"]


@pytest.mark.parametrize("topology", ["sentinel", "cluster"])
def test_the_compose_file_follows_the_compose_specification(topology):
    config = settings(topology)
    text = render_compose(config, 1000, 1000)
    compose = yaml.safe_load(text)
    validator = Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text()))
    assert [error.message for error in validator.iter_errors(compose)] == []
    services = compose["services"]
    planned = nodes.planned(config)
    assert {node.name for node in planned} <= set(services)
    assert "redis" not in services  # not half-right
    # The backup schedule: `backup run --dir` on the compose view, as `redkeep up` runs it.
    backup = services["backup"]
    assert backup["command"] == ["backup", "run", "--dir=/bundle", "--every=1440"]
    assert "./compose/redkeep.yaml:/bundle/redkeep.yaml:ro" in backup["volumes"]
    # The proxy follows the Sentinels; it is no cluster router, so a cluster has none.
    assert ("proxy" in services) == (topology == "sentinel")
    assert ("cluster-create" in services) == (topology == "cluster")
    assert "exporter" in services
    files = {item.path: item for item in bundle_files(config, PASSWORDS, 1000, 1000)}
    for password in PASSWORDS.values():  # secrets come from .env, never the rendered text
        assert password not in files["docker-compose.yml"].content
        assert password not in files["compose/redkeep.yaml"].content
        assert password not in files.get("redis/cluster-create.sh", files[".env.example"]).content
    for node in planned:
        service = services[node.name]
        published = {int(port.split(":")[-1]) for port in service["ports"]}
        assert published == {node.port, node.bus_port} - {0}  # TLS client and bus ports only
        assert f"./redis/nodes/{node.name}:/usr/local/etc/redis" in service["volumes"]
        assert f"./data/{node.name}:/data" in service["volumes"]
        assert ("--sentinel" in service["command"]) == (node.role == "sentinel")


def test_a_deployment_bundle_has_private_per_node_files_and_no_standalone_server():
    config = settings("sentinel")
    files = {item.path: item for item in bundle_files(config, PASSWORDS, 1000, 1000)}
    assert "redis/redis.conf" not in files and "redis/users.acl" not in files
    for name in ("redis-0", "redis-1", "redis-2"):
        assert files[f"redis/nodes/{name}/redis.conf"].mode == 0o600  # masterauth
        assert files[f"redis/nodes/{name}/users.acl"].mode == 0o600
    acls = {files[f"redis/nodes/{name}/users.acl"].content for name in ("redis-0", "redis-2")}
    assert len(acls) == 1  # the same users on every node
    for index in range(3):
        assert files[f"redis/nodes/sentinel-{index}/sentinel.conf"].mode == 0o600  # auth-pass
        assert files[f"redis/nodes/sentinel-{index}/users.acl"].mode == 0o600
    env = files[".env"].content
    assert "REDIS_REPLICATION_PASSWORD=" in env and "REDIS_SENTINEL_PASSWORD=" in env
    standalone = {item.path: item for item in bundle_files(Settings(), PASSWORDS, 1, 1)}
    assert "REDIS_REPLICATION_PASSWORD" not in standalone[".env"].content


def test_a_cluster_bundle_needs_and_has_no_sentinel_user():
    own = {role: PASSWORDS[role] for role in ("admin", "app", "exporter", "backup", "replication")}
    files = {item.path: item for item in bundle_files(settings("cluster"), own, 1000, 1000)}
    assert sorted(path for path in files if path.startswith("redis/nodes/redis-0/")) == [
        "redis/nodes/redis-0/redis.conf", "redis/nodes/redis-0/users.acl"
    ]  # fmt: skip
    assert not any(path.startswith("redis/nodes/sentinel") for path in files)
    assert "REDIS_SENTINEL_PASSWORD" not in files[".env"].content


def env_of(config: Settings) -> tuple[str, dict[str, str]]:
    """(.env's comment lines, its values) as bundle_files renders it."""
    files = {item.path: item for item in bundle_files(config, PASSWORDS, 1000, 1000)}
    text = files[".env"].content
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    return comments, dict(line.split("=", 1) for line in text.splitlines() if "=" in line[:40])


def test_redis_url_serves_the_whole_deployment_and_says_what_it_is():
    sentinel = settings("sentinel", master_name="shop")
    sentinel = sentinel.model_copy(
        update={"proxy": sentinel.proxy.model_copy(update={"listen": "127.0.0.1:6999"})}
    )
    comments, values = env_of(sentinel)
    # The proxy, which follows the primary (a rotation of app renders it the same way).
    assert values["REDIS_URL"] == f"rediss://app:{PASSWORDS['app']}@localhost:6999"
    assert values["REDIS_SENTINELS"] == "localhost:7100,localhost:7101,localhost:7102"
    assert values["REDIS_SENTINEL_MASTER_NAME"] == "shop"
    assert "REDIS_SENTINELS" in comments and "proxy" in comments
    # No proxy asked for: the initial primary, as before.
    off = sentinel.model_copy(
        update={"proxy": sentinel.proxy.model_copy(update={"enabled": False})}
    )
    assert env_of(off)[1]["REDIS_URL"].endswith("@localhost:7000")
    comments, values = env_of(settings("cluster"))
    assert values["REDIS_URL"].endswith("@localhost:7000")  # redis-0, a seed
    assert "seed" in comments and "MOVED" in comments
    assert "REDIS_SENTINELS" not in values
    comments, values = env_of(Settings())
    assert "REDIS_SENTINELS" not in values and "seed" not in comments
