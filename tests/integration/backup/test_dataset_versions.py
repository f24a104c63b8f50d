"""The shared dataset (tests/datasets.py) backed up, verified and restored on every server
build: the restored data equals the source, key by key with TTLs. Verify on this machine's
own tools (Debian's redis-server 7.0, RDB 10) passes for older RDBs and is "cannot verify
here" (exit 4) for newer ones; with --server-binary pointing at the build it passes."""

import json

from tests import datasets
from tests.servers import BUILDS

DEFAULT = next(build for build in BUILDS if build.source.startswith("Debian"))


def test_backup_verify_and_restore_of_the_dataset(server_build, server_factory, cli, tmp_path):
    source = server_factory(server_build, ["repl-diskless-sync-delay 0"])
    url = f"redis://127.0.0.1:{source.port}"
    datasets.load(url)
    before = datasets.snapshot(url)
    dest = tmp_path / "backups"

    run = cli("backup", "run", "--url", url, "--dest", dest, "--source", "s", "--json")
    assert run.code == 0, run.err
    report = json.loads(run.out)
    assert report["rdb"]["version"] == server_build.rdb_version
    assert report["rdb"]["checksum"] == "ok"
    backup_id = report["id"]
    manifest = json.loads((dest / "s" / backup_id / "manifest.json").read_text())
    version = ".".join(map(str, server_build.version))
    assert manifest["server"]["engine"] == server_build.flavour
    assert (manifest["server"]["version"], manifest["server"]["mode"]) == (version, "standalone")

    here = cli("backup", "verify", backup_id, "--dest", dest, "--json")
    readable_here = server_build.rdb_version <= DEFAULT.rdb_version
    assert here.code == (0 if readable_here else 4), here.out + here.err
    if not readable_here:
        assert f"RDB version {server_build.rdb_version}" in here.err

    binary = str(server_build.path)
    verify = cli("backup", "verify", backup_id, "--dest", dest, "--server-binary", binary, "--json")
    assert verify.code == 0, verify.out + verify.err
    (checks,) = json.loads(verify.out)["objects"].values()
    assert checks["redis_check_rdb"] == "ok"
    assert checks["drill"]["sampled_keys"] == len(before)  # every key through the round trip
    per_db: dict[str, int] = {}
    for db, _ in before:
        per_db[f"db{db}"] = per_db.get(f"db{db}", 0) + 1
    assert {db: counts["keys"] for db, counts in checks["drill"]["keyspace"].items()} == per_db

    target = server_factory(server_build)
    target_url = f"redis://127.0.0.1:{target.port}"
    restore = cli(
        "backup", "restore", backup_id, "--dest", dest, "--to-url", target_url,
        "--server-binary", binary, "--json",
    )  # fmt: skip
    assert restore.code == 0, restore.err
    datasets.assert_same(before, datasets.snapshot(target_url))
