import datetime as dt

import pytest

from redkeep.backup.retention import Backup, Policy, plan
from redkeep.errors import UsageError

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def history(days: int, per_day: int = 1, verified: set[int] | None = None) -> list[Backup]:
    """One backup per day (or several), at 01:00 + n hours, going back `days` days."""
    backups = []
    for day in range(days):
        for n in range(per_day):
            when = NOW - dt.timedelta(days=day) - dt.timedelta(hours=11 - n)
            backup_id = when.strftime("%Y%m%dT%H%M%SZ")
            backups.append(Backup(backup_id, when, True, day in (verified or set())))
    return backups


def kept(decisions):
    return [d.backup.id for d in decisions if d.keep]


def test_keep_last():
    decisions = plan(history(10), Policy(keep_last=3), NOW)
    assert len(kept(decisions)) == 3
    assert kept(decisions) == [d.backup.id for d in decisions[:3]]
    assert decisions[5].reason == "not selected by any rule"


def test_daily_keeps_the_newest_of_each_day():
    decisions = plan(history(5, per_day=3), Policy(keep_daily=2), NOW)
    chosen = [d.backup for d in decisions if d.keep]
    assert len(chosen) == 2
    assert chosen[0].time.date() == NOW.date()
    assert chosen[0].time.hour == 3  # the newest of that day (01:00 + 2h)
    assert chosen[1].time.date() == (NOW - dt.timedelta(days=1)).date()


def test_gfs_weekly_and_monthly():
    # NOW is Friday 2026-11-27; one backup a day at 01:00 for 120 days.
    decisions = plan(history(120), Policy(keep_daily=7, keep_weekly=4, keep_monthly=3), NOW)
    days = sorted(d.backup.time.strftime("%m-%d") for d in decisions if d.keep)
    daily = ["11-21", "11-22", "11-23", "11-24", "11-25", "11-26", "11-27"]
    weekly = ["11-08", "11-15"]  # ISO weeks ending Nov 15 and Nov 8 (Nov 22, 27 are daily)
    monthly = ["09-30", "10-31"]  # November's newest is today's
    assert days == sorted(daily + weekly + monthly)


def test_max_age_is_the_plans_retention_by_days():
    decisions = plan(history(15), Policy(max_age_days=7), NOW)
    assert all(d.keep == (NOW - d.backup.time <= dt.timedelta(days=7)) for d in decisions)


def test_the_newest_verified_backup_is_never_deleted():
    decisions = plan(history(30, verified={20}), Policy(keep_last=2), NOW)
    reasons = {d.reason for d in decisions if d.keep}
    assert "newest verified backup" in reasons
    assert len(kept(decisions)) == 3


def test_incomplete_backups_go_after_a_day_and_never_count():
    backups = history(3) + [
        Backup("young", NOW - dt.timedelta(hours=1), False, False),
        Backup("old", NOW - dt.timedelta(days=2), False, False),
    ]
    decisions = {d.backup.id: d for d in plan(backups, Policy(keep_last=1), NOW)}
    assert decisions["young"].keep and "still be running" in decisions["young"].reason
    assert not decisions["old"].keep and "incomplete" in decisions["old"].reason


def test_no_policy_is_an_error():
    with pytest.raises(UsageError, match="no retention policy"):
        plan(history(3), Policy(), NOW)
