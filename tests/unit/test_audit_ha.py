"""The HA checks on captured facts: each finds its planted mistake and passes the good config.

The INFO, CLUSTER NODES, SENTINEL MASTERS and ACL GETUSER values are what Redis 7.0.15 answered
in a 3-primary TLS cluster and a Sentinel group (tests/hanodes.py); a deployment is a list of
Facts whose `peers` are each other, as `redkeep audit` builds it.
"""

import hashlib
import json

import pytest

from redkeep.audit.checks import CHECKS, Finding, Passed
from redkeep.audit.facts import BUS_PLAINTEXT, BUS_TLS, Facts, NotApplicable, Unavailable
from redkeep.audit.report import run_checks, sarif
from redkeep.exporter.info import parse_info
from redkeep.redis.acl import AclUser
from redkeep.redis.deployment import Node, Role
from redkeep.redis.discover import parse_cluster_nodes, peer
from redkeep.redis.target import Target, parse_url

BY_ID = {check.id: check for check in CHECKS}


def sha(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def acl(flags, passwords=(), commands="-@all", keys="", channels="") -> AclUser:
    return AclUser(frozenset(flags), tuple(sha(p) for p in passwords), commands, keys, channels)


DATA_USERS = {
    "default": acl({"off"}, (), "+@all", "~*", "&*"),
    "admin": acl({"on"}, ["admin-pw"], "+@all", "~*", "&*"),
    "replication": acl({"on"}, ["replication-pw"], "-@all +psync +replconf +ping"),
    "app": acl({"on"}, ["app-pw"], "-@all +@string +@hash +@connection -keys -flushall", "~app:*"),
}
SENTINEL_USERS = {
    "default": acl({"off"}),
    "admin": acl({"on"}, ["admin-pw"], "+@all", "~*", "&*"),
    "sentinel-peer": acl(
        {"on"}, ["peer-pw"], "-@all +ping +publish +sentinel|is-master-down-by-addr", "",
        "&__sentinel__:hello",
    ),
}  # fmt: skip
GOOD_CONFIG = {
    "masteruser": "replication",
    "masterauth": sha("replication-pw"),  # facts keep it hashed
    "min-replicas-to-write": "1",
    "repl-diskless-sync": "yes",
    "repl-diskless-sync-delay": "0",
    "cluster-require-full-coverage": "yes",
    "tls-replication": "yes",
    "tls-cluster": "yes",
}
ADMIN_POWERS = ("config set", "flushall", "module", "debug", "acl setuser")
SENTINEL_PROBES = ("sentinel set", "sentinel failover", "sentinel remove", "sentinel config set")


def info_text(**sections: str) -> dict:
    text = "".join(f"# {name.title()}\r\n{body}" for name, body in sections.items())
    return parse_info(text)


def data_node(
    port: int,
    role: str = "master",
    replicas: list[int] = (),
    primary_port: int = 0,
    replid: str = "c0503d428bef861c14199e2924bedc55511e64d8",
    cluster: str = "",
    config: dict | None = None,
    users: dict | None = None,
    clients: list | None = None,
    bus: str | None = None,
) -> Facts:
    replication = f"role:{role}\r\n"
    if role == "slave":
        replication += (
            f"master_host:127.0.0.1\r\nmaster_port:{primary_port}\r\nmaster_link_status:up\r\n"
            "connected_slaves:0\r\n"
        )
    else:
        replication += f"connected_slaves:{len(replicas)}\r\n" + "".join(
            f"slave{i}:ip=127.0.0.1,port={p},state=online,offset=407,lag=0\r\n"
            for i, p in enumerate(replicas)
        )
    replication += f"master_replid:{replid}\r\n"
    users = DATA_USERS if users is None else users
    dryrun = {(user, probe): user == "admin" for user in users for probe in ADMIN_POWERS}
    return Facts(
        parse_url(f"rediss://admin:admin-pw@127.0.0.1:{port}"),
        info=info_text(
            server=f"redis_version:7.0.15\r\nredis_mode:{'cluster' if cluster else 'standalone'}"
            f"\r\nrun_id:{port:040d}\r\n",
            replication=replication,
            cluster=f"cluster_enabled:{1 if cluster else 0}\r\n",
        ),
        config={**GOOD_CONFIG, **(config or {})},
        users=users,
        dryrun=dryrun,
        clients=clients if clients is not None else [],
        cluster_nodes=parse_cluster_nodes(cluster) if cluster else Unavailable("not a Cluster"),
        bus=bus if bus is not None else Unavailable("not a Cluster node"),
        sentinel_masters=Unavailable("not a Sentinel"),
        unauthenticated="NOAUTH Authentication required.",
    )


def sentinel_node(
    port: int,
    primary_port: int,
    myid: str,
    flags: str = "master",
    others: int = 2,
    quorum: int = 2,
    users: dict | None = None,
    settings: dict | None = None,
    dryrun: dict | None = None,
    unauthenticated: str = "NOAUTH Authentication required.",
) -> Facts:
    master = {
        "name": "ha", "ip": "127.0.0.1", "port": str(primary_port), "runid": f"{primary_port:040d}",
        "flags": flags, "num-slaves": "1", "num-other-sentinels": str(others),
        "quorum": str(quorum), "down-after-milliseconds": "1000",
    }  # fmt: skip
    users = SENTINEL_USERS if users is None else users
    probes = (*SENTINEL_PROBES, "acl setuser")
    return Facts(
        parse_url(f"rediss://admin:admin-pw@127.0.0.1:{port}"),
        info=info_text(server=f"redis_version:7.0.15\r\nredis_mode:sentinel\r\nrun_id:{myid}\r\n"),
        users=users,
        dryrun=dryrun or {(user, probe): user == "admin" for user in users for probe in probes},
        clients=[],
        sentinel_masters=[master],
        sentinel_peers={"ha": []},
        sentinel_config={"sentinel-user": "sentinel-peer", "sentinel-pass": "(set)",
                         **(settings or {})},
        sentinel_myid=myid,
        unauthenticated=unauthenticated,
    )  # fmt: skip


def deployment(*members: Facts) -> list[Facts]:
    """Each member's peers are all of them, each has a node name (as `redkeep audit` sets)."""
    for index, member in enumerate(members):
        role = Role.SENTINEL if member.is_sentinel else Role.PRIMARY
        member.node = Node(f"node-{index}", role, member.target)
        member.peers = tuple(members)
    return list(members)


def sentinel_link(myid: str) -> dict:
    return {"addr": "127.0.0.1:52440", "name": f"sentinel-{myid[:8]}-cmd", "user": "sentinel"}


MYIDS = ("3c767a4829cb57aa305a4544f5ca33c17744a422", "0b9236315bee7924a141ba1a3d564ad7b7bf1795",
         "6f078c63f19975d6db5c949e2a0eec350b6e1782")  # fmt: skip


def sentinel_group(primary_config=None, replica_config=None, replica_users=None, sentinels=None):
    """redis-0 (port 7000), its replica (7001) and three Sentinels (7100..), as captured."""
    primary = data_node(
        7000, replicas=[7001], config=primary_config, clients=[sentinel_link(i) for i in MYIDS]
    )
    replica = data_node(
        7001, role="slave", primary_port=7000, config=replica_config, users=replica_users
    )
    watchers = sentinels or [sentinel_node(7100 + j, 7000, MYIDS[j]) for j in range(3)]
    return deployment(primary, replica, *watchers)


# Captured from the test cluster (ports renumbered), plus the states discovery must skip.
CLUSTER_NODES = """\
fd978b8b357f932b0c5f8c8cb4c4533a28ffe5d2 127.0.0.1:7002@17002 master - 0 1796054061152 3 connected 10922-16383
b380233f235f8a09d857cf5e067a9245f253e424 127.0.0.1:7003@17003 slave 93dfd4c19120e0bf213b4f3ad6c324d935ae8d0d 0 1796054061000 1 connected
f64b93fda86619e4f9b921ca2cf9e761e41eccfc 127.0.0.1:7001@17001 master - 0 1796054060842 2 connected 5461-10921
93dfd4c19120e0bf213b4f3ad6c324d935ae8d0d 127.0.0.1:7000@17000 myself,master - 0 1796054061051 1 connected 0-5460
"""  # noqa: E501


def cluster_view(port: int) -> str:
    """CLUSTER NODES as the node on `port` answers it (its own line says myself)."""
    lines = [line.replace("myself,", "") for line in CLUSTER_NODES.splitlines()]
    return "\n".join(
        line.replace("master", "myself,master", 1).replace("slave", "myself,slave", 1)
        if f":{port}@" in line
        else line
        for line in lines
    )


def cluster(replica_config=None, bus=f"{BUS_TLS}: port 17000", primary_config=None):
    ports = (7000, 7001, 7002)
    primaries = [
        data_node(
            port,
            replicas=[7003] if port == 7000 else [],
            cluster=cluster_view(port),
            config=primary_config if port == 7000 else None,
            bus=bus if port == 7000 else f"{BUS_TLS}: port {port + 10000}",
        )
        for port in ports
    ]
    replica = data_node(
        7003,
        role="slave",
        primary_port=7000,
        cluster=cluster_view(7003),
        config=replica_config,
        bus=f"{BUS_TLS}: port 17003",
    )
    return deployment(*primaries, replica)


def run(check_id: str, fact: Facts):
    try:
        return BY_ID[check_id].run(fact)
    except (Unavailable, NotApplicable) as missing:
        return missing


def ha_findings(members: list[Facts]) -> dict[str, dict[str, str]]:
    """node -> {HA id: severity} over every HA check that applies to it."""
    found = {}
    for member in members:
        report = run_checks(member, accepted=set())
        found[member.name] = {
            item.id: item.severity for item in report.findings if item.id.startswith("HA-")
        }
        assert not [item for item in report.could_not_verify if item.id.startswith("HA-")], (
            member.name,
            report.could_not_verify,
        )
    return found


# --- the good deployments ----------------------------------------------------------------------


def test_good_deployments_have_no_ha_finding():
    assert all(not found for found in ha_findings(sentinel_group()).values())
    assert all(not found for found in ha_findings(cluster()).values())


# --- data nodes --------------------------------------------------------------------------------


def test_ha01_replica_without_or_with_a_wrong_masterauth():
    for planted, expected in (
        ({"masterauth": ""}, "no masterauth"),
        ({"masterauth": sha("old-password")}, "not a password of user replication"),
        ({"masteruser": "nobody"}, "masteruser nobody does not exist"),
    ):
        members = sentinel_group(replica_config=planted)
        result = run("HA-01", members[1])
        assert isinstance(result, Finding) and result.severity == "high", planted
        assert expected in result.evidence and "node-0" in result.evidence
        assert isinstance(run("HA-01", members[0]), Passed)
    assert isinstance(run("HA-01", sentinel_group()[1]), Passed)


def test_ha01_a_primary_needs_masterauth_for_the_day_it_is_demoted():
    members = sentinel_group(primary_config={"masterauth": ""})
    result = run("HA-01", members[0])
    assert isinstance(result, Finding) and result.severity == "medium"
    assert "after a sentinel failover" in result.evidence
    # Without automatic failover a primary replicates from nobody.
    alone = data_node(7000, config={"masterauth": ""})
    assert isinstance(run("HA-01", alone), Passed)
    # A primary whose default user lets anyone in needs no login.
    open_users = {**DATA_USERS, "default": acl({"on", "nopass"}, (), "+@all", "~*", "&*")}
    members = sentinel_group(replica_config={"masterauth": ""})
    members[0].users = open_users
    assert isinstance(run("HA-01", members[1]), Passed)


def test_ha01_audited_alone_a_replica_cannot_be_judged():
    replica = data_node(7001, role="slave", primary_port=7000)
    assert isinstance(run("HA-01", replica), Unavailable)


def test_ha02_replication_as_an_administrator_or_as_default():
    members = sentinel_group(replica_config={"masteruser": "admin", "masterauth": sha("admin-pw")})
    result = run("HA-02", members[1])
    assert isinstance(result, Finding) and result.severity == "high"
    assert "CONFIG SET" in result.evidence and "admin-pw" not in json.dumps(result.__dict__)
    members = sentinel_group(replica_config={"masteruser": ""})
    result = run("HA-02", members[1])
    assert isinstance(result, Finding) and result.severity == "medium"
    assert isinstance(run("HA-02", sentinel_group()[1]), Passed)


def test_ha03_min_replicas_to_write():
    members = sentinel_group(primary_config={"min-replicas-to-write": "0"})
    result = run("HA-03", members[0])
    assert isinstance(result, Finding) and "1 replicas" in result.evidence
    assert isinstance(run("HA-03", sentinel_group()[0]), Passed)
    # A primary without replicas has nothing to wait for.
    assert isinstance(run("HA-03", data_node(7000, config={"min-replicas-to-write": "0"})), Passed)


def test_ha04_diskless_sync_delay_under_failover_only():
    delayed = {"repl-diskless-sync-delay": "5"}
    for members, node in ((sentinel_group(replica_config=delayed), 1),
                          (cluster(replica_config=delayed), 3)):  # fmt: skip
        result = run("HA-04", members[node])
        assert isinstance(result, Finding) and result.severity == "high"
        assert "repl-diskless-sync-delay 5" in result.evidence
    # Disk-based sync does not wait; a primary without failover does not promote anyone.
    assert isinstance(
        run("HA-04", sentinel_group(replica_config={"repl-diskless-sync": "no",
                                                    "repl-diskless-sync-delay": "5"})[1]),
        Passed,
    )  # fmt: skip
    lone = data_node(7000, replicas=[7001], config={"repl-diskless-sync-delay": "5"})
    assert isinstance(run("HA-04", lone), Passed)
    # Sentinel clients on a primary audited alone say a Sentinel watches it.
    watched = data_node(7000, replicas=[7001], config={"repl-diskless-sync-delay": "5"},
                        clients=[sentinel_link(MYIDS[0])])  # fmt: skip
    assert isinstance(run("HA-04", watched), Finding)


def test_ha05_full_coverage():
    members = cluster(primary_config={"cluster-require-full-coverage": "no"})
    assert run("HA-05", members[0]).severity == "medium"
    assert isinstance(run("HA-05", cluster()[0]), Passed)
    assert run("HA-05", data_node(7000, config={"cluster-require-full-coverage": "no"})).evidence


def test_ha06_bus_in_plaintext():
    members = cluster(bus=f"{BUS_PLAINTEXT}: port 17000 (Connection reset by peer)")
    result = run("HA-06", members[0])
    assert isinstance(result, Finding) and result.severity == "high"
    assert isinstance(run("HA-06", cluster(bus="unreachable: port 17000: refused")[0]), Passed)
    assert isinstance(run("HA-06", cluster()[0]), Passed)


def test_cluster_nodes_parse_and_find_the_primary():
    nodes = parse_cluster_nodes(CLUSTER_NODES)
    replica = next(node for node in nodes if not node.is_primary)
    assert (replica.port, replica.bus_port, replica.primary_id[:8]) == (7003, 17003, "93dfd4c1")
    assert [node.unusable() for node in nodes] == ["", "", "", ""]
    # What discovery skips: a failed node, one in handshake, one without an address; and a
    # node announced by host name (7.0's cluster-announce-hostname) keeps its name.
    states = parse_cluster_nodes(
        "a1 10.0.0.7:6379@16379 master,fail - 0 0 4 disconnected\n"
        "b2 10.0.0.8:6379@16379 handshake - 0 0 0 disconnected\n"
        "c3 :0@0 slave,noaddr a1 0 0 4 disconnected\n"
        "d4 10.0.0.9:6379@16379,redis-4.internal master - 0 0 5 connected 0-100\n"
    )
    assert [node.unusable()[:20] for node in states] == [
        "the cluster marks it",
        "still in handshake",
        "the cluster knows no",
        "",
    ]
    assert (states[3].host, states[3].hostname, states[3].slots) == (
        "10.0.0.9",
        "redis-4.internal",
        ("0-100",),
    )
    members = cluster(replica_config={"masterauth": ""})
    result = run("HA-01", members[3])  # its primary found by the cluster's node ids
    assert isinstance(result, Finding) and "node-0" in result.evidence


# --- every node --------------------------------------------------------------------------------


def test_ha07_acl_users_differ():
    drifted = {**DATA_USERS, "app": acl({"on"}, ["app-pw", "other-pw"], DATA_USERS["app"].commands,
                                        "~app:*")}  # fmt: skip
    members = sentinel_group(replica_users=drifted)
    found = ha_findings(members)
    assert found["node-1"] == {"HA-07": "high"}
    assert "HA-07" not in found["node-0"]
    assert "app: passwords (as on node-0)" in run("HA-07", members[1]).evidence
    # Rules that differ only in the order Redis lists them are the same rules.
    reordered = {**DATA_USERS, "app": acl({"on"}, ["app-pw"],
                                          "-@all +@connection +@hash +@string -flushall -keys",
                                          "~app:*")}  # fmt: skip
    assert isinstance(run("HA-07", sentinel_group(replica_users=reordered)[1]), Passed)
    # A user only one node has, and one it lacks.
    extra = {**DATA_USERS, "ops": acl({"on"}, ["ops-pw"], "+@all")}
    evidence = run("HA-07", sentinel_group(replica_users=extra)[1]).evidence
    assert "ops: only here" in evidence
    missing = {name: user for name, user in DATA_USERS.items() if name != "app"}
    assert "app: missing here" in run("HA-07", sentinel_group(replica_users=missing)[1]).evidence


def test_ha07_compares_sentinels_with_sentinels_and_not_alone():
    sentinels = [sentinel_node(7100 + j, 7000, MYIDS[j]) for j in range(3)]
    sentinels[2].users = {**SENTINEL_USERS, "app": acl({"on"}, ["x"], "+@all")}
    found = ha_findings(sentinel_group(sentinels=sentinels))
    assert found["node-4"] == {"HA-07": "high"}
    assert not found["node-2"] and not found["node-0"]
    assert isinstance(run("HA-07", data_node(7000)), NotApplicable)  # standalone
    assert isinstance(run("HA-07", data_node(7000, replicas=[7001])), Unavailable)


# --- Sentinels ---------------------------------------------------------------------------------


def test_ha08_sentinel_without_auth():
    assert run("HA-08", sentinel_node(7100, 7000, MYIDS[0], unauthenticated="PONG")).severity == (
        "critical"
    )
    open_users = {**SENTINEL_USERS, "default": acl({"on", "nopass"}, (), "+@all")}
    powers = {("default", probe): True for probe in (*SENTINEL_PROBES, "acl setuser")}
    member = sentinel_node(7100, 7000, MYIDS[0], users=open_users, dryrun=powers,
                           unauthenticated="NOPERM this user has no permissions")  # fmt: skip
    result = run("HA-08", member)
    assert isinstance(result, Finding) and "SENTINEL FAILOVER" in result.evidence
    assert isinstance(run("HA-08", sentinel_node(7100, 7000, MYIDS[0])), Passed)


def test_ha09_sentinel_without_auth_pass():
    sentinels = [sentinel_node(7100 + j, 7000, MYIDS[j]) for j in range(3)]
    sentinels[0].sentinel_masters[0]["flags"] = "s_down,master,disconnected"
    members = sentinel_group(sentinels=sentinels)
    members[0].clients = [sentinel_link(i) for i in MYIDS[1:]]  # sentinel-0's link is gone
    result = run("HA-09", members[2])
    assert isinstance(result, Finding) and f"sentinel-{MYIDS[0][:8]}-cmd" in result.evidence
    assert "requires a login" in result.evidence
    assert isinstance(run("HA-09", members[3]), Passed)
    # Its link is there: a passing s_down is the primary's business, not a login problem.
    members[0].clients = [sentinel_link(i) for i in MYIDS]
    assert isinstance(run("HA-09", members[2]), Passed)


def test_ha10_sentinels_without_sentinel_pass():
    lonely = sentinel_node(7100, 7000, MYIDS[0], settings={"sentinel-pass": ""})
    lonely.sentinel_peers = {
        "ha": [{"ip": "127.0.0.1", "port": "7101", "flags": "s_down,sentinel"}]
    }
    result = run("HA-10", lonely)
    assert isinstance(result, Finding) and "127.0.0.1:7101 down" in result.evidence
    assert isinstance(run("HA-10", sentinel_node(7100, 7000, MYIDS[0])), Passed)
    # Sentinels that let anyone in need no sentinel-pass.
    open_users = {**SENTINEL_USERS, "default": acl({"on", "nopass"}, (), "-@all +ping")}
    relaxed = sentinel_node(7100, 7000, MYIDS[0], users=open_users, settings={"sentinel-pass": ""})
    assert isinstance(run("HA-10", relaxed), Passed)


def test_ha11_users_that_may_reconfigure_sentinel():
    users = {**SENTINEL_USERS, "app": acl({"on"}, ["x"], "+@all")}
    probes = (*SENTINEL_PROBES, "acl setuser")
    dryrun = {(user, probe): user in ("admin", "app") for user in users for probe in probes}
    result = run("HA-11", sentinel_node(7100, 7000, MYIDS[0], users=users, dryrun=dryrun))
    assert isinstance(result, Finding) and result.evidence.startswith("app: SENTINEL SET")
    assert isinstance(run("HA-11", sentinel_node(7100, 7000, MYIDS[0])), Passed)


def test_ha12_too_few_sentinels():
    assert run("HA-12", sentinel_node(7100, 7000, MYIDS[0], others=1, quorum=3)).severity == "high"
    assert run("HA-12", sentinel_node(7100, 7000, MYIDS[0], others=1, quorum=2)).severity == (
        "medium"
    )
    assert isinstance(run("HA-12", sentinel_node(7100, 7000, MYIDS[0])), Passed)


# --- reports -----------------------------------------------------------------------------------


def test_a_sentinel_report_lists_what_does_not_apply_and_names_its_node():
    members = sentinel_group()
    report = run_checks(members[2], accepted=set())
    document = report.to_json()
    assert document["node"] == "node-2" and document["role"] == "sentinel"
    skipped = {item["id"] for item in document["not_applicable"]}
    assert {"NET-01", "MEM-01", "CMD-01", "HA-01", "HA-06"} <= skipped
    assert "HA-08" not in skipped and "TLS-07" not in skipped
    assert document["checks"]["total"] == len(CHECKS) - len(skipped)
    # No data node check shows up as "could not verify" on a Sentinel.
    unverified = {item["id"] for item in document["could_not_verify"]}
    assert not unverified & skipped
    data = run_checks(members[1], accepted=set()).to_json()
    assert data["role"] == "replica" and "HA-08" in {i["id"] for i in data["not_applicable"]}
    members[1].config["masterauth"] = ""
    result = sarif([run_checks(members[1], accepted=set())])["runs"][0]["results"]
    assert any(item["message"]["text"].startswith("[node-1] ") for item in result)


# --- discovery: how a found node is reached ----------------------------------------------------


@pytest.mark.parametrize(
    ("seed_host", "announced", "name"),
    [
        ("localhost", "127.0.0.1", "localhost"),  # an IP: checked against the seed's name
        ("redis.internal", "10.0.0.6", "redis.internal"),
        ("10.0.0.5", "10.0.0.6", "10.0.0.6"),  # the seed is an IP too: nothing better known
        ("localhost", "redis-2.internal", "redis-2.internal"),  # announced by name
    ],
)
def test_a_discovered_node_is_reached_like_the_seed(seed_host, announced, name):
    seed = Target("rediss", host=seed_host, port=6380, username="admin", password="pw")
    found = peer(seed, announced, 6381)
    assert (found.host, found.port, found.server_name) == (announced, 6381, name)
    assert (found.username, found.password, found.tls) == ("admin", "pw", True)
    plain = peer(parse_url("redis://admin:pw@localhost:6379"), "127.0.0.1", 6380)
    assert plain.server_name == "127.0.0.1" and not plain.tls
