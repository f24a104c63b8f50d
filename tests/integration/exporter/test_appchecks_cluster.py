"""App checks on a real TLS cluster (tests/hanodes.py): each key read on its slot's primary.

The keys sit on every shard and the exporter is seeded at redis-0 alone; a key of another shard
read there answers MOVED (redis_exporter's users' most common bug). Then redis-0 is SIGKILLed:
its replica redis-3 is promoted, and the checks follow with no node to seed from but the map
they learned. And a key moved by hand from one shard to another (IMPORTING/MIGRATING, MIGRATE,
SETSLOT NODE) is read through the ASK, then the MOVED, its old owner answers. Judged by what
the values in Redis are, polled with no timing threshold.
"""

import os
import signal
import time
from itertools import count

import pytest
import redis
import yaml

from redkeep.exporter.slots import key_slot
from tests.hanodes import PASSWORDS, HADeployment, wait_until
from tests.integration.exporter.conftest import Exporter, value

SHARDS = ("redis-0", "redis-1", "redis-2")  # start_cluster: equal slot ranges, in order


def shard_of(key: str) -> int:
    return key_slot(key) // (16384 // len(SHARDS))


def tag_on(shard: int) -> str:
    """A hash tag whose keys live on `shard`."""
    return next(tag for i in count() if shard_of(tag := f"{{t{i}}}") == shard)


TAGS = [tag_on(shard) for shard in range(len(SHARDS))]
CHECKS = [
    {"name": "fresh", "type": "key_age", "key": f"market{TAGS[0]}", "field": "updated_at"},
    {
        "name": "doubled",
        "type": "lua",
        "script": "return redis.call('LLEN', KEYS[1]) * 2",
        "keys": [f"jobs{TAGS[0]}"],
    },  # fmt: skip
    {"name": "cache", "type": "hash_counters", "key": f"stats{TAGS[1]}", "fields": ["hits"]},
    {"name": "token", "type": "ttl", "key": f"token{TAGS[1]}"},
    {"name": "queue", "type": "list_length", "key": f"jobs{TAGS[2]}"},
    {"name": "flag", "type": "exists", "key": f"flag{TAGS[2]}"},
    {"name": "buckets", "type": "key_count", "pattern": "bucket:*"},
]


def write(cluster: HADeployment, shard: int, *command) -> None:
    """On the shard's primary itself: a key of another slot would answer MOVED."""
    client = cluster.client(SHARDS[shard])
    client.execute_command(*command)
    client.close()


def checks_now(exporter: Exporter, wanted: dict[str, float]) -> dict:
    """The exporter's families once every check has run and `wanted` values show."""
    seen: dict = {}

    def ready() -> bool:
        seen.clear()
        seen.update(exporter.metrics())
        success = seen.get("redkeep_check_success", [])
        if len(success) != len(CHECKS) or any(v != 1 for _, v in success):
            return False
        return all(
            any(f'check="{check}"' in text and v == want for text, v in seen.get(family, []))
            for (family, check), want in wanted.items()
        )

    try:
        wait_until(ready, "every check to succeed with the values in Redis")
    except AssertionError:
        raise AssertionError(exporter.log.read_text()) from None
    return seen


def test_checks_read_each_key_on_its_shard_and_follow_a_failover(
    cluster, exporter_factory, tmp_path
):
    for name in cluster.nodes:  # writes on shards without a replica (not what is tested)
        cluster.client(name).config_set("min-replicas-to-write", 0)
    stamp = int(time.time()) - 30
    write(cluster, 0, "HSET", f"market{TAGS[0]}", "updated_at", stamp)
    write(cluster, 0, "RPUSH", f"jobs{TAGS[0]}", "a", "b", "c")
    write(cluster, 1, "HSET", f"stats{TAGS[1]}", "hits", 90)
    write(cluster, 1, "SET", f"token{TAGS[1]}", "t", "EX", 100)
    write(cluster, 2, "RPUSH", f"jobs{TAGS[2]}", "a")
    write(cluster, 2, "SET", f"flag{TAGS[2]}", 1)
    for shard, tag in enumerate(TAGS):
        for i in range(3):
            write(cluster, shard, "SET", f"bucket:{tag}:{i}", 1)
    checks_file = tmp_path / "checks.yaml"
    checks_file.write_text(
        yaml.safe_dump({"checks": [{**check, "interval_seconds": 0.2} for check in CHECKS]})
    )
    exporter = exporter_factory(
        "--url",
        cluster.url("redis-0"),
        *cluster.tls_options(),
        "--checks",
        checks_file,
        env={"REDIS_PASSWORD": PASSWORDS["admin"]},
    )
    families = checks_now(
        exporter,
        {
            ("redkeep_check_key_timestamp_seconds", "fresh"): stamp,
            ("redkeep_check_lua_value", "doubled"): 6,
            ("redkeep_check_hash_counter_total", "cache"): 90,
            ("redkeep_check_list_length", "queue"): 1,
            ("redkeep_check_key_exists", "flag"): 1,
            ("redkeep_check_keys", "buckets"): 9,
        },
    )
    assert 90 < value(families, "redkeep_check_ttl_seconds", check="token") <= 100
    assert "MOVED" not in exporter.log.read_text()

    # SIGKILL of redis-0, the seed and shard 0's primary: redis-3 takes the shard over.
    os.kill(cluster.nodes["redis-0"].pid, signal.SIGKILL)
    promoted = cluster.client("redis-3")
    wait_until(lambda: promoted.execute_command("ROLE")[0] == "master", "redis-3 promoted")
    promoted.hset(f"market{TAGS[0]}", "updated_at", stamp + 20)
    promoted.rpush(f"jobs{TAGS[0]}", "d")
    promoted.set(f"bucket:{TAGS[0]}:3", 1)
    promoted.close()
    checks_now(
        exporter,
        {
            ("redkeep_check_key_timestamp_seconds", "fresh"): stamp + 20,
            ("redkeep_check_lua_value", "doubled"): 8,
            ("redkeep_check_hash_counter_total", "cache"): 90,
            ("redkeep_check_keys", "buckets"): 10,
        },
    )


def test_checks_follow_a_key_through_a_slot_migration(cluster, exporter_factory, tmp_path):
    """Mid-migration the old owner answers ASK for a key that moved; once the slot is the new
    owner's, MOVED. The check must read the key where it is at each step."""
    source, destination = cluster.client("redis-1"), cluster.client("redis-2")
    for client in (source, destination):
        client.config_set("min-replicas-to-write", 0)  # shards without a replica
    key = f"moving{TAGS[1]}"
    slot = key_slot(key)
    source.hset(key, "hits", 1)
    checks_file = tmp_path / "checks.yaml"
    check = {"name": "moving", "type": "hash_counters", "key": key, "fields": ["hits"]}
    checks_file.write_text(yaml.safe_dump({"checks": [{**check, "interval_seconds": 0.2}]}))
    exporter = exporter_factory(
        "--url", cluster.url("redis-1"), *cluster.tls_options(), "--checks", checks_file,
        env={"REDIS_PASSWORD": PASSWORDS["admin"]},
    )  # fmt: skip

    def reads(hits: int) -> None:
        def shown() -> bool:
            families = exporter.metrics()
            return value(families, "redkeep_check_hash_counter_total", check="moving") == hits

        try:
            wait_until(shown, f"the check to read hits={hits}")
        except AssertionError:
            raise AssertionError(exporter.log.read_text()) from None

    reads(1)
    ids = {name: cluster.client(name).execute_command("CLUSTER MYID") for name in SHARDS[1:]}
    destination.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids["redis-1"])
    source.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids["redis-2"])
    keys = source.execute_command("CLUSTER GETKEYSINSLOT", slot, 100)  # the others' too
    source.execute_command(
        "MIGRATE", "localhost", cluster.nodes["redis-2"].tls_port, "", 0, 5000,
        "AUTH2", "admin", PASSWORDS["admin"], "KEYS", *keys,
    )  # fmt: skip
    with pytest.raises(redis.exceptions.AskError):  # gone from the old owner
        source.exists(key)
    destination.execute_command("ASKING")
    destination.hset(key, "hits", 2)
    reads(2)
    # The new owner first, as a reshard does (the other way round, for a moment neither
    # node would serve the slot).
    for client in (destination, source):
        client.execute_command("CLUSTER SETSLOT", slot, "NODE", ids["redis-2"])
    destination.hset(key, "hits", 3)  # the slot is redis-2's: redis-1 answers MOVED
    reads(3)
    for client in (source, destination):
        client.close()
