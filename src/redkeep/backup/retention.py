"""Which backups to keep: last N, daily/weekly/monthly (GFS), and a maximum age.

Pure: given backups and a clock, decide. A backup is kept when any rule selects it; the
newest complete backup and the newest verified one are always kept, whatever the policy.
Incomplete backups (no manifest) are removed once older than a day (a run may still be writing).
"""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from redkeep.errors import UsageError

INCOMPLETE_GRACE = dt.timedelta(days=1)


@dataclass(frozen=True)
class Policy:
    keep_last: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    max_age_days: int | None = None

    def empty(self) -> bool:
        return all(value is None for value in self.__dict__.values())


@dataclass(frozen=True)
class Backup:
    id: str
    time: dt.datetime
    complete: bool
    verified: bool


@dataclass(frozen=True)
class Decision:
    backup: Backup
    keep: bool
    reason: str


PERIODS: dict[str, Callable[[dt.datetime], tuple]] = {
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar()[:2]),
    "monthly": lambda t: (t.year, t.month),
}


def require(policy: Policy) -> None:
    """Raise UsageError for a policy that keeps nothing in particular (it would delete all)."""
    if policy.empty():
        raise UsageError(
            "no retention policy: pass --keep-last, --keep-daily/weekly/monthly or --max-age "
            "(or set backup.retention in redkeep.yaml)"
        )


def plan(backups: list[Backup], policy: Policy, now: dt.datetime) -> list[Decision]:
    """Decide keep or delete for every backup of one source, newest first, with reasons."""
    require(policy)
    ordered = sorted(backups, key=lambda b: b.time, reverse=True)
    reasons = _kept([backup for backup in ordered if backup.complete], policy, now)
    decisions = []
    for backup in ordered:
        if not backup.complete:
            young = now - backup.time < INCOMPLETE_GRACE
            reason = "incomplete, may still be running" if young else "incomplete (no manifest)"
            decisions.append(Decision(backup, young, reason))
        elif backup.id in reasons:
            decisions.append(Decision(backup, True, reasons[backup.id]))
        else:
            decisions.append(Decision(backup, False, "not selected by any rule"))
    return decisions


def _kept(complete: list[Backup], policy: Policy, now: dt.datetime) -> dict[str, str]:
    """{id: the first reason to keep it} for complete backups, newest first."""
    reasons: dict[str, str] = {}
    selections: list[tuple[str, list[Backup]]] = [
        ("newest backup", complete[:1]),
        ("newest verified backup", [b for b in complete if b.verified][:1]),
        (f"one of the last {policy.keep_last}", complete[: policy.keep_last or 0]),
    ]
    for period, key in PERIODS.items():
        count = getattr(policy, f"keep_{period}") or 0
        selections.append((f"{period} ({count})", _newest_per_period(complete, key, count)))
    if policy.max_age_days is not None:
        limit = now - dt.timedelta(days=policy.max_age_days)
        young = [backup for backup in complete if backup.time >= limit]
        selections.append((f"younger than {policy.max_age_days} days", young))
    for reason, chosen in selections:
        for backup in chosen:
            reasons.setdefault(backup.id, reason)
    return reasons


def _newest_per_period(
    complete: list[Backup], key: Callable[[dt.datetime], tuple], count: int
) -> list[Backup]:
    """The newest backup of each of the `count` most recent periods that have one."""
    chosen: list[Backup] = []
    seen: set[tuple] = set()
    for backup in complete:  # newest first
        period = key(backup.time)
        if period not in seen:
            if len(seen) == count:
                break
            seen.add(period)
            chosen.append(backup)
    return chosen
