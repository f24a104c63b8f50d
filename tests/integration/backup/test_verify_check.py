"""The shared dataset itself, and the round-trip check `backup verify` runs in its drill server:
it passes every key of the dataset whatever the layout, and fails a copy whose data changed."""

import json

import pytest

from redkeep.actions.verify import copy_one, round_trip_problem
from redkeep.backup import drill
from tests import datasets
from tests.conftest import run_redkeep

SPARE = 9  # a database the dataset does not use


@pytest.fixture
def drill_server(tmp_path, redis_binary):
    """The drill server `verify` uses, empty, holding the dataset."""
    data = tmp_path / "data"
    data.mkdir()
    with drill.scratch_server(data) as server:
        datasets.load(f"unix://{server.socket_path}")
        yield server


def test_the_dataset_reaches_every_encoding_and_compares_itself(redis_factory):
    url = f"redis://127.0.0.1:{redis_factory().port}"
    loaded = datasets.load(url)
    reached = set(loaded.encodings.values())
    expected = {"int", "embstr", "raw", "quicklist", "intset", "hashtable", "skiplist", "stream"}
    expected.add("listpack" if loaded.version >= (7, 0) else "ziplist")
    assert reached == expected
    before = datasets.snapshot(url)
    assert {db for db, _ in before} == {0, 1, 2, 15}
    assert datasets.compare(before, datasets.snapshot(url), ttl_slack_ms=0) == []
    assert before[(1, b"bin:\x00nul\x00")].value == b"value with \x00 inside"
    assert before[(2, b"ttl:milliseconds")].expires and not before[(2, b"ttl:none")].expires
    client = datasets.client_for(url, 0)
    client.srem("set:many:3", "m4")
    client.xack("stream", "workers", "1700000000005-0")
    datasets.client_for(url, 2).persist("ttl:seconds")
    datasets.client_for(url, 1).set(b"new\r\nkey", b"x")
    assert datasets.compare(before, datasets.snapshot(url)) == [
        "db0 b'set:many:3': the set value differs",
        "db0 b'stream': the stream value differs",
        "db1 b'new\\r\\nkey': not expected",
        "db2 b'ttl:seconds': TTL missing",
    ]


def test_every_key_of_the_dataset_survives_the_check(drill_server):
    copy = drill_server.client(SPARE)
    checked = 0
    for db in datasets.DATABASES:
        source = drill_server.client(db)
        for key in source.scan_iter():
            assert copy_one(source, copy, key)
            assert round_trip_problem(source, copy, key) is None, (db, key)
            checked += 1
        copy.flushdb()
    assert checked == len(datasets.snapshot(f"unix://{drill_server.socket_path}"))


CHANGES = {
    "a set member": (0, b"set:many:7", lambda c, k: c.srem(k, "m4") + c.sadd(k, "m44")),
    "a hash value": (0, b"hash:big", lambda c, k: c.hset(k, "field-5", "other")),
    "a score": (0, b"zset:small", lambda c, k: c.zadd(k, {"z3": 99})),
    "one byte of 1 MiB": (0, b"str:1mib", lambda c, k: c.setrange(k, 500_000, b"\x00")),
    "a binary value": (1, b"bin:\x00nul\x00", lambda c, k: c.append(k, b"\x00")),
    "a list order": (0, b"list:small", lambda c, k: c.lmove(k, k, "LEFT", "RIGHT")),
}


@pytest.mark.parametrize("change", CHANGES)
def test_a_changed_value_fails_the_check(drill_server, change):
    db, key, mutate = CHANGES[change]
    source, copy = drill_server.client(db), drill_server.client(SPARE)
    assert copy_one(source, copy, key)
    mutate(copy, key)
    assert round_trip_problem(source, copy, key) == "its value differs after the round trip"


def test_a_lost_ttl_or_changed_consumer_group_fails_the_check(drill_server):
    source, copy = drill_server.client(2), drill_server.client(SPARE)
    assert copy_one(source, copy, b"ttl:milliseconds")
    copy.persist(b"ttl:milliseconds")
    assert round_trip_problem(source, copy, b"ttl:milliseconds") == "its TTL was not kept"
    source = drill_server.client(0)
    assert copy_one(source, copy, b"stream")
    copy.xack(b"stream", b"workers", b"1700000000005-0")
    assert (
        round_trip_problem(source, copy, b"stream")
        == "its consumer groups differ after the round trip"
    )


def test_verify_leaves_keys_over_16_mib_out_of_the_round_trip(redis_factory, tmp_path):
    url = f"redis://127.0.0.1:{redis_factory(['repl-diskless-sync-delay 0']).port}"
    datasets.load(url)
    datasets.client_for(url, 0).setrange("huge", 20 * (1 << 20), b"x")
    dest = tmp_path / "dest"
    run = run_redkeep("backup", "run", "--url", url, "--dest", dest, "--source", "s", "--json")
    assert run.returncode == 0, run.stderr
    verify = run_redkeep("backup", "verify", "latest", "--dest", dest, "--json")
    assert verify.returncode == 0, verify.stderr
    (checks,) = json.loads(verify.stdout)["objects"].values()
    assert checks["drill"]["keyspace"]["db0"]["keys"] == len(datasets.snapshot(url, [0]))
    assert checks["drill"]["sampled_keys"] == len(datasets.snapshot(url)) - 1  # all but "huge"
