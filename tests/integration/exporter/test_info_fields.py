"""INFO fields of servers newer than the one here (Redis 8 with its modules, Valkey 9) are
served under the names today's redis_exporter gives them. The INFO texts are in info/."""

from pathlib import Path

from redkeep.exporter import mapping
from redkeep.exporter.collectors import State, cluster_parse, info_commands, info_parse

INFO_DIR = Path(__file__).parent / "info"

# What redis_exporter's own module test expects from a Redis 8 (exporter/modules_test.go,
# TestModulesv80), less `module_info`, which redkeep does not serve.
REDIS_8_MODULE_FAMILIES = [
    "search_number_of_indexes",
    "search_used_memory_indexes_bytes",
    "search_indexing_time_ms_total",
    "search_dialect_1",
    "search_dialect_2",
    "search_dialect_3",
    "search_dialect_4",
    "search_number_of_active_indexes",
    "search_number_of_active_indexes_running_queries",
    "search_number_of_active_indexes_indexing",
    "search_total_active_write_threads",
    "search_smallest_memory_index_bytes",
    "search_largest_memory_index_bytes",
    "search_used_memory_vector_index_bytes",
    "search_global_idle_user",
    "search_global_idle_internal",
    "search_global_total_user",
    "search_global_total_internal",
    "search_gc_collected_bytes",
    "search_gc_total_docs_not_collected",
    "search_gc_marked_deleted_vectors",
    "search_errors_indexing_failures",
    "search_gc_cycles_total",
    "search_gc_run_ms_total",
    "search_queries_processed_total",
    "search_query_commands_total",
    "search_query_execution_time_ms_total",
    "search_active_queries_total",
]


def served(name: str) -> dict:
    """{metric name: (kind, [(labels, value)])} of one INFO text, parsed as a scrape does."""
    text = (INFO_DIR / name).read_text().replace("\n", "\r\n")  # as Redis sends it
    families = info_parse(State(), [text.encode()])
    result = {}
    for family in families:
        assert family.name not in result, f"{family.name} served twice"
        result[family.name] = (
            family.kind,
            [(labels, value) for _, labels, value in family.samples],
        )
    return result


def one(families: dict, name: str, **labels: str) -> tuple[str, float]:
    kind, samples = families["redis_" + name]
    found = [value for sample_labels, value in samples if labels.items() <= sample_labels.items()]
    assert len(found) == 1, (name, samples)
    return kind, found[0]


def test_redis_8_module_fields_are_served_under_redis_exporter_names():
    families = served("redis-8.0-everything.txt")
    missing = [name for name in REDIS_8_MODULE_FAMILIES if "redis_" + name not in families]
    assert missing == []
    assert one(families, "search_number_of_indexes") == ("gauge", 3)
    assert one(families, "search_used_memory_indexes_bytes") == ("gauge", 8388608)
    assert one(families, "search_indexing_time_ms_total") == ("counter", 1234.5)
    assert one(families, "search_gc_cycles_total") == ("counter", 88)
    assert one(families, "search_gc_run_ms_total") == ("counter", 1200)
    assert one(families, "search_gc_collected_bytes") == ("gauge", 65536)
    assert one(families, "search_query_execution_time_ms_total") == ("counter", 25000)
    assert one(families, "search_global_total_user") == ("gauge", 4)
    assert one(families, "search_dialect_2") == ("gauge", 1)
    # Redis 7.4+'s keys with expiring hash fields, under redis_exporter's name.
    assert one(families, "db_keys_with_expiring_items", db="db0") == ("gauge", 12)
    assert one(families, "db_avg_ttl_seconds", db="db0") == ("gauge", 3600)
    # Text and dict-valued fields are not numbers: left out, never served as 0.
    assert not [name for name in families if "search_version" in name or "fields_text" in name]
    # The server sections are read as before.
    assert one(families, "memory_used_bytes") == ("gauge", 52428800)
    assert one(families, "commands_processed_total") == ("counter", 987654)


def test_valkey_bundle_module_fields_are_served_under_redis_exporter_names():
    families = served("valkey-9.0-bundle.txt")
    assert one(families, "active_time_main_thread_seconds_total") == ("counter", 192.00398)
    assert one(families, "bf_bloom_total_memory_bytes") == ("gauge", 384)
    assert one(families, "bf_bloom_capacity_across_objects") == ("gauge", 100)
    assert one(families, "bf_bloom_defrag_hits_total") == ("counter", 4)
    assert one(families, "json_total_memory_bytes") == ("gauge", 2048)
    assert one(families, "json_num_documents") == ("gauge", 7)
    # Valkey's name for keys with expiring fields is served under the same metric as Redis's.
    assert one(families, "db_keys_with_expiring_items", db="db0") == ("gauge", 3)
    ((labels, _),) = families["redis_instance_info"][1]
    assert labels["valkey_version"] == "9.0.0"


def test_module_sections_are_asked_for_once_a_module_is_loaded():
    state = State()
    assert info_commands(state) == [("INFO", "ALL")]  # nothing known yet
    text = (INFO_DIR / "redis-8.0-everything.txt").read_text()
    info_parse(state, [text.encode()])
    assert info_commands(state) == [("INFO", "EVERYTHING")]
    without_modules = text.split("# Modules")[0] + "# Cluster\ncluster_enabled:0\n"
    info_parse(state, [without_modules.encode()])
    assert info_commands(state) == [("INFO", "ALL")]
    old = text.replace("redis_version:8.0.2", "redis_version:6.2.14")  # no EVERYTHING before 7
    info_parse(state, [old.encode()])
    assert info_commands(state) == [("INFO", "ALL")]


def test_every_mapped_field_is_served_once_with_its_kind():
    """The mapping is data: each field reaches its own metric, none shadows another."""
    tables = [
        (mapping.GAUGES, "gauge"),
        (mapping.EXTRA_GAUGES, "gauge"),
        (mapping.COUNTERS, "counter"),
    ]
    names = [metric for table, _ in tables for metric in table.values()]
    assert len(names) == len(set(names)), "two INFO fields map to one metric"
    fields = [field for table, _ in tables for field in table]
    text = "# Everything\r\n" + "".join(
        f"{field}:{index + 1}\r\n" for index, field in enumerate(fields)
    )
    families = info_parse(State(), [text.encode()])
    by_name = {family.name: family for family in families}
    for index, field in enumerate(fields):
        for table, kind in tables:
            if field in table:
                family = by_name["redis_" + table[field]]
                assert family.kind == kind, field
                expected = (index + 1) * mapping.SCALE.get(field, 1)
                assert family.samples[0][2] == expected, field


def test_cluster_message_totals_get_redis_exporter_names():
    # CLUSTER INFO fields as the CLUSTER INFO documentation lists them.
    text = (
        "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_known_nodes:6\r\n"
        "cluster_stats_messages_ping_sent:40\r\ncluster_stats_messages_sent:100\r\n"
        "cluster_stats_messages_received:90\r\n"
    )
    families = {family.name: family for family in cluster_parse(State(), [text.encode()])}
    assert families["redis_cluster_messages_sent_total"].samples[0][2] == 100
    assert families["redis_cluster_messages_received_total"].samples[0][2] == 90
    assert families["redis_cluster_stats_messages_ping_sent"].samples[0][2] == 40
    assert families["redis_cluster_state"].samples[0][2] == 1
    assert "redis_cluster_stats_messages_sent" not in families
