"""The slot map a cluster backup reads before and after its captures (backup/clustermap.py)."""

from redkeep.backup.clustermap import coverage_problem, parse_slot_map

# CLUSTER NODES of a 3-shard cluster, shard 0 with a replica (Redis 7.0 format).
NODES = """\
aaa 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
bbb 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10921
ccc 127.0.0.1:7002@17002 master - 0 0 3 connected 10922-16383
ddd 127.0.0.1:7003@17003 slave aaa 0 0 1 connected
"""


def test_shards_epochs_and_replicas():
    slot_map = parse_slot_map(NODES)
    assert [shard.primary.id for shard in slot_map.shards] == ["aaa", "bbb", "ccc"]
    assert [shard.epoch for shard in slot_map.shards] == [1, 2, 3]
    assert [r.id for r in slot_map.shards[0].replicas] == ["ddd"]
    assert slot_map.shards[0].ranges == ((0, 5460),)
    assert slot_map.unsettled() == ""


def test_a_failover_changes_the_signature_and_says_so():
    before = parse_slot_map(NODES)
    after = parse_slot_map(
        NODES.replace(
            "myself,master - 0 0 1 connected 0-5460", "myself,master,fail - 0 0 1 connected"
        ).replace("slave aaa 0 0 1 connected", "master - 0 0 4 connected 0-5460")
    )
    assert before.signature() != after.signature()
    assert before.describe_change(after) == (
        "slots 0-5460 failed over from 127.0.0.1:7000 to 127.0.0.1:7003"
    )
    assert after.unsettled() == ""  # the failed node serves nothing any more


def test_an_epoch_bump_alone_changes_the_signature():
    after = parse_slot_map(NODES.replace("master - 0 0 2 connected", "master - 0 0 7 connected"))
    assert parse_slot_map(NODES).describe_change(after) == (
        "the config epoch of 127.0.0.1:7001 went from 2 to 7"
    )


def test_unsettled_maps():
    failing = parse_slot_map(
        NODES.replace("bbb 127.0.0.1:7001@17001 master", "bbb 127.0.0.1:7001@17001 master,fail?")
    )
    assert "127.0.0.1:7001 of slots 5461-10921 is failing" in failing.unsettled()
    migrating = parse_slot_map(NODES.replace("10922-16383", "10922-16383 [10922->-aaa]"))
    assert "being migrated" in migrating.unsettled()
    hole = parse_slot_map(NODES.replace("5461-10921", "5461-10000"))
    assert hole.unsettled() == "slots 10001-10921 are served by no shard"


def test_coverage():
    assert coverage_problem([((0, 16383),)]) == ""
    assert coverage_problem([((0, 100),), ((100, 16383),)]) == "slot 100 is served twice"
    assert coverage_problem([((0, 100),)]) == "slots 101-16383 are served by no shard"
    assert coverage_problem([((1, 16383),)]) == "slots 0-0 are served by no shard"
    assert coverage_problem([((0, 16384),)]) == "slot range 0-16384 is not within 0-16383"
