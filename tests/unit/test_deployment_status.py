"""What `health` and `status` conclude from what a deployment's nodes and Sentinels answered
(captured answers, no servers): one problem line per fault, each naming its node, and every
variant of the nodes and Sentinels in the documented JSON shape."""

from redkeep.actions.health import HealthResult
from redkeep.actions.node_status import node_statuses
from redkeep.actions.stack_nodes import last_complaint
from redkeep.actions.status import ServiceStatus, StatusReport
from redkeep.redis.observe import DeploymentView, NodeView, SentinelView
from tests.jsonshape import problems, shape


def node(name: str, role: str | None, **facts) -> NodeView:
    planned = "primary" if name == "redis-0" else "replica"
    port = 7000 + int(name[-1])
    reached = role is not None
    return NodeView(name, planned, "127.0.0.1", port, reached, role=role, **facts)


def sentinel(name: str, **facts) -> SentinelView:
    facts = {"reached": True, "primary": "redis-0", "flags": "master", "quorum": 2,
             "quorum_ok": True, "quorum_reply": "OK 3 usable Sentinels"} | facts  # fmt: skip
    return SentinelView(name, "127.0.0.1", 7100 + int(name[-1]), **facts)


def sentinel_view(*nodes: NodeView, sentinels: tuple[SentinelView, ...] = ()) -> DeploymentView:
    return DeploymentView("sentinel", nodes, sentinels, "redkeep")


HEALTHY = (
    node("redis-0", "primary", offset=100, replicas=2),
    node("redis-1", "replica", primary="redis-0", link="up", offset=100),
    node("redis-2", "replica", primary="redis-0", link="up", offset=90),
)
SENTINELS = (sentinel("sentinel-0"), sentinel("sentinel-1"), sentinel("sentinel-2"))


def test_a_healthy_sentinel_deployment_has_no_problem():
    view = sentinel_view(*HEALTHY, sentinels=SENTINELS)
    assert view.problems() == []
    assert view.live_primary().name == "redis-0"


def test_each_fault_is_one_line_that_names_its_node():
    view = sentinel_view(
        NodeView("redis-0", "primary", "127.0.0.1", 7000, False, error="connection refused"),
        node("redis-1", "primary", offset=120, replicas=0),
        node("redis-2", "replica", primary="redis-0", link="down", offset=90),
        sentinels=(
            sentinel("sentinel-0", primary="redis-1", unreached=("redis-0",)),
            sentinel("sentinel-1", reached=False, error="timed out"),
            sentinel("sentinel-2", flags="master,s_down", quorum_ok=False, quorum_reply="NOQUORUM"),
        ),
    )
    assert view.live_primary().name == "redis-1"
    assert view.findings() == [
        ("redis-0", "redis-0 (127.0.0.1:7000) does not answer: connection refused"),
        ("redis-2", "redis-2 replicates redis-0, not the primary redis-1"),
        ("sentinel-0", "sentinel-0 has no link to redis-0"),
        ("sentinel-1", "sentinel-1 (127.0.0.1:7101) does not answer: timed out"),
        ("sentinel-2", "sentinel-2 names redis-0 primary, not redis-1"),
        ("sentinel-2", "sentinel-2 sees the primary down (s_down)"),
        ("sentinel-2", "sentinel-2: no quorum: NOQUORUM"),
    ]


def test_two_primaries_are_a_problem_even_when_the_sentinels_choose_one():
    view = sentinel_view(
        node("redis-0", "primary", replicas=0),
        node("redis-1", "primary", replicas=1),
        node("redis-2", "replica", primary="redis-1", link="up"),
        sentinels=(sentinel("sentinel-0", primary="redis-1"),),
    )
    assert view.live_primary().name == "redis-1"
    assert view.problems()[0].startswith("2 nodes say they are primary (redis-0, redis-1)")


def test_a_cluster_with_a_slot_gap_a_failing_node_and_a_syncing_replica():
    view = DeploymentView(
        "cluster",
        (
            node(
                "redis-0",
                "primary",
                cluster_state="fail",
                slots_ok=10923,
                known_nodes=1,
                slots=("0-5460",),
                failing=("redis-2",),
            ),  # fmt: skip
            node(
                "redis-3",
                "replica",
                primary="redis-0",
                link="up",
                syncing=True,
                cluster_state="ok",
                slots_ok=16384,
                known_nodes=2,
            ),  # fmt: skip
        ),
    )
    assert view.problems() == [
        "redis-0: cluster_state is fail",
        "redis-0: 10923 of 16384 slots are served",
        "redis-0 knows 1 of the 2 nodes",
        "redis-0 marks redis-2 failing",
        "redis-3 is still syncing from redis-0",
    ]


def test_a_cluster_node_that_is_a_primary_without_slots_is_lost_redundancy():
    # What an `up` killed after CLUSTER MEET and before CLUSTER REPLICATE leaves: every slot
    # served and cluster_state ok, but redis-3 backs up no shard.
    served = {"cluster_state": "ok", "slots_ok": 16384, "known_nodes": 2}
    view = DeploymentView(
        "cluster",
        (
            node("redis-0", "primary", slots=("0-16383",), **served),
            node("redis-3", "primary", **served),
        ),
    )
    assert view.problems() == ["redis-3 is a primary without slots: it replicates no shard"]


def test_every_variant_of_nodes_and_sentinels_is_documented():
    view = sentinel_view(
        NodeView("redis-0", "primary", "127.0.0.1", 7000, False, error="connection refused"),
        *HEALTHY[1:],
        sentinels=(
            sentinel("sentinel-0", primary=None, quorum=None, quorum_ok=None),
            sentinel("sentinel-1"),
        ),  # fmt: skip
    )
    nodes, sentinels = node_statuses(view, {"redis-1": 41, "sentinel-0": 50})
    report = StatusReport(
        bundle="/b",
        url="rediss://exporter:****@localhost:7001",
        healthy=False,
        detail="; ".join(view.problems()),
        local_pid=None,
        run_here=True,
        services={"redis-1": ServiceStatus(True, 41, False, up=True)},
        certificates={"redis-0": None},
        secrets="/b/.env",
        last_backup="none yet",
        status=None,
        topology="sentinel",
        nodes=nodes,
        sentinels=sentinels,
        problems=view.problems(),
    )
    document = report.to_json()
    assert problems(document, shape("status")) == []
    down = document["nodes"][0]
    assert (down["role"], down["healthy"], down["pid"]) == (None, False, None)
    assert document["nodes"][1]["pid"] == 41 and document["nodes"][1]["healthy"] is True
    health = HealthResult(False, "u", "x", topology="sentinel", problems=tuple(view.problems()))
    assert problems(health.to_json(), shape("health")) == []
    assert health.to_json()["problems"] == view.problems()


def test_the_live_deployment_names_the_promoted_node_primary():
    from redkeep.redis.deployment import Deployment, Node, Role, Topology  # noqa: PLC0415
    from redkeep.redis.observe import with_live_roles  # noqa: PLC0415
    from redkeep.redis.target import Target  # noqa: PLC0415

    planned = Deployment(
        Topology.SENTINEL,
        tuple(
            Node(name, role, Target("rediss", "localhost", 7000 + index))
            for index, (name, role) in enumerate(
                [("redis-0", Role.PRIMARY), ("redis-1", Role.REPLICA), ("redis-2", Role.REPLICA)]
            )
        ),
    )
    failed_over = sentinel_view(
        NodeView("redis-0", "primary", "127.0.0.1", 7000, False, error="refused"),
        node("redis-1", "primary", replicas=1),
        node("redis-2", "replica", primary="redis-1", link="up"),
        sentinels=SENTINELS,
    )
    live = with_live_roles(planned, failed_over)
    assert live.primary().name == "redis-1"
    assert [node.name for node in live.every_node()] == ["redis-1", "redis-0", "redis-2"]
    nobody = sentinel_view(NodeView("redis-0", "primary", "h", 7000, False, error="refused"))
    assert with_live_roles(planned, nobody) is planned  # nothing to go by: the plan


def test_down_waits_while_a_sentinel_fails_the_primary_over():
    """`down` must not stop the Sentinels half-way through a failover (their files would name
    the old primary): it waits while one reports the failover or agrees the primary is down."""
    assert sentinel_view(*HEALTHY, sentinels=SENTINELS).failover_under_way() == []
    busy = sentinel_view(
        *HEALTHY,
        sentinels=(
            sentinel("sentinel-0", flags="master,o_down,failover_in_progress"),
            sentinel("sentinel-1", flags="master,s_down"),  # alone it starts no failover
            sentinel("sentinel-2", flags="master,o_down", reached=False),
        ),
    )
    assert busy.failover_under_way() == ["sentinel-0"]


def test_up_names_the_cause_a_node_logged(tmp_path):
    """When `up` gives up on a node, it quotes the last warning the node logged."""
    log = tmp_path / "redis-1.log"
    log.write_text(
        "1:M 30 Nov 2026 17:00:00.000 * Ready to accept connections tls\n"
        "1:M 30 Nov 2026 17:00:01.000 # Opening the temp file for AOF rewrite in "
        "rewriteAppendOnlyFile(): Operation not permitted\n"
        "1:M 30 Nov 2026 17:00:02.000 * Background AOF rewrite scheduled\n"
    )
    assert last_complaint(log) == (
        "Opening the temp file for AOF rewrite in rewriteAppendOnlyFile(): Operation not permitted"
    )
    assert last_complaint(tmp_path / "absent.log") == ""
    log.write_text("1:M 30 Nov 2026 17:00:00.000 * Ready to accept connections tls\n")
    assert last_complaint(log) == ""
