"""What a store holds: `backup list`, finding one backup, and `backup prune`."""

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redkeep.backup import retention
from redkeep.backup.manifest import MANIFEST, VERIFIED, Manifest, object_key, time_of
from redkeep.backup.stores import Store
from redkeep.errors import DamagedBackup, RedkeepError, StoreError

if TYPE_CHECKING:
    from redkeep.backup.results import PruneResult


@dataclass(frozen=True)
class Listed:
    """One backup in a store: a row of `backup list`."""

    source: str
    id: str
    time: dt.datetime
    objects: dict[str, int]  # name -> size stored
    manifest: Manifest | None = None  # None: incomplete, or damaged
    verified: bool = False
    problem: str = ""  # why a damaged manifest cannot be used

    @property
    def complete(self) -> bool:
        return self.manifest is not None

    @property
    def damaged(self) -> bool:
        return bool(self.problem)

    @property
    def type(self) -> str:
        return self.manifest.type if self.manifest else "?"

    @property
    def size(self) -> int:
        if self.manifest:
            return sum(item.size for item in self.manifest.objects)
        return sum(self.objects.values())

    @property
    def encrypted(self) -> bool:
        return bool(self.manifest and self.manifest.encryption.get("mode", "none") != "none")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "time": self.time.isoformat(),
            "type": self.type,
            "size": self.size,
            "encrypted": self.encrypted,
            "verified": self.verified,
            "complete": self.complete,
            "damaged": self.damaged,
            **({"problem": self.problem} if self.problem else {}),
            **(
                {"shards": len(self.manifest.shards)}
                if self.manifest and self.manifest.cluster
                else {}
            ),
        }


def list_backups(store: Store, source: str | None = None) -> list[Listed]:
    """Every backup in `store` (of `source`), oldest first; incomplete ones are marked."""
    groups: dict[tuple[str, str], dict[str, int]] = {}
    for key, size in store.list_objects(f"{source}/" if source else "").items():
        parts = key.split("/")
        if len(parts) == 3:
            groups.setdefault((parts[0], parts[1]), {})[parts[2]] = size
    found = []
    for (src, backup_id), objects in groups.items():
        try:
            started = time_of(backup_id)
        except ValueError:
            continue  # not ours
        found.append(_listed(store, src, backup_id, started, objects))
    return sorted(found, key=lambda item: (item.source, item.time, item.id))


def _listed(
    store: Store, source: str, backup_id: str, started: dt.datetime, objects: dict[str, int]
) -> Listed:
    if MANIFEST not in objects:
        return Listed(source, backup_id, started, objects)
    try:
        manifest = Manifest.from_json(store.get_bytes(object_key(source, backup_id, MANIFEST)))
        manifest.check_identity(source, backup_id)
    except DamagedBackup as error:  # unusable, but it must not hide the other backups
        return Listed(source, backup_id, started, objects, problem=error.message)
    # The manifest's start time has microseconds: two backups in one second still order.
    verified = _verified(store, source, backup_id, objects)
    return Listed(source, backup_id, manifest.started, objects, manifest, verified)


def _verified(store: Store, source: str, backup_id: str, objects: dict[str, int]) -> bool:
    if VERIFIED not in objects:
        return False
    from redkeep.backup.results import Verdict  # noqa: PLC0415 - only verified backups need it

    try:
        return Verdict.from_json(store.get_bytes(object_key(source, backup_id, VERIFIED))).ok
    except (ValueError, StoreError):
        return False


def find_backup(store: Store, source: str | None, backup_id: str) -> Listed:
    """The complete backup `backup_id` (or `latest`) of `source`; raise if there is none."""
    complete = [item for item in list_backups(store, source) if item.complete]
    if backup_id == "latest":
        if not complete:
            raise RedkeepError(
                f"no complete backup in {store.url}" + (f" for {source}" if source else "")
            )
        return max(complete, key=lambda item: item.time)
    for item in complete:
        if item.id == backup_id:
            return item
    for item in list_backups(store, source):
        if item.id == backup_id:
            why = item.problem if item.damaged else "it is incomplete (no manifest)"
            raise RedkeepError(f"backup {backup_id} cannot be used: {why}")
    raise RedkeepError(f"no backup {backup_id} in {store.url}; `redkeep backup list` shows them")


def prune(
    store: Store, source: str | None, policy: retention.Policy, now: dt.datetime, dry_run: bool
) -> "PruneResult":
    """Apply `policy` to each source separately; delete (unless `dry_run`) what it drops."""
    from redkeep.backup.results import PruneDecision, PruneResult  # noqa: PLC0415 - see _verified

    retention.require(policy)
    by_source: dict[str, list[Listed]] = {}
    for item in list_backups(store, source):
        by_source.setdefault(item.source, []).append(item)
    decisions = []
    for src, items in by_source.items():
        index = {item.id: item for item in items}
        entries = [retention.Backup(i.id, i.time, i.complete, i.verified) for i in items]
        for decision in retention.plan(entries, policy, now):
            item = index[decision.backup.id]
            if not decision.keep and not dry_run:
                _delete_backup(store, item)
            decisions.append(
                PruneDecision(src, item.id, item.time.isoformat(), decision.keep, decision.reason)
            )
    return PruneResult(tuple(decisions), dry_run)


def _delete_backup(store: Store, item: Listed) -> None:
    if not item.complete:  # all of it, with what a killed run left: temp files, uploads
        store.discard(object_key(item.source, item.id, ""))
        return
    # The manifest goes first: a half-deleted backup is then incomplete, not broken.
    for name in sorted(item.objects, key=lambda name: name != MANIFEST):
        store.delete([object_key(item.source, item.id, name)])
