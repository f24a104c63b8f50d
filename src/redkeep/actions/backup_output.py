"""How the results of `redkeep backup` are shown: text and tables, or `to_json()` with --json.

Warnings go to stderr in both modes; stdout holds either the text or one JSON document.
"""

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from redkeep.app import Application
from redkeep.backup.report import BackupReport

if TYPE_CHECKING:  # a run needs none of them: it starts faster without
    from redkeep.actions.backup_catalog import Listed
    from redkeep.backup.results import ObjectChecks, PruneResult, RestoreResult, VerifyResult

MIB = 1 << 20


def show_run(app: Application, report: BackupReport, where: str) -> None:
    """A successful run: warnings, failed notifications, then one line and where it is."""
    for warning in report.all_warnings:
        app.warn(warning)
    for sent in report.notifications or ():
        if not sent.ok:
            app.warn(f"{sent.channel} notification failed: {sent.error}")
    if app.json_mode:
        app.emit_json(report.to_json())
        return
    stored = report.stored
    assert stored is not None
    app.say(
        f"backup {report.id} of {report.source}: {report.type}, "
        f"{stored.bytes_stored / MIB:.2f} MiB stored in {report.duration_seconds:.1f}s, "
        f"encryption {stored.encryption}, RDB checksum {stored.rdb.get('checksum', 'n/a')}"
    )
    app.say(f"in {where}/{report.source}/{report.id}")
    for shard in (stored.cluster or {}).get("shards", []):
        app.say(
            f"  shard {shard['index']} (slots {','.join(shard['slots'])}): {shard['keys']} keys "
            f"from the {shard['captured_role']} {shard['captured_from']} "
            f"({shard['capture_reason'] or 'why: not recorded'})"
        )
    if report.pruned:
        app.say(f"pruned {len(report.pruned)} old backup(s)")


@contextlib.contextmanager
def progress_bar(app: Application) -> Iterator[Callable[[int], None] | None]:
    """A transfer progress bar on a terminal; nothing in scripts, logs or JSON mode."""
    if app.json_mode or not app.stdout.isatty():
        yield None
        return
    from rich.progress import (  # noqa: PLC0415 - only on a terminal
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    columns = (TextColumn("capturing"), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("capture", total=None)
        yield lambda size: bar.advance(task, size)


def show_list(app: Application, backups: "list[Listed]") -> None:
    if app.json_mode:
        app.emit_json([item.to_json() for item in backups])
        return
    app.table(
        ("id", "source", "time", "type", "size", "encrypted", "verified", "complete"),
        [
            (
                item.id,
                item.source,
                item.time.isoformat()[:19].replace("T", " "),
                _type(item),
                _size(item.size),
                _yes(item.encrypted),
                _yes(item.verified),
                _completeness(item),
            )
            for item in backups
        ],
    )


def _type(item: "Listed") -> str:
    shards = len(item.manifest.shards) if item.manifest else 0
    return f"{item.type}, {shards} shards" if shards else item.type


def _completeness(item: "Listed") -> str:
    if item.complete:
        return "yes"
    return "NO (damaged manifest)" if item.damaged else "NO (no manifest)"


def _size(size: int) -> str:
    return f"{size / MIB:.2f} MiB" if size >= MIB else f"{size / 1024:.1f} KiB"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def show_verify(app: Application, result: "VerifyResult") -> None:
    """The verdict: each object's checks, or the damage found (on stderr)."""
    if app.json_mode:
        app.emit_json(result.to_json())
    elif result.ok:
        for name, checks in result.objects.items():
            key_count = sum(db["keys"] for db in checks.drill.keyspace.values())
            app.say(
                f"{name}: SHA-256 ok, {_crc(checks)}, restore drill loaded {key_count} keys "
                "as recorded"
            )
        app.say(f"backup {result.id} verified")
    else:
        app.error(f"backup {result.id} FAILED verification: {result.error}")


def _crc(checks: "ObjectChecks") -> str:
    return f"RDB CRC64 {checks.rdb.checksum}" if checks.rdb else "AOF loaded"


def show_restore(app: Application, result: "RestoreResult") -> None:
    from redkeep.backup.results import ServerRestoreResult  # noqa: PLC0415 - loaded by restore

    for warning in result.warnings:
        app.warn(warning)
    if app.json_mode:
        app.emit_json(result.to_json())
    elif result.dry_run:
        app.say(f"dry run: would restore backup {result.id} to {result.to}")
        if isinstance(result, ServerRestoreResult):
            for db, counts in result.plan.items():
                app.say(f"  {db}: {counts['keys']} keys ({counts['expires']} with a TTL)")
    elif isinstance(result, ServerRestoreResult) and result.restored is not None:
        total = sum(result.restored.values())
        app.say(f"restored {total} keys of backup {result.id} into {result.to}")
        for shard in result.shards or ():
            app.say(f"  shard {shard['index']}: {shard['restored']} keys into {shard['to']}")
    else:
        app.say(f"restored backup {result.id} to {result.to}")


def show_prune(app: Application, result: "PruneResult") -> None:
    if app.json_mode:
        app.emit_json(result.to_json())
        return
    verb = "would delete" if result.dry_run else "deleted"
    app.table(
        ("source", "id", "action", "reason"),
        [
            (decision.source, decision.id, "keep" if decision.keep else verb, decision.reason)
            for decision in result.decisions
        ],
    )
