"""The node layout every command shares (names, roles, local ports) and the section's limits."""

import pytest
from pydantic import ValidationError

from redkeep.config.deployment import DeploymentSettings, plan_nodes


def layout(**section):
    return [
        (node.name, node.role, node.port, node.shard, node.replica_of, node.bus_port)
        for node in plan_nodes(DeploymentSettings(**section), 6380)
    ]


def test_standalone_is_one_server_named_redis():
    assert layout() == [("redis", "standalone", 6380, 0, "", 0)]


def test_sentinel_defaults_to_a_primary_two_replicas_and_three_sentinels():
    assert layout(topology="sentinel") == [
        ("redis-0", "primary", 6380, 0, "", 0),
        ("redis-1", "replica", 6381, 0, "redis-0", 0),
        ("redis-2", "replica", 6382, 0, "redis-0", 0),
        ("sentinel-0", "sentinel", 6480, 0, "", 0),
        ("sentinel-1", "sentinel", 6481, 0, "", 0),
        ("sentinel-2", "sentinel", 6482, 0, "", 0),
    ]
    assert DeploymentSettings(topology="sentinel").sentinel_quorum() == 2


def test_cluster_defaults_to_three_shards_of_a_primary_and_a_replica():
    assert layout(topology="cluster") == [
        ("redis-0", "primary", 6380, 0, "", 16380),
        ("redis-1", "primary", 6381, 1, "", 16381),
        ("redis-2", "primary", 6382, 2, "", 16382),
        ("redis-3", "replica", 6383, 0, "redis-0", 16383),
        ("redis-4", "replica", 6384, 1, "redis-1", 16384),
        ("redis-5", "replica", 6385, 2, "redis-2", 16385),
    ]
    assert DeploymentSettings(topology="cluster").writes_need_replicas() == 1
    assert DeploymentSettings(topology="cluster", replicas=0).writes_need_replicas() == 0


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"topology": "sentinel", "sentinels": 2}, "odd number"),
        ({"topology": "sentinel", "replicas": 0}, "at least one replica"),
        ({"topology": "sentinel", "quorum": 4}, "more than the 3 Sentinels"),
        ({"topology": "cluster", "shards": 2}, "greater than or equal to 3"),
        ({"topology": "cluster", "min_replicas_to_write": 2}, "refuse every write"),
        ({"topology": "ring"}, "'standalone', 'sentinel' or 'cluster'"),
    ],
)
def test_impossible_layouts_are_refused(section, problem):
    with pytest.raises(ValidationError, match=problem):
        DeploymentSettings(**section)
