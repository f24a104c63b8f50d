"""Prometheus textfile metrics of backup runs (for node_exporter's textfile collector).

An alert can fire when `time() - redkeep_backup_last_success_timestamp_seconds` grows, which
catches a job that stopped running, not only one that fails. A failed run keeps the previous
success time.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from redkeep.exporter.exposition import Family, read_textfile, write_textfile

if TYPE_CHECKING:
    from redkeep.backup.report import BackupReport

PREFIX = "redkeep_backup_"
HELP = {
    "last_success_timestamp_seconds": "Unix time of the last successful backup.",
    "last_run_timestamp_seconds": "Unix time the last backup run finished.",
    "last_duration_seconds": "Duration of the last backup run.",
    "last_size_bytes": "Bytes stored by the last successful backup.",
    "last_result": "1 if the last backup run succeeded, 0 if it failed.",
}


def read_metrics(path: Path, source: str) -> dict[str, float]:
    """The values recorded for `source` in an existing metrics file ({} if there is none)."""
    return {
        family.name.removeprefix(PREFIX): value
        for family in read_textfile(path, PREFIX)
        for _, labels, value in family.samples
        if labels == {"source": source}
    }


@dataclass(frozen=True)
class LastRuns:
    """What the textfile says about a source's last runs (None: not recorded)."""

    last_success: float | None = None  # Unix time
    last_run: float | None = None
    last_ok: bool | None = None

    @classmethod
    def read(cls, path: Path, source: str) -> "LastRuns":
        values = read_metrics(path, source)
        result = values.get("last_result")
        return cls(
            last_success=values.get("last_success_timestamp_seconds"),
            last_run=values.get("last_run_timestamp_seconds"),
            last_ok=None if result is None else result == 1,
        )


def write_metrics(
    path: Path, source: str, ok: bool, finished: float, duration: float, size: int
) -> None:
    """Record one run of `source` in the textfile at `path`, keeping other sources' series.

    Written atomically: the collector never reads half a file.
    """
    old = read_metrics(path, source)
    success = finished if ok else old.get("last_success_timestamp_seconds")
    values: dict[str, float] = {}
    if success is not None:
        values["last_success_timestamp_seconds"] = success
    values |= {
        "last_run_timestamp_seconds": finished,
        "last_duration_seconds": round(duration, 3),
        "last_result": 1 if ok else 0,
    }
    size_bytes = size if ok else old.get("last_size_bytes")
    if size_bytes is not None:
        values["last_size_bytes"] = size_bytes
    families = {PREFIX + name: Family(PREFIX + name, "gauge", text) for name, text in HELP.items()}
    for family in read_textfile(path, PREFIX):
        if family.name in families:
            for _, labels, value in family.samples:
                if labels.get("source") != source:
                    families[family.name].add(value, labels)
    for name, value in values.items():
        families[PREFIX + name].add(value, {"source": source})
    for family in families.values():
        family.samples.sort(key=lambda sample: sample[1].get("source", ""))
    write_textfile(path, families.values())


def record_run(path: Path, report: "BackupReport", finished: float) -> None:
    """Record the run `report` describes, finished at Unix time `finished`."""
    write_metrics(
        path,
        report.source,
        report.succeeded,
        finished,
        report.duration_seconds,
        report.bytes_stored,
    )
