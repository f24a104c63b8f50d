"""`redkeep backup restore ID --to-url NODE` of a cluster backup: into a cluster of as many
primaries as the backup has shards.

A fresh node that loads a shard's RDB claims only the slots that hold keys, and the cluster
stays down; so the slots are assigned first, from the backup's slot map: in a cluster with no
slots yet, shard k's ranges go to its k-th primary (ordered by address) with CLUSTER
ADDSLOTSRANGE; a cluster whose slots already match the backup's shards one to one takes each
shard's data where its slots are. Then, once every node says `cluster_state:ok`, each shard is
restored into the primary that owns its slots through the single-server path (drill server,
DUMP/RESTORE, TTLs kept), and the keys each primary holds are compared with the shard's.

A cluster with another number of primaries, or slots assigned otherwise, is refused with the
reason: re-routing keys by slot is possible but would hide a topology mistake, and the issue
asked for one of the two (docs/backups.md).
"""

import dataclasses
import time

from redkeep.actions import restore as single
from redkeep.actions.backup_catalog import Listed
from redkeep.backup import clustermap, drill
from redkeep.backup.clustermap import coverage_problem
from redkeep.backup.results import ServerRestoreResult
from redkeep.backup.stores import Store
from redkeep.backup.unpack import Decryption
from redkeep.errors import DamagedBackup, RedkeepError, UsageError
from redkeep.redis.discover import ClusterNode, parse_cluster_nodes
from redkeep.redis.target import Target

STATE_TIMEOUT = 30.0  # seconds for the cluster to say ok once its slots are assigned


def restore_to_cluster(
    store: Store,
    listed: Listed,
    decryption: Decryption,
    target: Target,
    content: str,
    replace: bool,
    dry_run: bool,
    server: drill.ServerBinary,
    force: bool = False,
) -> ServerRestoreResult:
    """Restore every shard into the primary that serves its slots (module docstring)."""
    manifest = listed.manifest
    assert manifest is not None and manifest.cluster
    if content == "aof":
        raise UsageError(f"backup {manifest.id} is a cluster backup: it holds RDBs only")
    shards = manifest.shards
    wanted = [tuple(tuple(pair) for pair in shard["slots"]) for shard in shards]
    problem = coverage_problem(wanted)
    if problem:
        raise DamagedBackup(f"backup {manifest.id}: its slot map is damaged ({problem})")
    if not clustermap.is_cluster(target):
        raise UsageError(
            f"{target.where} is not a cluster node (cluster_enabled:0): backup {manifest.id} is "
            f"of a {len(shards)}-shard cluster; restore it into a cluster node, or one shard "
            "with --to-file"
        )
    (text,) = clustermap.ask(target, ("CLUSTER", "NODES"))
    nodes = parse_cluster_nodes(text)
    primaries = [node for node in nodes if node.is_primary and not node.unusable()]
    if len(primaries) != len(shards):
        raise UsageError(
            f"backup {manifest.id} has {len(shards)} shards and the cluster of {target.where} "
            f"has {len(primaries)} primaries: a cluster backup restores into a cluster of the "
            "same shard count (its slot map is assigned shard by shard, keys are not re-routed)"
        )
    owners = _owners(primaries, wanted, target)
    targets = [clustermap.node_target(target, node) for node in owners]
    if not dry_run and not replace:
        _require_empty(targets)
    if not dry_run and not any(node.slots for node in primaries):
        for node_target, ranges in zip(targets, wanted, strict=True):
            args = [str(n) for pair in ranges for n in pair]
            clustermap.ask(node_target, ("CLUSTER", "ADDSLOTSRANGE", *args))
        _wait_ok([clustermap.node_target(target, node) for node in nodes if not node.unusable()])
    results = []
    for index, node_target in enumerate(targets):
        shard = dataclasses.replace(listed, manifest=manifest.shard_view(index))
        results.append(
            single.restore_to_server(
                store, shard, decryption, node_target, "rdb", replace, dry_run, server, force
            )
        )
    if not dry_run:
        _wait_ok([clustermap.node_target(target, node) for node in nodes if not node.unusable()])
        _check_keys(targets, results)
    return _merged(manifest.id, target, results, dry_run)


def _owners(primaries: list[ClusterNode], wanted: list[tuple], target: Target) -> list[ClusterNode]:
    """The primary for each shard: by address in a cluster without slots, else the one whose
    slots are exactly the shard's."""
    if not any(node.slots for node in primaries):
        return sorted(primaries, key=lambda node: (node.host, node.port))
    by_ranges = {clustermap.parse_slots(node.slots)[0]: node for node in primaries}
    missing = [ranges for ranges in wanted if ranges not in by_ranges]
    if missing:
        raise UsageError(
            f"the cluster of {target.where} has its slots assigned otherwise than the backup's "
            "shards: restore into a cluster with no slots assigned (it gets the backup's), or "
            "one whose primaries serve exactly the backup's slot ranges"
        )
    return [by_ranges[ranges] for ranges in wanted]


def _require_empty(targets: list[Target]) -> None:
    for node_target in targets:
        (size,) = clustermap.ask(node_target, ("DBSIZE",))
        if int(size):
            raise UsageError(
                f"{node_target.where} is not empty ({size} keys); restore into an empty cluster, "
                "or pass --replace to overwrite keys that exist in the backup"
            )


def _wait_ok(nodes: list[Target]) -> None:
    deadline = time.monotonic() + STATE_TIMEOUT
    while True:
        states = {}
        for node in nodes:
            try:
                (info,) = clustermap.ask(node, ("CLUSTER", "INFO"))
                states[node.where] = _field(info, "cluster_state")
            except RedkeepError as error:
                states[node.where] = error.message
        bad = {where: state for where, state in states.items() if state != "ok"}
        if not bad:
            return
        if time.monotonic() > deadline:
            listed = ", ".join(f"{where}: {state}" for where, state in bad.items())
            raise RedkeepError(f"the cluster did not reach cluster_state:ok ({listed})")
        time.sleep(0.2)


def _field(info: str, name: str) -> str:
    for line in info.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return ""


def _check_keys(targets: list[Target], results: list[ServerRestoreResult]) -> None:
    """Each primary must hold what its shard restored, less keys with a TTL that may have
    expired since."""
    for index, (node_target, result) in enumerate(zip(targets, results, strict=True)):
        (size,) = clustermap.ask(node_target, ("DBSIZE",))
        restored = sum((result.restored or {}).values())
        may_expire = sum(counts["expires"] for counts in result.plan.values())
        if not restored - may_expire <= int(size) <= restored:
            raise RedkeepError(
                f"shard {index}: {node_target.where} holds {size} keys after the restore, "
                f"{restored} were restored into it"
            )


def _merged(
    backup_id: str, target: Target, results: list[ServerRestoreResult], dry_run: bool
) -> ServerRestoreResult:
    """One result for the whole cluster: keys per database summed over the shards."""

    def total(part: str) -> dict:
        summed: dict = {}
        for result in results:
            for db, value in (getattr(result, part) or {}).items():
                if isinstance(value, dict):
                    into = summed.setdefault(db, {"keys": 0, "expires": 0})
                    into["keys"] += value["keys"]
                    into["expires"] += value["expires"]
                else:
                    summed[db] = summed.get(db, 0) + value
        return summed

    warnings = tuple(w for result in results for w in result.warnings)
    merged = ServerRestoreResult(backup_id, target.display_url, total("plan"), dry_run)
    if dry_run:
        return dataclasses.replace(merged, target_keys=total("target_keys"), warnings=warnings)
    return dataclasses.replace(
        merged,
        restored=total("restored"),
        skipped_expired=sum(result.skipped_expired or 0 for result in results),
        warnings=warnings,
        shards=[
            {"index": index, "to": result.to, "restored": sum((result.restored or {}).values())}
            for index, result in enumerate(results)
        ],
    )
