"""The last run of a bundle's backup schedule, for `redkeep status`: run/backup-schedule.json.

Only the schedule (`backup run --every`, which `redkeep up` starts) writes it. The metrics
textfile cannot tell its runs from a one-off run, to another destination say: both record
under the bundle's name, so a manual success would hide that the scheduled runs fail.
"""

import json
from pathlib import Path
from typing import Any

from redkeep.fsutil import SECRET_MODE, atomic_write

NAME = "backup-schedule.json"
FIELDS = ("result", "id", "dest", "error", "duration_seconds")


def write_last_run(path: Path, report: dict[str, Any], finished: float) -> None:
    """Record a run's result (from its report) and when it finished (Unix time)."""
    record = {key: report[key] for key in FIELDS if key in report} | {"finished": finished}
    atomic_write(path, json.dumps(record, default=str) + "\n", SECRET_MODE)


def read_last_run(path: Path) -> dict[str, Any] | None:
    """The recorded run, or None if there is none (or it cannot be read)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("finished"), int | float):
        return None
    return record
