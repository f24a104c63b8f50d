"""The app checks' slot routing: Redis' own slot numbers and a CLUSTER NODES reply."""

from redkeep.exporter.slots import SlotMap, key_slot

# CLUSTER NODES of a 7.0.15 node mid-migration (slot 7498 leaving 127.0.0.1:7001), with a
# primary the cluster marked failed and its promoted replica.
NODES = """\
a1 127.0.0.1:7000@17000 master,fail - 0 0 1 disconnected
b2 127.0.0.1:7001@17001 myself,master - 0 0 2 connected 5461-10921 [7498->-c3]
c3 127.0.0.1:7002@17002 master - 0 0 3 connected 10922-16383
d4 127.0.0.1:7003@17003 master - 0 0 5 connected 0-5460
e5 :0@0 master,noaddr - 0 0 0 disconnected
"""


def test_key_slot_is_redis_own():
    # CLUSTER KEYSLOT on Redis 7.0.15 for each of these keys.
    assert key_slot("foo") == 12182
    assert key_slot("123456789") == 12739
    assert key_slot("{user1000}.following") == key_slot("user1000") == 3443
    assert key_slot("foo{}{bar}") == 8363  # an empty tag: the whole key
    assert key_slot("foo{{bar}}zap") == 4015  # the tag ends at the first }


def test_slot_map_serves_each_slot_from_its_live_primary():
    slots = SlotMap.from_cluster_nodes(NODES)
    assert slots.myself == ("127.0.0.1", 7001)
    assert slots.node_of("user1000") == ("127.0.0.1", 7003)  # the promoted one, not a1
    assert slots.node_of("foo") == ("127.0.0.1", 7002)
    assert slots.node_of("123456789") == ("127.0.0.1", 7002)
    assert slots.primaries() == [("127.0.0.1", 7003), ("127.0.0.1", 7001), ("127.0.0.1", 7002)]


def test_a_slot_without_a_live_primary_has_no_node():
    slots = SlotMap.from_cluster_nodes(NODES.replace("0-5460", ""))
    assert slots.node_of("user1000") is None
