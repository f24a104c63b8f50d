"""Backups of every server build: what the RDB holds is counted the same way on each, and a
backup newer than the local tools is "cannot verify here" (exit 4), never "damaged"."""

import json

import pytest
import redis

from redkeep.backup import drill
from redkeep.backup.rdbkeys import walk
from tests.conftest import run_redkeep
from tests.servers import BUILDS, ServerBuild

DEBIAN = next(build for build in BUILDS if build.version == (7, 0, 15))
NEWER = [build for build in BUILDS if build.rdb_version in (11, 12)]  # Valkey 8.1, Redis 8.2


def fill(build: ServerBuild, port: int) -> None:
    """Every type in small and big encodings, TTLs, several dbs (the shared dataset asserts
    Redis's encodings, which Valkey 8+ does not have)."""
    client = redis.Redis(port=port)
    pipe = client.pipeline(transaction=False)
    pipe.set("str:int", 12345).set("str:embstr", "short").set("str:raw", "r" * 300)
    pipe.rpush("list:small", *range(5)).rpush("list:big", *(f"e{i:04d}" * 20 for i in range(300)))
    pipe.sadd("set:int", *range(10)).sadd("set:small", "a", "b").sadd("set:big", *range(1000))
    pipe.hset("hash:small", mapping={"a": 1}).hset(
        "hash:big", mapping={f"f{i}": i for i in range(300)}
    )
    pipe.zadd("zset:small", {"a": 1}).zadd("zset:big", {f"m{i}": i for i in range(300)})
    pipe.pfadd("hll", *range(100)).setbit("bits", 10_000, 1)
    for i in range(20):
        pipe.xadd("stream", {"n": i}, id=f"1700000000{i:03d}-0")
    pipe.execute()
    client.xgroup_create("stream", "workers", id="0")
    client.xreadgroup("workers", "alice", {"stream": ">"}, count=5)
    db4 = redis.Redis(port=port, db=4)
    for i in range(300):
        db4.set(f"k{i}", i, ex=3600 if i % 3 == 0 else None)
    db4.set("ms", "x", px=3_600_000)
    redis.Redis(port=port, db=15).set("last", "db")
    field_ttls = build.flavour == "redis" and build.version >= (7, 4, 0)
    if field_ttls or build.version >= (9, 0, 0):  # hashes with field TTLs: own RDB types
        db4.hset("hfe:small", mapping={"a": "1", "b": "2"})
        db4.hset("hfe:big", mapping={f"f{i}": "v" * 10 for i in range(300)})
        db4.execute_command("HEXPIRE", "hfe:small", 3600, "FIELDS", 1, "a")
        db4.execute_command("HEXPIRE", "hfe:big", 3600, "FIELDS", 1, "f1")


def test_the_walk_counts_every_key_and_expire_as_resizedb_and_info_do(server_build, server_factory):
    """What each build writes: RESIZEDB carries the real key and expire counts of each db
    (not hash table sizes), and counting the records gives the same on every build."""
    server = server_factory(server_build, ["repl-diskless-sync-delay 0"])
    fill(server_build, server.port)
    client = redis.Redis(port=server.port)
    client.save()
    expected = {
        db: {"keys": stats["keys"], "expires": stats["expires"]}
        for db, stats in client.info("keyspace").items()
    }
    with (server.workdir / "dump.rdb").open("rb") as stream:
        found = walk(stream)
    assert {db: {"keys": c["keys"], "expires": c["expires"]} for db, c in found.items()} == expected
    assert all(
        (c["resizedb_keys"], c["resizedb_expires"]) == (c["keys"], c["expires"])
        for c in found.values()
    )


def backup_of(build: ServerBuild, server_factory, dest) -> str:
    server = server_factory(build, ["repl-diskless-sync-delay 0"])
    fill(build, server.port)
    url = f"redis://127.0.0.1:{server.port}"
    run = run_redkeep("backup", "run", "--url", url, "--dest", dest, "--source", "s", "--json")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)["id"]


@pytest.mark.parametrize("build", NEWER, ids=lambda build: build.name)
def test_a_backup_newer_than_the_local_tools_cannot_be_verified_here(
    build, server_factory, tmp_path
):
    build.require()
    dest = tmp_path / "dest"
    backup_id = backup_of(build, server_factory, dest)
    verdict = dest / "s" / backup_id / "verify.json"
    here = run_redkeep("backup", "verify", backup_id, "--dest", dest, "--json")
    assert here.returncode == 4, here.stdout + here.stderr
    (line,) = here.stderr.strip().splitlines()
    assert line.startswith("redkeep: error: cannot verify here: ")
    assert f"RDB version {build.rdb_version}" in line
    assert f"made by {build.flavour} {'.'.join(map(str, build.version))}" in line
    assert f"(Redis 7.0.15), which writes RDB version {DEBIAN.rdb_version}" in line
    assert "--server-binary" in line
    assert not verdict.exists()  # no verdict: the backup is not damaged

    matching = run_redkeep(
        "backup", "verify", backup_id, "--dest", dest, "--server-binary", build.path, "--json"
    )
    assert matching.returncode == 0, matching.stdout + matching.stderr
    result = json.loads(matching.stdout)
    (checks,) = result["objects"].values()
    assert checks["redis_check_rdb"] == "ok" and checks["drill"]["expected_from"] == "snapshot"
    assert checks["drill"]["sampled_keys"] > 0
    assert json.loads(verdict.read_text())["result"] == "ok"

    # A target older than the backup is refused before anything is written.
    target = server_factory(DEBIAN)
    restore = run_redkeep(
        "backup",
        "restore",
        backup_id,
        "--dest",
        dest,
        "--server-binary",
        build.path,
        "--to-url",
        f"redis://127.0.0.1:{target.port}",
    )
    assert restore.returncode == 1
    assert "runs Redis 7.0.15, which cannot load RDB version" in restore.stderr
    assert f"RDB version {build.rdb_version} of backup {backup_id}" in restore.stderr
    assert redis.Redis(port=target.port).dbsize() == 0


def test_the_checker_reports_its_reason_not_its_last_line(server_factory, tmp_path):
    valkey = next(build for build in NEWER if build.flavour == "valkey")
    server = server_factory(valkey)
    redis.Redis(port=server.port).save()
    readable, reason = drill.check_rdb(drill.server_binary(None), server.workdir / "dump.rdb")
    assert not readable
    assert reason.startswith("[offset 9] Can't handle RDB format version 11")
    assert "[info]" not in reason
    readable, reason = drill.check_rdb(
        drill.server_binary(str(valkey.path)), server.workdir / "dump.rdb"
    )
    assert (readable, reason) == (True, "ok")
