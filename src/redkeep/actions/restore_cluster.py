"""`redkeep backup restore ID --to-url NODE` of a cluster backup: into a cluster of as many
primaries as the backup has shards.

Everything that can be checked is checked before the first key is written: every shard is
downloaded and loaded once in a drill server, where its keys per db must be its manifest's and
every key must hash into its shard's slots (a shard file swapped with another's, or an edited
slot map, would otherwise be written in part and then answered MOVED). A fresh node that loads
a shard's RDB claims only the slots that hold keys, and the cluster stays down; so the slots
are assigned next, from the backup's slot map: in a cluster with no slots yet, shard k's ranges
go to its k-th primary (ordered by address) with CLUSTER ADDSLOTSRANGE; a cluster whose slots
already match the backup's shards one to one takes each shard's data where its slots are. Then
each primary is checked for its shard (restore_preflight: RDB version, memory, client limits),
and only then is each shard copied into it (drill server, DUMP/RESTORE, TTLs kept). A copy that
breaks off says which shards were written, which partly, which not.

With --replace, keys of the backup overwrite the cluster's and keys the backup does not hold
are left alone (as for one server); afterwards each primary must hold its shard's keys and at
most the keys it held before.

A cluster with another number of primaries, or slots assigned otherwise, is refused with the
reason: re-routing keys by slot is possible but would hide a topology mistake, and the issue
asked for one of the two (docs/backups.md).
"""

import dataclasses
import re
import time
from pathlib import Path

import redis

from redkeep.actions import restore as single
from redkeep.actions.backup_catalog import Listed
from redkeep.actions.restore_preflight import ClientLimits, require_target_reads
from redkeep.backup import clustermap, drill
from redkeep.backup.clustermap import coverage_problem
from redkeep.backup.manifest import Manifest
from redkeep.backup.results import ServerRestoreResult
from redkeep.backup.stores import Store
from redkeep.backup.unpack import Decryption, Staged, require_readable
from redkeep.errors import DamagedBackup, RedkeepError, UsageError
from redkeep.redis.client import explain_failure, session
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
    held = [single.target_keyspace(node_target) for node_target in targets]
    counts = [sum(db["keys"] for db in keyspace.values()) for keyspace in held]
    if not dry_run and not replace and any(counts):
        where, size = next((t.where, n) for t, n in zip(targets, counts, strict=True) if n)
        raise UsageError(
            f"{where} is not empty ({size} keys); restore into an empty cluster, or pass "
            "--replace to overwrite keys that exist in the backup (others are left alone)"
        )
    warnings = single.refuse_failed_verdict(store, manifest, force)
    identities = decryption.for_backup(store, manifest)
    everyone = [clustermap.node_target(target, node) for node in nodes if not node.unusable()]
    workdir = drill.scratch_dir()
    try:
        staged, plans = _check_shards(store, manifest, identities, workdir, server, force)
        warnings += tuple(w for _, more, _ in staged for w in more)
        if dry_run:
            return _merged(manifest.id, target, plans, held, dry_run=True, warnings=warnings)
        assigning = not any(node.slots for node in primaries)
        if assigning:
            for node_target, ranges in zip(targets, wanted, strict=True):
                args = [str(n) for pair in ranges for n in pair]
                clustermap.ask(node_target, ("CLUSTER", "ADDSLOTSRANGE", *args))
            _wait_ok(everyone)
        limits = _check_targets(manifest, targets, staged, workdir, server, assigning)
        results = _copy_shards(manifest, targets, staged, workdir, server, replace, limits)
    except redis.RedisError as error:
        raise explain_failure(error, target, "RESTORE") from None
    finally:
        drill.remove(workdir)
    _wait_ok(everyone)
    _check_keys(targets, results, counts)
    warnings += tuple(w for limit in limits for w in limit.warnings)
    return _merged(manifest.id, target, results, held, dry_run=False, warnings=warnings)


def _check_shards(
    store: Store,
    manifest: Manifest,
    identities: list,
    workdir: Path,
    server: drill.ServerBinary,
    force: bool,
) -> tuple[list[tuple[Staged, tuple[str, ...], int]], list[dict]]:
    """Download every shard into `workdir/shard-<k>` and load it once, before anything is
    written to the cluster: its keys per db must be its manifest's, and every key must hash
    into its shard's slots (a swapped shard file or an edited slot map would be MOVED midway).
    Returns each shard's staged file and warnings, and its keys per db."""
    staged, plans = [], []
    for index, shard in enumerate(manifest.shards):
        view = manifest.shard_view(index)
        require_readable(server, view, "restore")
        data = workdir / f"shard-{index}"
        data.mkdir()
        item = single.object_to_restore(view, "rdb")
        one = single.stage_checked(store, view, item, identities, data, force)
        with single.load(data, one[0], one[2], server) as drilled:
            plan = drill.keyspace(drilled.client())
            ranges = [(first, last) for first, last in shard["slots"]]
            dbs = [int(db[2:]) for db in plan]
            drill.require_keys_in_slots(drilled, ranges, f"shard {index} of the backup", dbs)
        staged.append(one)
        plans.append(plan)
    return staged, plans


def _check_targets(
    manifest: Manifest,
    targets: list[Target],
    staged: list[tuple[Staged, tuple[str, ...], int]],
    workdir: Path,
    server: drill.ServerBinary,
    assigned: bool,
) -> list[ClientLimits]:
    """Each primary can read and hold its shard (restore_preflight), checked for every shard
    before the first key is written."""
    limits = []
    for index, node_target in enumerate(targets):
        view = manifest.shard_view(index)
        data = workdir / f"shard-{index}"
        try:
            with session(node_target) as client:
                require_target_reads(client, node_target, view)
            with single.load(data, staged[index][0], staged[index][2], server) as drilled:
                plan = drill.keyspace(drilled.client())
                limits.append(single.check_target(node_target, drilled, plan))
        except (RedkeepError, redis.RedisError) as error:
            message = error.message if isinstance(error, RedkeepError) else str(error)
            done = "the slots were assigned from the backup's slot map, " if assigned else ""
            why = f"shard {index} into {node_target.where}: {message}; {done}no key was written"
            if isinstance(error, RedkeepError):
                raise RedkeepError(why, error.status, error.kind) from None
            raise RedkeepError(why) from None
    return limits


def _copy_shards(
    manifest: Manifest,
    targets: list[Target],
    staged: list[tuple[Staged, tuple[str, ...], int]],
    workdir: Path,
    server: drill.ServerBinary,
    replace: bool,
    limits: list[ClientLimits],
) -> list[dict]:
    """Copy shard by shard; a failure says which shards were written, which partly, which not."""
    results: list[dict] = []
    for index, node_target in enumerate(targets):
        data = workdir / f"shard-{index}"
        try:
            with single.load(data, staged[index][0], staged[index][2], server) as drilled:
                plan = drill.keyspace(drilled.client())
                copied = single.copy_into(node_target, drilled, plan, replace, limits[index])
        except (RedkeepError, redis.RedisError) as error:
            raise RedkeepError(_broke_off(index, node_target, error, targets, results)) from None
        results.append(
            {
                "to": node_target.display_url,
                "plan": plan,
                "restored": copied.keys,
                "skipped": copied.skipped_expired,
            }
        )
    return results


def _broke_off(
    index: int, node_target: Target, error: Exception, targets: list[Target], done: list
) -> str:
    """Which shards a restore that failed at shard `index` wrote, and what to do."""
    message = error.message if isinstance(error, RedkeepError) else str(error)
    # The single-server copy ends its message with what it wrote into this one node.
    here = "none of its keys written"
    found = re.search(r"; (nothing was written|(\d+) keys were written)", message)
    if found:
        message = message[: found.start()]
        here = f"{found[2]} keys written (perhaps more of its last batch)" if found[2] else here
    # redis-py drops the MOVED code from the reply's text: "<slot> <host>:<port>" is left.
    moved = re.search(r"failed: (?:MOVED )?(\d+) (\S+:\d+)", message)
    if moved:
        message += (
            f" (a MOVED redirect: slot {moved[1]} is served by {moved[2]}, not by "
            f"{node_target.where}, in that node's view: the cluster's slots changed, or its "
            "nodes disagree about them)"
        )
    written = ", ".join(f"shard {k} into {targets[k].where}" for k in range(len(done)))
    untouched = ", ".join(f"shard {k}" for k in range(index + 1, len(targets)))
    return (
        f"the cluster restore broke off at shard {index} into {node_target.where}: {message}. "
        f"Written completely: {written or 'no shard'}; shard {index}: {here}; not written: "
        f"{untouched or 'no shard'}. The cluster holds part of the backup: fix the cause, then "
        "restore again with --replace (it overwrites the backup's keys, leaves others alone)"
    )


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


def _check_keys(targets: list[Target], results: list[dict], held: list[int]) -> None:
    """Each primary must hold what its shard restored (less keys with a TTL that may have
    expired since), plus at most the keys it held before (--replace leaves those alone)."""
    for index, (node_target, result) in enumerate(zip(targets, results, strict=True)):
        (size,) = clustermap.ask(node_target, ("DBSIZE",))
        restored = sum(result["restored"].values())
        may_expire = sum(counts["expires"] for counts in result["plan"].values())
        if not restored - may_expire <= int(size) <= restored + held[index]:
            raise RedkeepError(
                f"shard {index}: {node_target.where} holds {size} keys after the restore, "
                f"{restored} were restored into it and it held {held[index]} before"
            )


def _merged(
    backup_id: str,
    target: Target,
    results: list[dict],
    held: list[dict],
    dry_run: bool,
    warnings: tuple[str, ...],
) -> ServerRestoreResult:
    """One result for the whole cluster: keys per database summed over the shards (`results`
    are the shards' plans with a dry run)."""
    plans = [result["plan"] for result in results] if not dry_run else results

    def summed(keyspaces) -> dict:
        total: dict = {}
        for keyspace in keyspaces:
            for db, value in keyspace.items():
                if isinstance(value, dict):
                    into = total.setdefault(db, {"keys": 0, "expires": 0})
                    into["keys"] += value["keys"]
                    into["expires"] += value["expires"]
                else:
                    total[db] = total.get(db, 0) + value
        return total

    merged = ServerRestoreResult(backup_id, target.display_url, summed(plans), dry_run)
    if dry_run:
        return dataclasses.replace(merged, target_keys=summed(held), warnings=warnings)
    return dataclasses.replace(
        merged,
        restored=summed(result["restored"] for result in results),
        skipped_expired=sum(result["skipped"] for result in results),
        warnings=warnings,
        shards=[
            {"index": index, "to": result["to"], "restored": sum(result["restored"].values())}
            for index, result in enumerate(results)
        ],
    )
