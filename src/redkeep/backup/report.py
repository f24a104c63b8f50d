"""The report of one `backup run`: what `--json` prints, `report.json` holds, the webhook
receives, the metrics record and the text says. Its shape is a contract (docs/json.md).

A run that fails raises `BackupFailed`, which carries the failure report.
"""

from dataclasses import dataclass, replace
from typing import Any

from redkeep.errors import RedkeepError

SUCCESS = "success"
FAILURE = "failure"


@dataclass(frozen=True)
class Notification:
    """How sending the report to one channel went."""

    channel: str  # slack, telegram or webhook
    ok: bool
    error: str | None = None  # the HTTP status or the error type: never the URL

    def to_json(self) -> dict[str, Any]:
        return {"channel": self.channel, "ok": self.ok} | (
            {"error": self.error} if self.error is not None else {}
        )


@dataclass(frozen=True)
class Stored:
    """What a successful run stored (from its manifest)."""

    finished: str
    bytes_stored: int
    bytes_raw: int
    objects: tuple[str, ...]
    encryption: str  # none, age-recipients, age-passphrase, age-recipients+passphrase
    rdb: dict[str, Any]  # the manifest's `rdb` record; {} without an RDB
    keyspace: dict[str, dict[str, int]]  # keys and expires per db before the capture
    cluster: dict[str, Any] | None = None  # a cluster backup: its shards (report_cluster)


@dataclass(frozen=True)
class BackupReport:
    """One run, successful or not.

    `warnings` are the run's own (found while capturing); `problems` are what went wrong
    after it (metrics, cleanup, pruning): both are shown as `warnings`. `notifications` is
    None until the report was sent (report.json and the webhook get it without).
    """

    id: str
    source: str
    dest: str
    type: str  # rdb, aof or both
    started: str
    duration_seconds: float
    stored: Stored | None = None  # None: the run failed
    error: str | None = None
    warnings: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    notifications: tuple[Notification, ...] | None = None
    pruned: tuple[str, ...] | None = None  # ids deleted by the bundle's retention after the run

    @property
    def succeeded(self) -> bool:
        return self.stored is not None

    @property
    def result(self) -> str:
        return SUCCESS if self.succeeded else FAILURE

    @property
    def bytes_stored(self) -> int:
        return self.stored.bytes_stored if self.stored else 0

    @property
    def all_warnings(self) -> tuple[str, ...]:
        return self.warnings + self.problems

    def with_problems(self, *problems: str) -> "BackupReport":
        return replace(self, problems=self.problems + problems)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON data, keys in the order they have always had.

        The run's own warnings follow `started`; without them, warnings from after the run
        follow `notifications`.
        """
        data: dict[str, Any] = {
            "result": self.result,
            "id": self.id,
            "source": self.source,
            "dest": self.dest,
            "type": self.type,
            "started": self.started,
        }
        if self.warnings:
            data["warnings"] = list(self.all_warnings)
        if self.stored is not None:
            data |= {
                "finished": self.stored.finished,
                "duration_seconds": self.duration_seconds,
                "bytes_stored": self.stored.bytes_stored,
                "bytes_raw": self.stored.bytes_raw,
                "objects": list(self.stored.objects),
                "encryption": self.stored.encryption,
                "rdb": self.stored.rdb,
                "keyspace": self.stored.keyspace,
            }
            if self.stored.cluster is not None:
                data["cluster"] = self.stored.cluster
        else:
            data |= {"error": self.error, "duration_seconds": self.duration_seconds}
        if self.notifications is not None:
            data["notifications"] = [result.to_json() for result in self.notifications]
        if self.problems and not self.warnings:
            data["warnings"] = list(self.problems)
        if self.pruned is not None:
            data["pruned"] = list(self.pruned)
        return data


class BackupFailed(RedkeepError):
    """A run failed; `report` is its failure report. Status and kind are the cause's."""

    def __init__(self, cause: RedkeepError, report: BackupReport) -> None:
        super().__init__(cause.message, cause.status, cause.kind)
        self.report = report


def report_cluster(cluster: dict[str, Any]) -> dict[str, Any]:
    """What a run report says about a cluster backup's shards (the manifest has more)."""
    return {
        "attempts": cluster["attempts"],
        "shards": [
            {
                "index": shard["index"],
                "slots": [f"{first}-{last}" for first, last in shard["slots"]],
                "primary": shard["primary"],
                "captured_from": shard["captured_from"],
                "captured_role": shard["captured_role"],
                "capture_reason": shard.get("capture_reason", ""),
                "object": shard["object"],
                "keys": sum(db["keys"] for db in _shard_keyspace(shard).values()),
            }
            for shard in cluster["shards"]
        ],
    }


def _shard_keyspace(shard: dict) -> dict[str, dict[str, int]]:
    """A shard's keys per db: counted in its RDB by a redkeep that did so while capturing,
    else INFO keyspace read on its node just before the capture."""
    return shard["rdb"].get("keyspace") or shard.get("keyspace", {})
