"""restore goes by what is known about a backup: a failed verify and an RDB that does not hold
the keys its manifest recorded are refused unless --force."""

import json

import pytest
import redis

from tests.conftest import run_redkeep


@pytest.fixture
def stored(redis_factory, tmp_path):
    server = redis_factory(["repl-diskless-sync-delay 0"])
    client = redis.Redis(port=server.port)
    for i in range(50):
        client.set(f"k{i}", i)
    dest = tmp_path / "dest"
    url = f"redis://127.0.0.1:{server.port}"
    run = run_redkeep("backup", "run", "--url", url, "--dest", dest, "--source", "s", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    return dest, report["id"], dest / "s" / report["id"]


def restore_url(dest, backup_id, port, *args):
    return run_redkeep(
        "backup",
        "restore",
        backup_id,
        "--dest",
        dest,
        "--to-url",
        f"redis://127.0.0.1:{port}",
        *args,
    )


def test_a_backup_that_failed_verify_is_refused_without_force(stored, redis_factory, tmp_path):
    dest, backup_id, where = stored
    (item,) = where.glob("dump.rdb*")
    good = item.read_bytes()
    item.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    verify = run_redkeep("backup", "verify", backup_id, "--dest", dest)
    assert verify.returncode == 1
    item.write_bytes(good)  # the object is good again, but its last verdict says failed
    target = redis_factory()
    refused = restore_url(dest, backup_id, target.port)
    assert refused.returncode == 1
    assert f"backup {backup_id} FAILED verification on " in refused.stderr
    assert "pass --force" in refused.stderr
    assert redis.Redis(port=target.port).dbsize() == 0
    to_file = run_redkeep(
        "backup", "restore", backup_id, "--dest", dest, "--to-file", tmp_path / "d"
    )
    assert to_file.returncode == 1 and not (tmp_path / "d").exists()
    forced = restore_url(dest, backup_id, target.port, "--force")
    assert forced.returncode == 0, forced.stderr
    assert (
        "redkeep: warning: " in forced.stderr and "restoring it anyway (--force)" in forced.stderr
    )
    assert redis.Redis(port=target.port).dbsize() == 50


def test_an_rdb_without_the_keys_its_manifest_recorded_is_refused(stored, redis_factory, tmp_path):
    dest, backup_id, where = stored
    manifest = json.loads((where / "manifest.json").read_text())
    manifest["rdb"]["keyspace"] = {"db0": {"keys": 51, "expires": 0}}  # as an older redkeep
    (where / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "dump.rdb"
    refused = run_redkeep("backup", "restore", backup_id, "--dest", dest, "--to-file", out)
    assert refused.returncode == 1
    assert "db0 keys: 50 in the file, 51 in the manifest" in refused.stderr
    assert not out.exists()
    target = redis_factory()
    assert restore_url(dest, backup_id, target.port).returncode == 1
    assert redis.Redis(port=target.port).dbsize() == 0
    forced = run_redkeep(
        "backup", "restore", backup_id, "--dest", dest, "--to-file", out, "--force"
    )
    assert forced.returncode == 0, forced.stderr
    assert out.read_bytes().startswith(b"REDIS")
