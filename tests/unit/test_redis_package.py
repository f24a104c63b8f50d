"""The Redis package's pure parts: HOST:PORT, deployments and their selectors, import cost."""

import subprocess
import sys

import pytest

from redkeep.config.load import load_settings
from redkeep.errors import ConfigError, UsageError
from redkeep.redis.deployment import Deployment, Node, Role, Topology
from redkeep.redis.target import Target, parse_host_port


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:6379", ("127.0.0.1", 6379)),
        ("redis.internal:1", ("redis.internal", 1)),
        ("[::1]:65535", ("::1", 65535)),
        ("[::ffff:127.0.0.1]:6380", ("::ffff:127.0.0.1", 6380)),
        ("0.0.0.0:9121", ("0.0.0.0", 9121)),
    ],
)
def test_host_port_accepts(value, expected):
    assert parse_host_port(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "::1:6379",  # IPv6 without brackets: where does the address end?
        "localhost",
        "localhost:",
        ":6379",
        "localhost:0",
        "localhost:65536",
        "localhost:99999",
        "localhost:63 79",
        "[::1]",
        "[]:6379",
        "local_host:6379",
        "localhost:6379\nport 1",
    ],
)
def test_host_port_refuses_in_one_line_naming_the_setting(value):
    with pytest.raises(UsageError) as caught:
        parse_host_port(value, "--listen", "127.0.0.1:9121")
    message = caught.value.message
    assert message.startswith(f"--listen '{value}' is not HOST:PORT")
    assert message.endswith("e.g. 127.0.0.1:9121")
    assert "in brackets" in message


def test_the_config_file_refuses_a_bad_address_with_the_same_words(tmp_path):
    path = tmp_path / "redkeep.yaml"
    path.write_text("proxy:\n  listen: '127.0.0.1:70000'\n  upstream: '::1:6380'\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    problems = sorted(caught.value.problems)
    assert len(problems) == 2
    assert problems[0].startswith("At 'proxy.listen': '127.0.0.1:70000' is not HOST:PORT")
    assert problems[1].startswith("At 'proxy.upstream': '::1:6380' is not HOST:PORT")


def test_the_config_file_takes_a_bracketed_ipv6_address(tmp_path):
    path = tmp_path / "redkeep.yaml"
    path.write_text("proxy:\n  listen: '[::1]:6381'\nexporter:\n  listen: '[::1]:9121'\n")
    settings = load_settings(path, {})
    assert (settings.proxy.listen, settings.exporter.listen) == ("[::1]:6381", "[::1]:9121")


def node(name: str, role: Role, shard: str = "") -> Node:
    return Node(name, role, Target("redis", host=name, port=6379), shard)


def test_a_standalone_server_is_every_node_the_primary_and_the_one_shard():
    redis = Target("rediss", host="localhost", port=6380)
    deployment = Deployment.standalone(redis)
    assert deployment.topology is Topology.STANDALONE
    (only,) = deployment.nodes
    assert only.target is redis and only.role is Role.STANDALONE
    assert deployment.every_node() == (only,)
    assert deployment.primary() is only
    assert deployment.one_per_shard() == (only,)


def test_a_replicated_deployment_leaves_sentinels_out_of_the_data_nodes():
    replica, primary = node("r1", Role.REPLICA), node("p", Role.PRIMARY)
    sentinels = [node(f"s{n}", Role.SENTINEL) for n in range(3)]
    deployment = Deployment(Topology.SENTINEL, (replica, *sentinels, primary))
    assert deployment.every_node() == (primary, replica)
    assert deployment.primary() is primary
    assert deployment.one_per_shard() == (primary,)


def test_a_cluster_backs_up_each_shard_from_its_primary_and_has_no_single_primary():
    nodes = (
        node("a-replica", Role.REPLICA, "a"),
        node("a-primary", Role.PRIMARY, "a"),
        node("b-primary", Role.PRIMARY, "b"),
        node("c-replica", Role.REPLICA, "c"),  # its primary is down: the replica will do
    )
    deployment = Deployment(Topology.CLUSTER, nodes)
    assert [n.name for n in deployment.one_per_shard()] == ["a-primary", "b-primary", "c-replica"]
    assert len(deployment.every_node()) == 4
    with pytest.raises(UsageError, match="a cluster deployment has 2 primaries"):
        deployment.primary()


def test_no_primary_is_an_error_not_a_guess():
    deployment = Deployment(Topology.SENTINEL, (node("r1", Role.REPLICA),))
    with pytest.raises(UsageError, match="0 primaries"):
        deployment.primary()


LIGHT = [
    "redkeep.redis.target",
    "redkeep.redis.deployment",
    "redkeep.redis.tls",
    "redkeep.redis.explain",
    "redkeep.redis.raw",
]


@pytest.mark.parametrize(
    ("modules", "heavy"),
    [
        (LIGHT, ["redis", "cryptography", "pydantic", "yaml"]),
        (["redkeep.cli.proxy", "redkeep.proxy.runner", "redkeep.proxy.server"], ["redis"]),
        # `backup run` starts every shard's capture after these imports: nothing it won't use.
        (
            ["redkeep.cli", "redkeep.cli.backup", "redkeep.actions.backup_cluster"],
            ["asyncio", "redis", "cryptography", "pydantic", "yaml"],
        ),
    ],
)
def test_what_a_module_imports_stays_light(modules, heavy):
    """The exporter and the proxy import these; redis-py and the others cost start-up and memory."""
    code = (
        f"import sys\nfor name in {modules!r}: __import__(name)\n"
        f"print(sorted(set({heavy!r}) & {{name.split('.')[0] for name in sys.modules}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_misconf_is_a_server_that_cannot_save_not_one_that_cannot_be_reached():
    import redis  # noqa: PLC0415

    from redkeep.errors import ExitStatus  # noqa: PLC0415
    from redkeep.redis.client import explain_failure  # noqa: PLC0415
    from redkeep.redis.explain import ErrorReply, explain  # noqa: PLC0415

    target = Target("redis", host="127.0.0.1", port=6379)
    text = "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist"
    for error in (
        explain(ErrorReply.parse(text), target),
        explain_failure(redis.ResponseError(text), target),
    ):
        assert error.status is ExitStatus.FAILURE
        assert "cannot persist to disk (MISCONF)" in error.message
        assert "cannot connect" not in error.message
