"""`redkeep audit --all-nodes` on a real Cluster and a real Sentinel group (tests/hanodes.py).

Discovery is judged by what the servers say they are (ROLE on each port). Each HA mistake is
planted on one live node with CONFIG SET, ACL SETUSER or SENTINEL SET, found on exactly that
node (and on no other), and undone; the good deployments yield none of the HA findings. The
two deployments are shared by the module: every plant restores what it changed.
"""

import json
from dataclasses import dataclass, field

import pytest

from redkeep.errors import RedkeepError
from redkeep.redis.deployment import Deployment, Topology
from redkeep.redis.discover import discover
from tests.conftest import run_redkeep
from tests.hanodes import (
    MASTER_NAME,
    PASSWORDS,
    HADeployment,
    wait_settled,
    wait_until,
)
from tests.servers import free_port

ADMIN_ENV = {"REDIS_PASSWORD": PASSWORDS["admin"]}
WATCHED = ("HA-", "TLS-06")  # the HA checks, and TLS-06 for replication and the bus in clear


def audit_all(cli, deployment: HADeployment, seed: str, *args: str):
    """`redkeep audit --all-nodes` from `seed`: exit code, and the reports by node name."""
    result = cli(
        "audit", "--all-nodes", deployment.url(seed), *deployment.tls_options(), *args,
        env=ADMIN_ENV,
    )  # fmt: skip
    if "--format" not in args:
        return result.code, result.out
    by_port = {server.tls_port: name for name, server in
               {**deployment.nodes, **deployment.sentinels}.items()}  # fmt: skip
    reports = {}
    for report in json.loads(result.out):
        port = int(report["target"].rsplit(":", 1)[1])
        reports[by_port.get(port, report["target"])] = report
    return result.code, reports


def watched(reports: dict) -> dict[str, dict[str, str]]:
    """node -> {id: severity} of the HA findings (and TLS-06)."""
    return {
        name: {
            item["id"]: item["severity"]
            for item in report.get("findings", [])
            if item["id"].startswith(WATCHED)
        }
        for name, report in reports.items()
    }


def roles_said(deployment: HADeployment) -> dict[str, str]:
    """What each server says it is (ROLE), by name: primary, replica or sentinel."""
    words = {"master": "primary", "slave": "replica", "sentinel": "sentinel"}
    said = {}
    for name in [*deployment.nodes, *deployment.sentinels]:
        client = deployment.client(name)
        said[name] = words[client.execute_command("ROLE")[0]]
        client.close()
    return said


# --- discovery ---------------------------------------------------------------------------------


def test_all_nodes_from_a_cluster_replica_finds_the_whole_cluster(cli, cluster):
    code, reports = audit_all(cli, cluster, "redis-3", "--format", "json")
    assert code == 0
    assert {name: report["role"] for name, report in reports.items()} == roles_said(cluster)
    # The certificates name only localhost; the nodes announce 127.0.0.1: each was reached
    # (and its certificate checked) under the seed's name.
    assert all("error" not in report for report in reports.values())
    assert all(report["node"] for report in reports.values())


def test_all_nodes_from_a_sentinel_finds_primary_replicas_and_sentinels(cli, sentinels):
    code, reports = audit_all(cli, sentinels, "sentinel-1", "--format", "json")
    assert code == 0, [report.get("error") for report in reports.values()]
    assert {name: report["role"] for name, report in reports.items()} == roles_said(sentinels)
    sentinel = reports["sentinel-0"]
    skipped = {item["id"] for item in sentinel["not_applicable"]}
    assert {"NET-01", "CMD-01", "HA-01"} <= skipped and "HA-08" not in skipped
    assert not skipped & {item["id"] for item in sentinel["could_not_verify"]}


def test_from_a_replica_its_sentinels_are_found_by_their_hello(sentinels):
    found = discover(sentinels.target("redis-1"))
    ports = {node.target.port: node.role.value for node in found.deployment.nodes}
    expected = {sentinels.server(name).tls_port: role for name, role in
                roles_said(sentinels).items()}  # fmt: skip
    assert ports == expected and found.skipped == ()
    assert Deployment.discover(sentinels.target("redis-1")).topology is Topology.SENTINEL


def test_a_node_in_handshake_is_skipped_and_reported(cli, cluster):
    """CLUSTER MEET of an address where nothing listens: the cluster lists it `handshake`
    until cluster-node-timeout; discovery reports it, never asks it."""
    client = cluster.client("redis-0")
    nobody = 1  # a port nothing listens on (below the test range)
    client.execute_command("CLUSTER MEET", "127.0.0.1", nobody, nobody)
    try:
        found = discover(cluster.target("redis-0"))
        assert [(item.address, item.reason[:18]) for item in found.skipped] == [
            ("127.0.0.1:1", "still in handshake")
        ]
        assert len(found.deployment.nodes) == len(cluster.nodes)
    finally:
        wait_until(  # redis-py parses CLUSTER NODES: address -> fields
            lambda: all(
                "handshake" not in node["flags"]
                for node in client.execute_command("CLUSTER NODES").values()
            ),
            "the handshake to time out",
        )
        client.close()


def test_a_node_announcing_port_0_is_skipped_with_the_likely_cause(cluster):
    """With `port 0`, tls-cluster no makes a node announce client port 0 to the others."""
    run_on(cluster, "redis-1", [config("tls-cluster", "no")])
    try:
        client = cluster.client("redis-0")
        wait_until(
            lambda: "127.0.0.1:0" in client.execute_command("CLUSTER NODES"),
            "redis-0 to hear of redis-1's port 0",
        )
        client.close()
        found = discover(cluster.target("redis-0"))
    finally:
        run_on(cluster, "redis-1", [config("tls-cluster", "yes")])
        wait_settled(cluster)
    assert [(item.address, item.reason[:30]) for item in found.skipped] == [
        ("127.0.0.1:0", "it announces client port 0 (po")
    ]


def test_discovery_is_bounded(cluster):
    found = discover(cluster.target("redis-0"), max_nodes=2)
    assert len(found.deployment.nodes) == 2
    assert [item.reason for item in found.skipped] == ["more than 2 nodes"] * 2
    with pytest.raises(RedkeepError, match="ran out of time"):
        discover(cluster.target("redis-0"), timeout=0)


def test_text_output_names_every_node(cli, sentinels):
    code, out = audit_all(cli, sentinels, "sentinel-1")
    assert code == 0
    for name, role in roles_said(sentinels).items():
        port = sentinels.server(name).tls_port
        assert f":{port} ({role})" in out, name
    assert "5 of 5 servers audited" in out


# --- planted mistakes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Plant:
    """Commands run on one node to plant a mistake, the ones that undo it, what must be found."""

    deployment: str  # "sentinels" or "cluster"
    node: str
    plant: list[tuple]
    undo: list[tuple]
    expected: dict[str, str] = field(default_factory=dict)
    seed: str = ""


def config(name: str, value) -> tuple:
    return ("CONFIG", "SET", name, str(value))


REPLICATION = [config("masteruser", "replication"), config("masterauth", PASSWORDS["replication"])]
PLANTS = {
    "masterauth missing on a replica": Plant(
        "sentinels", "redis-1", [config("masterauth", "")], REPLICATION, {"HA-01": "high"}
    ),
    "masterauth wrong on a primary": Plant(
        "sentinels", "redis-0", [config("masterauth", "stale")], REPLICATION, {"HA-01": "medium"}
    ),
    "replication as admin": Plant(
        "sentinels",
        "redis-1",
        [config("masteruser", "admin"), config("masterauth", PASSWORDS["admin"])],
        REPLICATION,
        {"HA-02": "high"},
    ),
    "min-replicas-to-write 0": Plant(
        "sentinels",
        "redis-0",
        [config("min-replicas-to-write", 0)],
        [config("min-replicas-to-write", 1)],
        {"HA-03": "medium"},
    ),
    "diskless sync delay under Sentinel": Plant(
        "sentinels",
        "redis-1",
        [config("repl-diskless-sync-delay", 5)],
        [config("repl-diskless-sync-delay", 0)],
        {"HA-04": "high"},
    ),
    "replication without TLS": Plant(
        "sentinels",
        "redis-1",
        [config("tls-replication", "no")],
        [config("tls-replication", "yes")],
        {"TLS-06": "high"},
    ),
    "ACL user differs on one node": Plant(
        "sentinels",
        "redis-1",
        [("ACL", "SETUSER", "app", ">another-app-password-0123")],
        [("ACL", "SETUSER", "app", "<another-app-password-0123")],
        {"HA-07": "high"},
    ),
    "Sentinel open to anyone": Plant(
        "sentinels",
        "sentinel-0",
        [("ACL", "SETUSER", "default", "on", "nopass", "+@all")],
        [("ACL", "SETUSER", "default", "reset")],
        {"HA-08": "critical", "HA-07": "high"},
    ),
    "Sentinels without sentinel-pass": Plant(
        "sentinels",
        "sentinel-0",
        [("SENTINEL", "CONFIG", "SET", "sentinel-pass", "")],
        [("SENTINEL", "CONFIG", "SET", "sentinel-pass", PASSWORDS["sentinel-peer"])],
        {"HA-10": "high"},
    ),
    "an application user that may reconfigure Sentinel": Plant(
        "sentinels",
        "sentinel-0",
        [("ACL", "SETUSER", "app", "on", ">app-on-sentinel-0123456789", "+@all")],
        [("ACL", "DELUSER", "app")],
        {"HA-11": "high", "HA-07": "high"},
    ),
    "a quorum no failover reaches": Plant(
        "sentinels",
        "sentinel-0",
        [("SENTINEL", "SET", MASTER_NAME, "quorum", "5")],
        [("SENTINEL", "SET", MASTER_NAME, "quorum", "2")],
        {"HA-12": "high"},
    ),
    "partial coverage": Plant(
        "cluster",
        "redis-0",
        [config("cluster-require-full-coverage", "no")],
        [config("cluster-require-full-coverage", "yes")],
        {"HA-05": "medium"},
    ),
    # With port 0 a node without tls-cluster announces client port 0 to the others: only its
    # own view (seed) still names the port it serves TLS on.
    "cluster bus in plaintext": Plant(
        "cluster",
        "redis-1",
        [config("tls-cluster", "no")],
        [config("tls-cluster", "yes")],
        {"HA-06": "high", "TLS-06": "high"},
        seed="redis-1",
    ),
    "diskless sync delay in a Cluster": Plant(
        "cluster",
        "redis-3",
        [config("repl-diskless-sync-delay", 5)],
        [config("repl-diskless-sync-delay", 0)],
        {"HA-04": "high"},
        seed="redis-0",
    ),
}


def run_on(deployment: HADeployment, node: str, commands: list[tuple]) -> None:
    client = deployment.client(node)
    try:
        for command in commands:
            client.execute_command(*command)
    finally:
        client.close()


@pytest.mark.parametrize("plant", PLANTS.values(), ids=PLANTS.keys())
def test_a_planted_mistake_is_found_on_its_node_only(cli, request, plant):
    deployment = request.getfixturevalue(plant.deployment)
    seed = plant.seed or ("sentinel-1" if plant.deployment == "sentinels" else "redis-3")
    run_on(deployment, plant.node, plant.plant)
    try:
        code, reports = audit_all(cli, deployment, seed, "--format", "json")
    finally:
        run_on(deployment, plant.node, plant.undo)
        wait_settled(deployment)
    expected = {name: {} for name in reports} | {plant.node: plant.expected}
    assert watched(reports) == expected
    assert code == 0  # findings alone do not fail the audit without --fail-on
    code, _ = audit_all(cli, deployment, seed, "--format", "json", "--fail-on", "high")
    assert code == 1  # VER-* on Debian's 7.0.15 at least


def test_a_sentinel_without_auth_pass_is_found(cli, sentinels):
    """SENTINEL SET auth-pass "": the Sentinel drops its links, cannot log in again and calls
    the primary down (alone: no quorum, no failover)."""
    client = sentinels.client("sentinel-0")
    client.execute_command("SENTINEL SET", MASTER_NAME, "auth-pass", "")
    try:
        wait_until(
            lambda: "s_down" in client.execute_command("SENTINEL MASTER", MASTER_NAME)["flags"],
            "sentinel-0 to call the primary down",
        )
        code, reports = audit_all(cli, sentinels, "sentinel-1", "--format", "json")
    finally:
        client.execute_command("SENTINEL SET", MASTER_NAME, "auth-pass", PASSWORDS["sentinel"])
        wait_settled(sentinels)
        client.close()
    assert watched(reports) == {name: {} for name in reports} | {"sentinel-0": {"HA-09": "high"}}
    evidence = next(i for i in reports["sentinel-0"]["findings"] if i["id"] == "HA-09")
    assert "requires a login" in evidence["evidence"]
    assert PASSWORDS["sentinel"] not in json.dumps(reports)


def test_the_good_deployments_have_no_ha_finding(cli, cluster, sentinels):
    for deployment, seed in ((cluster, "redis-0"), (sentinels, "redis-0")):
        code, reports = audit_all(cli, deployment, seed, "--format", "json")
        assert code == 0
        assert watched(reports) == {name: {} for name in reports}
        assert len(reports) == len(deployment.nodes) + len(deployment.sentinels)
        unverified = {
            (name, item["id"])
            for name, report in reports.items()
            for item in report["could_not_verify"]
            if item["id"].startswith("HA-")
        }
        assert unverified == set()


def test_a_cluster_bundle_is_audited_on_every_planned_node(tmp_path):
    """Without URL a cluster bundle's audit asks each of its nodes (none runs here: each is
    reported unreachable by its name and role, and the audit exits 3)."""
    root = tmp_path / "bundle"
    assert run_redkeep("init", root, "--tls-port", free_port()).returncode == 0
    with (root / "redkeep.yaml").open("a") as config:
        config.write("\ndeployment:\n  topology: cluster\n")
    result = run_redkeep("audit", "--dir", root, "--format", "json")
    assert result.returncode == 3, result.stderr
    reports = json.loads(result.stdout)
    assert [(report["node"], report["role"]) for report in reports] == [
        ("redis-0", "primary"), ("redis-1", "primary"), ("redis-2", "primary"),
        ("redis-3", "replica"), ("redis-4", "replica"), ("redis-5", "replica"),
    ]  # fmt: skip
    assert all("connection refused" in report["error"] for report in reports)
