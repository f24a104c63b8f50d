"""Prometheus textfile metrics of backup runs (for node_exporter's textfile collector).

An alert can fire when `time() - redkeep_backup_last_success_timestamp_seconds` grows, which
catches a job that stopped running, not only one that fails. A failed run keeps the previous
success time.
"""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from redkeep.fsutil import PUBLIC_MODE, atomic_write

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
    if not path.exists():
        return {}
    pattern = re.compile(rf'^{PREFIX}(\w+)\{{source="{re.escape(source)}"\}} (\S+)$')
    values = {}
    for line in path.read_text().splitlines():
        match = pattern.match(line)
        if match:
            values[match[1]] = float(match[2])
    return values


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


def render_metrics(values: dict[str, float], source: str) -> list[str]:
    """Sample lines for one source (HELP/TYPE are added once per file by write_metrics)."""
    label = source.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return [f'{PREFIX}{name}{{source="{label}"}} {value}' for name, value in values.items()]


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
    ours = f'{{source="{source}"}}'
    others = [
        line
        for line in (path.read_text().splitlines() if path.exists() else [])
        if line.startswith(PREFIX) and ours not in line
    ]
    samples = sorted(others + render_metrics(values, source))
    lines = []
    for name, text in HELP.items():
        lines += [f"# HELP {PREFIX}{name} {text}", f"# TYPE {PREFIX}{name} gauge"]
        lines += [line for line in samples if line.startswith(f"{PREFIX}{name}{{")]
    atomic_write(path, "\n".join(lines) + "\n", PUBLIC_MODE)


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
