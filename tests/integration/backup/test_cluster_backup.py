"""Backups of a real 3-shard Redis Cluster (tests/hanodes.py, TLS and ACLs on every link).

The shared dataset (tests/datasets.py) is loaded into a scratch server and every key is copied
into the cluster node that serves its slot, so each shard holds a part of it. A backup is judged
by what the store and the servers hold: the manifest's slot map, verify's drill of each shard,
and a restore into a fresh cluster with no slots, whose keys, values and TTLs must equal the
source's, shard by shard, with `cluster_state:ok` on every node.
"""

import json
import re
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from redkeep.backup import clustermap
from tests import datasets
from tests.conftest import run_redkeep
from tests.hanodes import (
    PASSWORDS,
    HADeployment,
    _start,
    data_config,
    start_cluster,
    wait_until,
)
from tests.integration.backup.test_json_shapes import CLUSTER_ONLY, check_shape
from tests.servers import free_port

ADMIN_ENV = {"REDIS_PASSWORD": PASSWORDS["admin"]}
SHARDS = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, redis_binary, ha_pki) -> Iterator[HADeployment]:
    """redis-0..2 primaries, redis-3 a replica of redis-0; the dataset spread over the shards."""
    deployment = start_cluster(redis_binary, tmp_path_factory.mktemp("cluster"), ha_pki)
    try:
        # Every primary must know redis-3 as redis-0's connected replica before a backup picks
        # its sources (gossip spreads it; under load a seed could still say "it has none").
        first = deployment.client("redis-0").cluster("myid")

        def replica_known() -> bool:
            return (
                all(
                    any(
                        "slave" in entry["flags"] and entry["master_id"] == first
                        for entry in deployment.client(name).cluster("nodes").values()
                    )
                    for name in ("redis-0", "redis-1", "redis-2")
                )
                and deployment.client("redis-3").info("replication")["master_link_status"] == "up"
            )

        wait_until(replica_known, "redis-3 known everywhere as redis-0's replica, in sync")
        for name in ("redis-1", "redis-2"):  # no replica: min-replicas-to-write 1 refuses writes
            deployment.client(name).config_set("min-replicas-to-write", 0)
        config = [*data_config(ha_pki), "min-replicas-to-write 0"]
        scratch = _start(redis_binary, tmp_path_factory.mktemp("scratch"), config)
        try:
            deployment.nodes["scratch"] = scratch
            datasets.load(deployment.client("scratch"))
            _route_by_slot(deployment)
        finally:
            deployment.nodes.pop("scratch")
            scratch.stop()
        # The replica has the dataset (else it may be more than MAX_GAP behind at the backup).
        offset = deployment.client("redis-0").info("replication")["master_repl_offset"]
        wait_until(
            lambda: deployment.client("redis-3").info("replication")["slave_repl_offset"] >= offset,
            "redis-3 to have the dataset",
        )
    except BaseException:
        deployment.stop()
        raise
    yield deployment
    deployment.stop()


def _route_by_slot(deployment: HADeployment) -> None:
    """Every key of the scratch server (all its databases) into the primary of its slot."""
    owners = {}
    for name in ("redis-0", "redis-1", "redis-2"):
        client = datasets.client_for(deployment.client(name), 0)
        for first, last in _ranges(client):
            owners.update({slot: client for slot in range(first, last + 1)})
    seen = set()
    scratch = deployment.client("scratch")
    for db in datasets.DATABASES:
        source = datasets.client_for(scratch, db)
        for key in source.scan_iter(count=1000):
            assert key not in seen, f"{key!r} is in two databases: the cluster has one"
            seen.add(key)
            pttl = source.pttl(key)
            owners[key_slot(key)].restore(key, max(pttl, 0), source.dump(key), replace=True)


def _ranges(client: redis.Redis) -> list[tuple[int, int]]:
    for line in client.execute_command("CLUSTER", "NODES").decode().splitlines():
        fields = line.split()
        if "myself" in fields[2]:
            return [tuple(map(int, (f.split("-") + f.split("-"))[:2])) for f in fields[8:]]
    raise AssertionError("no myself line")


def _start_empty_cluster(binary: str, base: Path, pki, nodes: int) -> HADeployment:
    """`nodes` primaries that know each other and serve no slot (a restore's target)."""
    deployment = HADeployment(pki)
    try:
        for i in range(nodes):
            bus_port = deployment.bus_ports[f"redis-{i}"] = free_port()
            config = [
                *data_config(pki),
                "min-replicas-to-write 0",
                "cluster-enabled yes",
                f"cluster-config-file {base / f'redis-{i}' / 'nodes.conf'}",
                "cluster-node-timeout 2000",
                f"cluster-port {bus_port}",
                "tls-cluster yes",
            ]
            deployment.nodes[f"redis-{i}"] = _start(binary, base / f"redis-{i}", config)
        first = deployment.client("redis-0")
        for i in range(1, nodes):
            port = deployment.nodes[f"redis-{i}"].tls_port
            first.execute_command(
                "CLUSTER MEET", "127.0.0.1", port, deployment.bus_ports[f"redis-{i}"]
            )
        wait_until(
            lambda: all(
                deployment.client(name).execute_command("CLUSTER INFO")["cluster_known_nodes"]
                == str(nodes)
                for name in deployment.nodes
            ),
            "every node to know the others",
        )
    except BaseException:
        deployment.stop()
        raise
    return deployment


def redkeep(*args, status: int = 0) -> dict | list:
    result = run_redkeep(*map(str, args), "--json", env=ADMIN_ENV, timeout=120)
    assert result.returncode == status, result.stdout + result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else {}


def backup(cluster: HADeployment, dest: Path, *args, status: int = 0, node: str = "redis-1"):
    return redkeep(
        "backup", "run", "--url", cluster.url(node), *cluster.tls_options(), "--dest", dest,
        "--source", "shop", *args, status=status,
    )  # fmt: skip


def per_shard(deployment: HADeployment, names: list[str]) -> list[dict]:
    return [datasets.snapshot(datasets.client_for(deployment.client(name), 0)) for name in names]


def test_cluster_backup_verify_and_restore_into_an_empty_cluster(
    cluster, tmp_path, redis_binary, ha_pki
):
    dest = tmp_path / "dest"
    report = backup(cluster, dest)
    shards = report["cluster"]["shards"]
    assert report["result"] == "success" and len(shards) == SHARDS
    # Shard 0 has a replica in sync: captured there; the others have none (and say so).
    roles = [shard["captured_role"] for shard in shards]
    assert roles == ["replica", "primary", "primary"], report["warnings"]
    assert shards[0]["captured_from"] == f"127.0.0.1:{cluster.nodes['redis-3'].tls_port}"
    assert sum("no replica in sync" in warning for warning in report["warnings"]) == 2
    reasons = [shard["capture_reason"] for shard in shards]
    assert reasons[0].startswith("in sync: ") and " bytes behind its primary, " in reasons[0]
    assert all(reason.startswith("no replica in sync (it has none)") for reason in reasons[1:])
    assert CLUSTER_ONLY["backup run --json"] <= check_shape(
        "backup run --json", [report], complete=False
    )

    # On disk: one manifest, one object per shard, slot ranges that cover 16384 slots.
    manifest = json.loads((dest / "shop" / report["id"] / "manifest.json").read_text())
    slots = sorted(
        tuple(pair) for shard in manifest["cluster"]["shards"] for pair in shard["slots"]
    )
    assert slots == [(0, 5460), (5461, 10921), (10922, 16383)]
    stored = {path.name for path in (dest / "shop" / report["id"]).iterdir()}
    assert {shard["object"] for shard in shards} <= stored
    source = per_shard(cluster, ["redis-0", "redis-1", "redis-2"])
    for shard, keys in zip(manifest["cluster"]["shards"], source, strict=True):
        assert shard["keyspace"]["db0"]["keys"] == len(keys) > 0

    listing = redkeep("backup", "list", "--dest", dest)
    assert [(row["id"], row["shards"], row["complete"]) for row in listing] == [
        (report["id"], SHARDS, True)
    ]
    assert CLUSTER_ONLY["backup list --json"] <= check_shape(
        "backup list --json", [listing], complete=False
    )

    verified = redkeep("backup", "verify", report["id"], "--dest", dest)
    assert verified["result"] == "ok" and len(verified["objects"]) == SHARDS
    for shard, keys in zip(shards, source, strict=True):
        assert verified["objects"][shard["object"]]["drill"]["keyspace"]["db0"]["keys"] == len(keys)

    empty = _start_empty_cluster(redis_binary, tmp_path / "target", ha_pki, SHARDS)
    try:
        restored = redkeep(
            "backup", "restore", report["id"], "--dest", dest,
            "--to-url", empty.url("redis-1"), *empty.tls_options(),
        )  # fmt: skip
        seen = check_shape("backup restore --to-url --json", [restored], complete=False)
        assert CLUSTER_ONLY["backup restore --to-url --json"] <= seen
        names = sorted(empty.nodes, key=lambda name: empty.nodes[name].tls_port)
        for name in empty.nodes:
            assert empty.client(name).execute_command("CLUSTER INFO")["cluster_state"] == "ok"
        # Shard k went to the k-th node by address: its slots and exactly its keys.
        for index, name in enumerate(names):
            client = datasets.client_for(empty.client(name), 0)
            assert [list(pair) for pair in _ranges(client)] == manifest["cluster"]["shards"][index][
                "slots"
            ]
            datasets.assert_same(source[index], datasets.snapshot(client, [0]))
    finally:
        empty.stop()


def test_a_slot_map_with_a_hole_fails_verify(cluster, tmp_path):
    dest = tmp_path / "dest"
    report = backup(cluster, dest, "--from", "primary")
    assert [shard["captured_role"] for shard in report["cluster"]["shards"]] == ["primary"] * 3
    path = dest / "shop" / report["id"] / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["cluster"]["shards"][1]["slots"] = [[5461, 10000]]
    path.write_text(json.dumps(manifest))
    failed = redkeep("backup", "verify", report["id"], "--dest", dest, status=1)
    assert failed["result"] == "failed"
    assert "slots 10001-10921 are served by no shard" in failed["error"]


@pytest.mark.parametrize("kind", ["aof", "both"])
def test_an_aof_backup_of_a_cluster_is_refused_with_the_reason(cluster, tmp_path, kind):
    dest = tmp_path / "dest"
    result = run_redkeep(
        "backup", "run", "--url", cluster.url("redis-1"), *map(str, cluster.tls_options()),
        "--dest", str(dest), "--source", "shop", "--type", kind, env=ADMIN_ENV,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert f"not --type {kind}: an AOF is copied from the data directory" in result.stderr
    assert "use --type rdb" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    # Only the run's failure report is stored: no object, no manifest.
    assert [row["complete"] for row in redkeep("backup", "list", "--dest", dest)] == [False]
    assert not list(dest.glob("shop/*/manifest.json")) and not list(dest.glob("shop/*/*.rdb*"))


def test_a_different_shard_count_is_refused(cluster, tmp_path, redis_binary, ha_pki):
    dest = tmp_path / "dest"
    report = backup(cluster, dest)
    two = _start_empty_cluster(redis_binary, tmp_path / "two", ha_pki, 2)
    try:
        result = run_redkeep(
            "backup", "restore", report["id"], "--dest", str(dest),
            "--to-url", two.url("redis-0"), *map(str, two.tls_options()), env=ADMIN_ENV,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert (
            "has 3 shards and the cluster" in result.stderr and "has 2 primaries" in result.stderr
        )
        for name in two.nodes:  # nothing was assigned or written
            client = two.client(name)
            assert client.dbsize() == 0
            assert client.execute_command("CLUSTER INFO")["cluster_slots_assigned"] == "0"
    finally:
        two.stop()


def test_a_migration_on_another_shard_keeps_captures_from_starting(cluster):
    """A node shows its own `[slot->-id]` only on its own CLUSTER NODES line: seen from redis-0,
    a migration between redis-1 and redis-2 is invisible. Each primary is asked itself (an
    attack review had such a backup stored as complete)."""
    seed = cluster.target("redis-0")
    slot_map, _ = clustermap.read_slot_map([seed])
    assert clustermap.migrating_anywhere(seed, slot_map) == ""
    source, dest = cluster.client("redis-1"), cluster.client("redis-2")
    port = cluster.server("redis-1").tls_port
    slot = next(shard for shard in slot_map.shards if shard.primary.port == port).ranges[0][0]
    source_id, dest_id = source.cluster("myid"), dest.cluster("myid")
    try:
        dest.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dest_id)
        assert clustermap.read_slot_map([seed])[0].unsettled() == ""  # the seed cannot see it
        assert "being migrated" in clustermap.migrating_anywhere(seed, slot_map)
    finally:
        source.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
        dest.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
    assert clustermap.migrating_anywhere(seed, slot_map) == ""


@pytest.fixture(scope="module")
def stored(cluster, tmp_path_factory) -> tuple[Path, dict, list[dict]]:
    """One good backup of the cluster, each shard from its primary (tests copy it to edit it),
    and what each shard held."""
    dest = tmp_path_factory.mktemp("stored") / "dest"
    report = backup(cluster, dest, "--from", "primary")
    return dest, report, per_shard(cluster, ["redis-0", "redis-1", "redis-2"])


def _restore(empty: HADeployment, dest: Path, backup_id: str, *args: str, seed: str = "redis-0"):
    return run_redkeep(
        "backup", "restore", backup_id, "--dest", str(dest), "--to-url", empty.url(seed),
        *map(str, empty.tls_options()), *args, env=ADMIN_ENV, timeout=120,
    )  # fmt: skip


def test_a_shard_whose_keys_lie_outside_its_slots_fails_verify_and_restore(
    stored, tmp_path, redis_binary, ha_pki
):
    """Shards 0 and 1 swap their slot ranges in the manifest (as if their files were swapped):
    the map still covers every slot once and each RDB still holds its recorded keys, but no key
    of either shard hashes into the slots it is listed for."""
    dest = tmp_path / "dest"
    shutil.copytree(stored[0], dest)
    report = stored[1]
    path = dest / "shop" / report["id"] / "manifest.json"
    manifest = json.loads(path.read_text())
    shards = manifest["cluster"]["shards"]
    shards[0]["slots"], shards[1]["slots"] = shards[1]["slots"], shards[0]["slots"]
    path.write_text(json.dumps(manifest))

    # Restore (never verified: nothing refuses it by its verdict) writes nothing at all.
    empty = _start_empty_cluster(redis_binary, tmp_path / "target", ha_pki, SHARDS)
    try:
        result = _restore(empty, dest, report["id"])
        assert result.returncode == 1, result.stderr
        assert "shard 0 of the backup holds" in result.stderr
        assert "keys outside its slots 5461-10921" in result.stderr
        for name in empty.nodes:
            client = empty.client(name)
            assert client.dbsize() == 0
            assert client.execute_command("CLUSTER INFO")["cluster_slots_assigned"] == "0"
    finally:
        empty.stop()

    failed = redkeep("backup", "verify", report["id"], "--dest", dest, status=1)
    assert failed["result"] == "failed"
    assert "shard 0 holds" in failed["error"] and "outside its slots 5461-10921" in failed["error"]


def test_a_restore_that_breaks_off_says_which_shards_it_wrote(
    cluster, stored, tmp_path, redis_binary, ha_pki
):
    """Shard 2's node lacks the memory for its shard: refused before any key is written. Shard
    1's node refuses the admin's keys (ACL: only redkeep:* keys, so the scratch probes
    pass): shard 0 is written, shard 1 not, shard 2 not reached, and the message says so. A
    restore --replace then completes it and leaves a key the backup does not have alone. Then a
    slot of shard 1 is handed to shard 0's node in that node's own view only: its RESTOREs get
    MOVED, which the message names."""
    dest, report, source = stored
    empty = _start_empty_cluster(redis_binary, tmp_path / "target", ha_pki, SHARDS)
    try:
        names = sorted(empty.nodes, key=lambda name: empty.nodes[name].tls_port)
        where = [rf"\S+:{empty.nodes[name].tls_port}" for name in names]  # as the seed names it
        clients = [datasets.client_for(empty.client(name), 0) for name in names]

        # A dry run: the plan is the backup's keys; nothing assigned, nothing written.
        result = _restore(empty, dest, report["id"], "--dry-run", "--json", seed=names[0])
        assert result.returncode == 0, result.stderr
        planned = json.loads(result.stdout)
        assert planned["plan"]["db0"]["keys"] == sum(map(len, source))
        assert planned["target_keys"] == {}
        assert clients[0].execute_command("CLUSTER INFO")["cluster_slots_assigned"] == "0"

        # The last shard's node cannot hold its shard: refused before any key is written.
        used = clients[2].info("memory")["used_memory"]
        clients[2].config_set("maxmemory", used + 1024)
        result = _restore(empty, dest, report["id"], seed=names[0])
        # Refused by the memory check (exit 2) or by the scratch probe's OOM reply (exit 1).
        assert result.returncode in (1, 2), result.stderr
        assert re.search(f"shard 2 into {where[2]}: .*maxmemory", result.stderr)
        assert "the slots were assigned from the backup's slot map, no key was written" in (
            result.stderr
        )
        assert [client.dbsize() for client in clients] == [0, 0, 0]
        clients[2].config_set("maxmemory", 0)
        refusing = empty.client(names[1])
        refusing.acl_setuser("admin", enabled=True, reset_keys=True, keys=["redkeep:*"])
        result = _restore(empty, dest, report["id"], seed=names[0])
        assert result.returncode == 1, result.stderr
        assert re.search(f"broke off at shard 1 into {where[1]}: ", result.stderr)
        assert re.search(f"Written completely: shard 0 into {where[0]}; ", result.stderr)
        assert "not written: shard 2." in result.stderr
        assert "nothing was written" not in result.stderr
        datasets.assert_same(source[0], datasets.snapshot(clients[0], [0]))
        assert [clients[1].dbsize(), clients[2].dbsize()] == [0, 0]

        # --replace completes it; a key the backup does not hold stays, a changed one is put back.
        refusing.acl_setuser("admin", enabled=True, keys=["*"])
        extra, changed = b"not-in-the-backup", next(iter(source[0]))[1]
        owner = next(
            c for c, s in zip(clients, _slots_of(clients), strict=True) if key_slot(extra) in s
        )
        owner.set(extra, "stays")
        clients[0].delete(changed)
        clients[0].set(changed, "changed")
        result = _restore(empty, dest, report["id"], "--replace", "--json", seed=names[0])
        assert result.returncode == 0, result.stderr
        assert owner.get(extra) == b"stays"
        owner.delete(extra)
        for index, client in enumerate(clients):
            datasets.assert_same(source[index], datasets.snapshot(client, [0]))

        # One slot of shard 1 given to shard 0's node, in shard 1's node's own view only.
        keyed = next(key for (_, key) in source[1] if key_slot(key) != _slots_of(clients)[1][0])
        slot = key_slot(keyed)
        clients[1].delete(*clients[1].cluster("getkeysinslot", slot, 1000))  # else refused
        clients[1].execute_command("CLUSTER", "SETSLOT", slot, "NODE", clients[0].cluster("myid"))
        result = _restore(empty, dest, report["id"], "--replace", seed=names[0])
        assert result.returncode == 1, result.stderr
        assert f"a MOVED redirect: slot {slot} is served by" in result.stderr
        assert re.search(f"Written completely: shard 0 into {where[0]}; ", result.stderr)
    finally:
        empty.stop()


def _slots_of(clients: list[redis.Redis]) -> list[list[int]]:
    """Each node's slots in its own view, as a list of slot numbers."""
    return [
        [slot for first, last in _ranges(client) for slot in range(first, last + 1)]
        for client in clients
    ]


# Last in the module: it kills redis-0 (redis-3 takes its slots).
def test_sigkill_of_a_primary_during_a_backup(cluster, tmp_path):
    """redis-0 is killed while its capture waits for the snapshot (repl-diskless-sync-delay):
    the run must end complete with every shard's keys (the replica took over and the run
    retried) or failed; `backup list` must say which, and never list a wrong backup complete."""
    dest = tmp_path / "dest"
    source = per_shard(cluster, ["redis-0", "redis-1", "redis-2"])
    victim = cluster.client("redis-0")
    victim.config_set("repl-diskless-sync", "yes")
    victim.config_set("repl-diskless-sync-delay", 3)

    def kill_when_capturing() -> None:
        wait_until(
            lambda: victim.info("replication").get("connected_slaves", 0) >= 2,
            "the backup's capture to connect to redis-0",
        )
        cluster.nodes["redis-0"].process.send_signal(signal.SIGKILL)

    killer = threading.Thread(target=kill_when_capturing)
    killer.start()
    result = run_redkeep(
        "backup", "run", "--url", cluster.url("redis-1"), *map(str, cluster.tls_options()),
        "--dest", str(dest), "--source", "shop", "--from", "primary", "--json",
        env=ADMIN_ENV, timeout=120,
    )  # fmt: skip
    killer.join()
    report = json.loads(result.stdout)
    listing = redkeep("backup", "list", "--dest", dest)
    assert [(row["id"], row["complete"]) for row in listing] == [
        (report["id"], report["result"] == "success")
    ]
    if report["result"] == "failure":
        assert result.returncode == 1, result.stderr
        return
    # Complete: after a retry on the new topology, with every shard's keys.
    assert any("retried" in warning for warning in report["warnings"])
    replica_port = cluster.nodes["redis-3"].tls_port
    assert report["cluster"]["shards"][0]["captured_from"] == f"127.0.0.1:{replica_port}"
    assert [shard["keys"] for shard in report["cluster"]["shards"]] == [len(s) for s in source]
    verified = redkeep("backup", "verify", report["id"], "--dest", dest)
    assert verified["result"] == "ok"
