"""What `backup verify`, `restore` and `prune` found and did, as typed results.

Each has one `to_json()`: the `--json` output, a contract (docs/json.md). A stored
`verify.json` is read back as a `Verdict`.
"""

import json
from dataclasses import dataclass
from typing import Any

from redkeep.backup.rdb import RdbCheck

Keyspace = dict[str, dict[str, int]]  # {"db0": {"keys": 3, "expires": 1}}

VERIFIED_OK = "ok"
VERIFY_FAILED = "failed"


@dataclass(frozen=True)
class DrillCheck:
    """What the restore drill loaded, against what the backup should hold."""

    keyspace: Keyspace
    expected_from: str  # "snapshot" or "server INFO"
    expired_since_capture: int
    sampled_keys: int  # keys that went through DUMP/RESTORE and came back the same

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ObjectChecks:
    """The checks one object of a backup passed."""

    drill: DrillCheck
    rdb: RdbCheck | None = None  # an RDB: its header, version and CRC64
    rdb_checker: str | None = None  # an RDB: "ok" from the drill server's own checker

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"sha256": "ok"}
        if self.rdb is not None:
            data["rdb"] = self.rdb.as_dict()
            data["redis_check_rdb"] = self.rdb_checker
        return data | {"drill": self.drill.to_json()}


@dataclass(frozen=True)
class VerifyResult:
    """The verdict of `backup verify` on one backup; `verify.json` holds its JSON, without
    `record_error` (why that could not be written)."""

    id: str
    source: str
    drill_server: str  # "redis 7.0.15"
    verified_at: str
    objects: dict[str, ObjectChecks]  # the objects checked before a failure, or all
    error: str | None = None  # the damage found; None: verified
    record_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "source": self.source,
            "objects": {name: checks.to_json() for name, checks in self.objects.items()},
            "drill_server": self.drill_server,
            "result": VERIFIED_OK if self.ok else VERIFY_FAILED,
        }
        if self.error is not None:
            data["error"] = self.error
        data["verified_at"] = self.verified_at
        if self.record_error is not None:
            data["record_error"] = self.record_error
        return data


@dataclass(frozen=True)
class Verdict:
    """What a stored verify.json says: all that `list`, `prune` and `restore` read back."""

    result: str
    verified_at: str = "?"
    error: str = "?"

    @property
    def ok(self) -> bool:
        return self.result == VERIFIED_OK

    @property
    def failed(self) -> bool:
        return self.result == VERIFY_FAILED

    @classmethod
    def from_json(cls, data: bytes) -> "Verdict":
        """Parse verify.json; raise ValueError for anything that is not a verdict."""
        record = json.loads(data)
        if not isinstance(record, dict):
            raise ValueError("verify.json is not a JSON object")
        return cls(
            result=str(record.get("result")),
            verified_at=str(record.get("verified_at", "?")),
            error=str(record.get("error", "?")),
        )


@dataclass(frozen=True)
class FileRestoreResult:
    """`restore --to-file`: what was written (or, with --dry-run, would be)."""

    id: str
    to: str
    content: str  # rdb or aof
    bytes: int  # the size of the RDB, or of the AOF tar
    warnings: tuple[str, ...] = ()
    dry_run: bool = False
    rdb: RdbCheck | None = None  # the RDB's check, once written

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "to": self.to,
            "content": self.content,
            "bytes": self.bytes,
            "warnings": list(self.warnings),
        }
        if self.dry_run:
            data["dry_run"] = True
        if self.rdb is not None:
            data["rdb"] = self.rdb.as_dict()
        return data


@dataclass(frozen=True)
class ServerRestoreResult:
    """`restore --to-url`: the keys per db the backup holds, and what was copied."""

    id: str
    to: str  # the target's URL, without a password
    plan: Keyspace
    dry_run: bool
    warnings: tuple[str, ...] = ()
    target_keys: Keyspace | None = None  # a dry run: what the target holds now
    restored: dict[str, int] | None = None  # keys written per db
    skipped_expired: int = 0  # keys that expired while they were copied
    shards: list[dict[str, Any]] | None = None  # a cluster backup: where each shard went

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "to": self.to,
            "plan": self.plan,
            "dry_run": self.dry_run,
        }
        if self.dry_run:
            data["target_keys"] = self.target_keys
        else:
            data |= {"restored": self.restored, "skipped_expired": self.skipped_expired}
        if self.shards is not None:
            data["shards"] = self.shards
        return data | {"warnings": list(self.warnings)}


RestoreResult = FileRestoreResult | ServerRestoreResult


@dataclass(frozen=True)
class PruneDecision:
    """Keep or delete one backup, and why."""

    source: str
    id: str
    time: str
    keep: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "id": self.id,
            "time": self.time,
            "action": "keep" if self.keep else "delete",
            "reason": self.reason,
        }


@dataclass(frozen=True)
class PruneResult:
    """What retention kept and deleted (or, with --dry-run, would delete)."""

    decisions: tuple[PruneDecision, ...]
    dry_run: bool

    @property
    def deleted(self) -> tuple[str, ...]:
        return tuple(decision.id for decision in self.decisions if not decision.keep)

    def to_json(self) -> list[dict[str, Any]]:
        return [decision.to_json() for decision in self.decisions]
