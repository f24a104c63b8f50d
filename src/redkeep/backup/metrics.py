"""Prometheus textfile metrics of backup runs (for node_exporter's textfile collector).

An alert can fire when `time() - redkeep_backup_last_success_timestamp_seconds` grows, which
catches a job that stopped running, not only one that fails. A failed run keeps the previous
success time.
"""

import re
from pathlib import Path

from redkeep.fsutil import PUBLIC_MODE, atomic_write

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


def previous_success(path: Path, source: str) -> float | None:
    """The last success time recorded for `source` in an existing metrics file."""
    return read_metrics(path, source).get("last_success_timestamp_seconds")


def render_metrics(values: dict[str, float], source: str) -> str:
    lines = []
    for name, value in values.items():
        lines += [
            f"# HELP {PREFIX}{name} {HELP[name]}",
            f"# TYPE {PREFIX}{name} gauge",
            f'{PREFIX}{name}{{source="{source}"}} {value:g}'
            if isinstance(value, int)
            else f'{PREFIX}{name}{{source="{source}"}} {value}',
        ]
    return "\n".join(lines) + "\n"


def write_metrics(
    path: Path, source: str, ok: bool, finished: float, duration: float, size: int
) -> None:
    """Record one run in the textfile at `path` (atomically: the collector never sees half)."""
    success = finished if ok else previous_success(path, source)
    values: dict[str, float] = {}
    if success is not None:
        values["last_success_timestamp_seconds"] = success
    values |= {
        "last_run_timestamp_seconds": finished,
        "last_duration_seconds": round(duration, 3),
        "last_result": 1 if ok else 0,
    }
    if ok:
        values["last_size_bytes"] = size
    atomic_write(path, render_metrics(values, source), PUBLIC_MODE)
