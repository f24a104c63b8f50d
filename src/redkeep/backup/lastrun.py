"""The last run of a bundle's backup schedule, for `redkeep status`: run/backup-schedule.json.

Only the schedule (`backup run --every`, which `redkeep up` starts) writes it. The metrics
textfile cannot tell its runs from a one-off run, to another destination say: both record
under the bundle's name, so a manual success would hide that the scheduled runs fail.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redkeep.fsutil import SECRET_MODE, atomic_write

if TYPE_CHECKING:
    from redkeep.backup.report import BackupReport

NAME = "backup-schedule.json"


@dataclass(frozen=True)
class LastRun:
    """A run's result, from its report, and when it finished (Unix time)."""

    result: str | None  # success or failure
    finished: float
    id: str | None = None
    dest: str | None = None
    error: str | None = None  # a failure's one-line error
    duration_seconds: float | None = None

    @classmethod
    def of(cls, report: "BackupReport", finished: float) -> "LastRun":
        return cls(
            report.result,
            finished,
            report.id,
            report.dest,
            report.error,
            report.duration_seconds,
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"result": self.result, "id": self.id, "dest": self.dest}
        if self.error is not None:
            data["error"] = self.error
        return data | {"duration_seconds": self.duration_seconds, "finished": self.finished}

    @classmethod
    def from_json(cls, text: str) -> "LastRun":
        """Parse the file; raise ValueError for anything that is not a record of a run."""
        record = json.loads(text)
        if not isinstance(record, dict) or not _is_number(record.get("finished")):
            raise ValueError("not a record of a backup run")
        strings = {key: record.get(key) for key in ("result", "id", "dest", "error")}
        duration = record.get("duration_seconds")
        if not all(v is None or isinstance(v, str) for v in strings.values()) or not (
            duration is None or _is_number(duration)
        ):
            raise ValueError("a field of the record has the wrong type")
        return cls(finished=record["finished"], duration_seconds=duration, **strings)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def write_last_run(path: Path, report: "BackupReport", finished: float) -> None:
    """Record the run `report` describes, finished at Unix time `finished`."""
    record = LastRun.of(report, finished)
    atomic_write(path, json.dumps(record.to_json(), default=str) + "\n", SECRET_MODE)


def read_last_run(path: Path) -> LastRun | None:
    """The recorded run, or None if there is none (or it cannot be read)."""
    try:
        return LastRun.from_json(path.read_text())
    except (OSError, ValueError):
        return None
