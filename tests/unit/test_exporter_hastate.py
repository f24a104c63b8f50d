"""The Sentinel and cluster-view parsers on replies as Redis 7.0 sends them (hiredis objects)."""

import hiredis

from redkeep.exporter.collectors import CLUSTER, State
from redkeep.exporter.exposition import parse, render
from redkeep.exporter.hastate import CLUSTER_NODES, SENTINEL
from redkeep.exporter.info import parse_info

SENTINEL_INFO = """# Server
redis_mode:sentinel
# Sentinel
sentinel_masters:1
sentinel_tilt:1
sentinel_running_scripts:0
sentinel_scripts_queue_length:0
sentinel_simulate_failure_flags:0
master0:name=ha,status=sdown,address=127.0.0.1:7000,slaves=2,sentinels=3
"""


def flat(**fields: str) -> list[bytes]:
    return [item.encode() for pair in fields.items() for item in pair]


def sentinel_state() -> State:
    state = State()
    state.set_info(parse_info(SENTINEL_INFO))
    return state


def test_a_sentinel_that_lost_its_quorum_says_so_with_redis_exporters_names():
    state = sentinel_state()
    assert SENTINEL.commands(state) == [
        ("SENTINEL", "MASTERS"),
        ("SENTINEL", "CKQUORUM", "ha"),
        ("SENTINEL", "SENTINELS", "ha"),
        ("SENTINEL", "REPLICAS", "ha"),
    ]
    master = flat(
        name="ha", ip="127.0.0.1", port="7000", quorum="2", **{"failover-timeout": "10000"},
        **{"parallel-syncs": "1", "down-after-milliseconds": "1000", "config-epoch": "4"},
        **{"last-ok-ping-reply": "1500"},
    )  # fmt: skip
    replies = [
        [master],
        hiredis.ReplyError("NOQUORUM 1 usable Sentinels. Not enough available Sentinels"),
        [flat(name="s1", flags="s_down,sentinel"), flat(name="s2", flags="sentinel")],
        [flat(name="r1", flags="slave"), flat(name="r2", flags="s_down,slave")],
    ]
    text = render(SENTINEL.parse(state, replies))
    where = 'master_name="ha",master_address="127.0.0.1:7000"'
    for line in (
        "redis_sentinel_tilt 1",
        "redis_sentinel_masters 1",
        f'redis_sentinel_master_status{{{where},master_status="sdown"}} 0',
        f"redis_sentinel_master_slaves{{{where}}} 2",
        'redis_sentinel_master_ckquorum_status{master_name="ha",message="NOQUORUM 1 usable '
        'Sentinels. Not enough available Sentinels"} 0',
        f"redis_sentinel_master_ok_sentinels{{{where}}} 2",  # itself and s2
        f"redis_sentinel_master_ok_slaves{{{where}}} 1",
        f"redis_sentinel_master_config_epoch{{{where}}} 4",
        f"redis_sentinel_master_last_ok_ping_reply_seconds{{{where}}} 1.5",
        f"redis_sentinel_master_setting_down_after_milliseconds{{{where}}} 1000",
    ):
        assert line in text.splitlines(), line
    assert SENTINEL.errors_are_data  # the NOQUORUM error above reaches parse


def test_a_data_node_asks_sentinel_nothing():
    state = State()
    state.set_info(parse_info("# Server\nredis_mode:standalone\n"))
    assert SENTINEL.commands(state) == []


def test_cluster_view_flags_the_node_the_others_failed():
    state = State()
    state.set_info(parse_info("# Cluster\ncluster_enabled:1\n"))
    assert CLUSTER_NODES.commands(state) == [("CLUSTER", "NODES")]
    nodes = (
        "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n"
        "b2 127.0.0.1:7001@17001 master,fail - 1 1 2 connected\n"
        "c3 127.0.0.1:7002@17002 master,fail? - 1 1 3 connected 10923-16383\n"
        "d4 :0@0 noaddr,handshake - 0 0 0 disconnected\n"
    )
    text = render(CLUSTER_NODES.parse(state, [nodes.encode()])).splitlines()
    assert 'redkeep_cluster_node_failed{node="127.0.0.1:7001",myself="0"} 1' in text
    assert 'redkeep_cluster_node_failed{node="127.0.0.1:7000",myself="1"} 0' in text
    assert 'redkeep_cluster_node_failed{node="127.0.0.1:7002",myself="0"} 0' in text
    assert 'redkeep_cluster_node_suspected{node="127.0.0.1:7002",myself="0"} 1' in text
    assert not any(":0" in line.split("}")[0] for line in text if line.startswith("redkeep_"))


def test_cluster_info_after_a_failover_renders_valid_names():
    state = State()
    state.set_info(parse_info("# Cluster\ncluster_enabled:1\n"))
    info = "cluster_state:fail\r\ncluster_stats_messages_auth-ack_sent:1\r\ncluster_my_epoch:4\r\n"
    text = render(CLUSTER.parse(state, [info.encode()]))
    assert parse(text)  # every line a valid sample (a '-' in a name is not)
    assert "redis_cluster_stats_messages_auth_ack_sent 1" in text.splitlines()
    assert "redis_cluster_state 0" in text.splitlines()
