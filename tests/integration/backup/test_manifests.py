"""A manifest vouches only for the backup whose place it is read from, and an edited or
damaged one is listed as damaged (one line), without hiding or breaking the others."""

import json
import shutil

import pytest
import redis

from tests.conftest import run_redkeep
from tests.servers import RedisServer, free_port

SOURCE = "m"


@pytest.fixture(scope="module")
def stored_pair(tmp_path_factory, redis_binary):
    """A local store with two complete backups of one server: A (older) and X."""
    base = tmp_path_factory.mktemp("pair")
    server = RedisServer(redis_binary, base / "server", ["repl-diskless-sync-delay 0"], free_port())
    server.start()
    try:
        redis.Redis(port=server.port).set("key", "value")
        dest = base / "dest"
        url = f"redis://127.0.0.1:{server.port}"
        ids = []
        for _ in range(2):
            run = run_redkeep(
                "backup", "run", "--url", url, "--dest", dest, "--source", SOURCE, "--json"
            )
            assert run.returncode == 0, run.stderr
            ids.append(json.loads(run.stdout)["id"])
    finally:
        server.stop()
    return dest, *ids


@pytest.fixture
def two_backups(stored_pair, tmp_path):
    """A copy of the pair's store for one test to damage."""
    dest, older, newer = stored_pair
    shutil.copytree(dest, tmp_path / "dest")
    return tmp_path / "dest", older, newer


def edit(path, change) -> None:
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def listing(cli, dest) -> dict:
    result = cli("backup", "list", "--dest", dest, "--json")
    assert result.code == 0, result.err
    return {row["id"]: row for row in json.loads(result.out)}


def one_line_error(result) -> str:
    (line,) = result.err.strip().splitlines()
    assert line.startswith("redkeep: error: ")
    for raw in ("TypeError", "ValueError", "ReadError", "TimeoutError", "KeyError", "Traceback"):
        assert raw not in line
    return line


EDITS = {
    "another backup's manifest": lambda d, a, x: shutil.copy(d / a / "manifest.json", d / x),
    "id of another backup": lambda d, a, x: edit(d / x / "manifest.json", lambda m: m.update(id=a)),
    "other source": lambda d, a, x: edit(d / x / "manifest.json", lambda m: m.update(source="o")),
    "no objects": lambda d, a, x: edit(d / x / "manifest.json", lambda m: m.update(objects=[])),
    "aof content on an rdb": lambda d, a, x: edit(
        d / x / "manifest.json", lambda m: m["objects"][0].update(content="aof")
    ),
    "created without time zone": lambda d, a, x: edit(
        d / x / "manifest.json", lambda m: m.update(created="2026-11-30T13:00:00")
    ),
    "created not a date": lambda d, a, x: edit(
        d / x / "manifest.json", lambda m: m.update(created="yesterday")
    ),
    "keys as text": lambda d, a, x: edit(
        d / x / "manifest.json", lambda m: m["keyspace"]["before"]["db0"].update(keys="lots")
    ),
    "a huge database": lambda d, a, x: edit(
        d / x / "manifest.json",
        lambda m: m["rdb"].update(keyspace={"db99999999": {"keys": 1, "expires": 0}}),
    ),
    "name leaving the backup": lambda d, a, x: edit(
        d / x / "manifest.json", lambda m: m["objects"][0].update(name=f"../{a}/dump.rdb.zst")
    ),
    "objects not a list": lambda d, a, x: edit(
        d / x / "manifest.json", lambda m: m.update(objects={"a": 1})
    ),
}


@pytest.mark.parametrize("change", EDITS)
def test_an_edited_manifest_is_damaged_and_breaks_nothing_else(cli, two_backups, tmp_path, change):
    dest, older, newer = two_backups
    EDITS[change](dest / SOURCE, older, newer)
    rows = listing(cli, dest)
    assert rows[newer]["damaged"] and not rows[newer]["complete"]
    assert rows[newer]["time"].startswith(newer[:4])  # the time in the id
    assert rows[older]["complete"] and not rows[older]["damaged"]
    verify = cli("backup", "verify", newer, "--dest", dest)
    assert verify.code == 1
    assert f"backup {newer} cannot be used: its manifest" in one_line_error(verify)
    restore = cli("backup", "restore", newer, "--dest", dest, "--to-file", tmp_path / "x")
    assert restore.code == 1 and not (tmp_path / "x").exists()
    one_line_error(restore)
    assert not (dest / SOURCE / older / "verify.json").exists()  # the good one is untouched
    assert not (dest / SOURCE / newer / "verify.json").exists()
    # The other backup still works, and `latest` means the latest usable one.
    latest = cli("backup", "verify", "latest", "--dest", dest, "--json")
    assert latest.code == 0, latest.err
    assert json.loads(latest.out)["id"] == older
    pruned = cli("backup", "prune", "--dest", dest, "--keep-last", "5", "--dry-run")
    assert pruned.code == 0, pruned.err


def test_a_manifest_of_another_backup_in_s3_is_damaged(cli, redis_factory, s3_server):
    server = redis_factory(["repl-diskless-sync-delay 0"])
    redis.Redis(port=server.port).set("key", "value")
    dest = f"s3://{s3_server.bucket}/identity"
    url = f"redis://127.0.0.1:{server.port}"
    ids = []
    for _ in range(2):
        run = run_redkeep(
            "backup", "run", "--url", url, "--dest", dest, "--source", SOURCE, "--json"
        )
        assert run.returncode == 0, run.stderr
        ids.append(json.loads(run.stdout)["id"])
    s3 = s3_server.client()
    older = s3.get_object(Bucket=s3_server.bucket, Key=f"identity/{SOURCE}/{ids[0]}/manifest.json")
    s3.put_object(
        Bucket=s3_server.bucket,
        Key=f"identity/{SOURCE}/{ids[1]}/manifest.json",
        Body=older["Body"].read(),
    )
    rows = listing(cli, dest)
    assert (
        rows[ids[1]]["damaged"] and f"describes backup {SOURCE}/{ids[0]}" in rows[ids[1]]["problem"]
    )
    verify = cli("backup", "verify", ids[1], "--dest", dest)
    assert verify.code == 1 and "cannot be used" in one_line_error(verify)
    listed = s3.list_objects_v2(Bucket=s3_server.bucket, Prefix=f"identity/{SOURCE}/{ids[0]}/")
    assert not any(o["Key"].endswith("verify.json") for o in listed["Contents"])
