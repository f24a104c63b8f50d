"""`redkeep backup`: run, list, verify, restore, prune."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from redkeep.actions import backup as actions
from redkeep.app import Application
from redkeep.backup import aoflock, lastrun, notify
from redkeep.backup.encryption import read_identities, read_passphrase, read_recipients
from redkeep.backup.manifest import check_source
from redkeep.backup.retention import Policy
from redkeep.backup.store_local import LocalStore
from redkeep.backup.stores import Store, open_store
from redkeep.bundle import Bundle
from redkeep.cli.options import connection_options, dir_option, json_option, load_bundle, target_for
from redkeep.config.defaults import StandaloneBackup
from redkeep.errors import ExitStatus, RedkeepError, StoreError, UsageError
from redkeep.redis.target import ConnectionOptions, Target, resolve_target

if TYPE_CHECKING:
    from redkeep.config.schema import BackupSettings

PathType = click.Path(path_type=Path)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def store_options(command: Callable) -> Callable:
    """--dest, --source and --dir, resolved into `store`, `source`, `bundle`, `settings`."""

    @click.option(
        "--dest", help="Backup location: a directory, file:///path or s3://bucket/prefix."
    )
    @click.option("--source", help="Name of the backed-up server (default: the bundle's name).")
    @dir_option
    @click.pass_obj
    @functools.wraps(command)
    def wrapper(app: Application, *args, dest, source, directory, **kwargs):
        bundle = load_bundle(app, directory, required=False)
        settings = bundle.settings.backup if bundle else StandaloneBackup()
        if dest is None and bundle is None:
            raise UsageError("no backup destination: pass --dest, or run inside a bundle")
        store = open_store(_dest(dest or settings.dest or "", bundle), _s3_options(settings))
        source = source or (bundle.settings.name if bundle else None)
        if source is not None:
            check_source(source)
        return command(
            app, *args, store=store, source=source, bundle=bundle, settings=settings, **kwargs
        )

    return wrapper


def _dest(dest: str, bundle: Bundle | None) -> str:
    if bundle is not None and "://" not in dest and not Path(dest).is_absolute():
        return str(bundle.root / dest)
    return dest


def _s3_options(settings: BackupSettings) -> dict:
    s3 = settings.s3
    return {
        "sse": s3.sse,
        "kms_key_id": s3.kms_key_id,
        "storage_class": s3.storage_class,
        "checksums": s3.checksums,
    }


def _bundle_path(value: str | None, bundle: Bundle | None) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    return bundle.root / path if bundle is not None and not path.is_absolute() else path


def _source_name(target: Target) -> str:
    raw = target.socket_path if target.scheme == "unix" else f"{target.host}-{target.port}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-")


@click.group(name="backup")
def backup_group() -> None:
    """Backups that restore: capture, encrypt, store, verify, restore, prune."""


@backup_group.command()
@connection_options
@store_options
@click.option("--type", "kind", type=click.Choice(["rdb", "aof", "both"]), help="What to capture.")
@click.option("--compress", type=click.Choice(["zstd", "gzip", "none"]), help="Compression.")
@click.option("--age-recipient", multiple=True, help="Encrypt to this age public key (repeatable).")
@click.option(
    "--age-recipients-file", type=PathType, multiple=True, help="File of age public keys."
)
@click.option("--passphrase-file", type=PathType, help="Encrypt with the passphrase in this file.")
@click.option("--no-encrypt", is_flag=True, help="Store plaintext even though keys are configured.")
@click.option("--idle-timeout", type=click.FloatRange(min=1), help="Seconds of silence tolerated.")
@click.option("--metrics-file", type=PathType, help="Prometheus textfile to record the run in.")
@click.option("--notify-on-success", is_flag=True, default=None, help="Notify on success too.")
@click.option(
    "--every",
    type=click.FloatRange(min=0.01),
    metavar="MINUTES",
    help="Keep running: a backup every MINUTES (until Ctrl-C or SIGTERM).",
)
@json_option
def run(
    app: Application,
    connection: ConnectionOptions,
    store: Store,
    source: str | None,
    bundle: Bundle | None,
    settings: BackupSettings,
    kind: str | None,
    compress: str | None,
    age_recipient: tuple[str, ...],
    age_recipients_file: tuple[Path, ...],
    passphrase_file: Path | None,
    no_encrypt: bool,
    idle_timeout: float | None,
    metrics_file: Path | None,
    notify_on_success: bool | None,
    every: float | None,
    as_json: bool,
) -> int:
    """Take a backup now: RDB over replication (the backup user suffices) and/or the AOF.

    With --every, keep taking one every MINUTES; a failed run is reported (and notified) and
    the next one still happens.
    """
    app.json_mode = as_json
    # A bundle's backups are of its own Redis: a sourced .env's REDIS_URL (the app) must not win.
    target = target_for(connection, bundle, "backup", prefer_bundle=True)
    kind = kind or settings.type
    aof_target = (
        target_for(connection, bundle, "admin", prefer_bundle=True)
        if bundle and kind != "rdb"
        else None
    )
    keys = read_recipients(
        [
            *age_recipient,
            *([] if age_recipient or age_recipients_file else settings.age_recipients),
        ],
        list(age_recipients_file),
    )
    passphrase_path = passphrase_file or _bundle_path(settings.passphrase_file, bundle)
    env = {**(bundle.secrets() if bundle else {}), **os.environ}
    options = actions.RunOptions(
        store=store,
        source=source or check_source(_source_name(target)),
        kind=kind,
        compression=compress or settings.compress,
        public_keys=[] if no_encrypt else keys,
        passphrase=None
        if no_encrypt or passphrase_path is None
        else read_passphrase(passphrase_path),
        idle_timeout=idle_timeout or settings.idle_timeout,
        metrics_file=metrics_file or _bundle_path(settings.metrics_file, bundle),
        channels=notify.Channels.from_env(env, settings.notify.telegram_api_url),
        notify_on_success=settings.notify.on_success if notify_on_success is None else True,
        state_dir=aoflock.state_dir(bundle.root if bundle else None),
        last_run_file=bundle.run_dir / lastrun.NAME if bundle and every is not None else None,
    )

    def once() -> None:
        try:
            with _progress(app) as progress:
                options.progress = progress
                report = actions.run_backup(options, target, aof_target, _now())
        except RedkeepError as error:
            if as_json and hasattr(error, "report"):
                app.emit_json(error.report)  # a report for every run, failed ones too
            raise
        _finish_run(app, report, store, options.source, bundle, settings, as_json)

    if every is None:
        once()
        return ExitStatus.OK
    app.say(f"taking a backup every {every:g} minutes; Ctrl-C stops")
    actions.run_periodically(
        every * 60, once, on_error=lambda error: app.error(f"redkeep: error: {error.message}")
    )
    return ExitStatus.OK


def _finish_run(app, report, store, source, bundle, settings, as_json) -> None:
    if bundle is not None and settings.retention.prune_after_run:
        try:
            report["pruned"] = [
                entry["id"]
                for entry in actions.prune(store, source, _policy(settings), _now(), False)
                if entry["action"] == "delete"
            ]
        except RedkeepError as error:  # the backup is stored: pruning can wait for next time
            report.setdefault("warnings", []).append(f"pruning after the run failed: {error}")
    for warning in report.get("warnings", []):
        app.warn(warning)
    for result in report.get("notifications", []):
        if not result["ok"]:
            app.warn(f"{result['channel']} notification failed: {result['error']}")
    if as_json:
        app.emit_json(report)
        return
    size = report["bytes_stored"] / (1 << 20)
    app.say(
        f"backup {report['id']} of {report['source']}: {report['type']}, {size:.2f} MiB stored "
        f"in {report['duration_seconds']:.1f}s, encryption {report['encryption']}, "
        f"RDB checksum {report['rdb'].get('checksum', 'n/a')}"
    )
    app.say(f"in {store.url}/{report['source']}/{report['id']}")
    if report.get("pruned"):
        app.say(f"pruned {len(report['pruned'])} old backup(s)")


@contextlib.contextmanager
def _progress(app: Application):
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


def _policy(settings: BackupSettings) -> Policy:
    retention = settings.retention
    return Policy(
        keep_last=retention.keep_last,
        keep_daily=retention.keep_daily,
        keep_weekly=retention.keep_weekly,
        keep_monthly=retention.keep_monthly,
        max_age_days=retention.max_age_days,
    )


@backup_group.command(name="list")
@store_options
@json_option
def list_command(
    app: Application,
    store: Store,
    source: str | None,
    bundle: Bundle | None,
    settings: BackupSettings,
    as_json: bool,
) -> None:
    """List backups: id, time, type, size, encrypted, verified (incomplete ones are marked)."""
    app.json_mode = as_json
    if isinstance(store, LocalStore) and not store.root.is_dir():
        raise StoreError(f"{store.root} does not exist: there are no backups there (check --dest)")
    rows = [item.row() for item in actions.list_backups(store, source)]
    if as_json:
        app.emit_json(rows)
        return
    app.table(
        ("id", "source", "time", "type", "size", "encrypted", "verified", "complete"),
        [
            (
                row["id"],
                row["source"],
                row["time"][:19].replace("T", " "),
                row["type"],
                _size(row["size"]),
                _yes(row["encrypted"]),
                _yes(row["verified"]),
                _completeness(row),
            )
            for row in rows
        ],
    )


def _completeness(row: dict) -> str:
    if row["complete"]:
        return "yes"
    return "NO (damaged manifest)" if row["damaged"] else "NO (no manifest)"


def _size(size: int) -> str:
    return f"{size / (1 << 20):.2f} MiB" if size >= 1 << 20 else f"{size / 1024:.1f} KiB"


def _crc(checks: dict) -> str:
    rdb = checks.get("rdb")
    return f"RDB CRC64 {rdb['checksum']}" if rdb else "AOF loaded"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _keys(identity: tuple[Path, ...], passphrase_file: Path | None, settings, bundle):
    files = list(identity) or [
        path for path in [_bundle_path(settings.identity_file, bundle)] if path is not None
    ]
    passphrase_path = passphrase_file or _bundle_path(settings.passphrase_file, bundle)
    from redkeep.actions import restore as restoring  # noqa: PLC0415 - loads redis-py

    return restoring.Keys(
        identities=read_identities(files),
        passphrase=read_passphrase(passphrase_path) if passphrase_path else None,
    )


def server_binary_option(command: Callable) -> Callable:
    return click.option(
        "--server-binary",
        type=PathType,
        help="redis-server or valkey-server for the restore drill (and its RDB check); it "
        "must read the backup's RDB version. Default: backup.server_binary, else redis-server.",
    )(command)


def _server(server_binary: Path | None, settings, bundle):
    from redkeep.backup import drill  # noqa: PLC0415 - loads redis-py

    if server_binary is not None:
        return drill.server_binary(str(server_binary))
    configured = _bundle_path(settings.server_binary, bundle)
    return drill.server_binary(str(configured) if configured else None, "backup.server_binary")


@backup_group.command()
@click.argument("backup_id", default="latest", metavar="[ID|latest]")
@store_options
@click.option(
    "--age-identity", type=PathType, multiple=True, help="age identity file (repeatable)."
)
@click.option(
    "--passphrase-file", type=PathType, help="Passphrase of a passphrase-encrypted backup."
)
@server_binary_option
@json_option
def verify(
    app: Application,
    backup_id: str,
    store: Store,
    source: str | None,
    bundle: Bundle | None,
    settings: BackupSettings,
    age_identity: tuple[Path, ...],
    passphrase_file: Path | None,
    server_binary: Path | None,
    as_json: bool,
) -> int:
    """Prove a backup restores: SHA-256, decrypt, decompress, CRC64, then a restore drill.

    Exit 1 if a check fails (the backup is damaged), 4 if the backup is newer than the local
    drill server can read (no verdict: use --server-binary).
    """
    app.json_mode = as_json
    from redkeep.actions import restore as restoring  # noqa: PLC0415 - loads redis-py

    listed = actions.find_backup(store, source, backup_id)
    keys = _keys(age_identity, passphrase_file, settings, bundle)
    server = _server(server_binary, settings, bundle)
    result = restoring.verify_backup(store, listed, keys, _now(), server)
    if as_json:
        app.emit_json(result)
    elif result["result"] == "ok":
        for name, checks in result["objects"].items():
            loaded = checks["drill"]["keyspace"]
            keys_total = sum(db["keys"] for db in loaded.values())
            app.say(
                f"{name}: SHA-256 ok, {_crc(checks)}, restore drill loaded {keys_total} keys "
                "as recorded"
            )
        app.say(f"backup {result['id']} verified")
    else:
        app.error(f"backup {result['id']} FAILED verification: {result['error']}")
    if "record_error" in result:  # the verdict was shown; now say it could not be kept
        raise StoreError(f"{result['record_error']} (backup {result['id']} in {store.url})")
    return ExitStatus.OK if result["result"] == "ok" else ExitStatus.FAILURE


@backup_group.command()
@click.argument("backup_id", metavar="ID|latest")
@store_options
@click.option("--to-file", type=PathType, help="Write the RDB file (or AOF directory) here.")
@click.option("--to-url", help="Load into this live server (DUMP/RESTORE, TTLs kept).")
@click.option("--password-file", type=PathType, help="Password for --to-url.")
@click.option("--tls-ca", type=PathType, help="CA certificate for --to-url.")
@click.option("--tls-cert", type=PathType, help="Client certificate for --to-url.")
@click.option("--tls-key", type=PathType, help="Client key for --to-url.")
@click.option(
    "--content",
    type=click.Choice(["auto", "rdb", "aof"]),
    default="auto",
    show_default=True,
    help="Which object of a `both` backup.",
)
@click.option("--replace", is_flag=True, help="Overwrite an existing file or existing keys.")
@click.option("--dry-run", is_flag=True, help="Show what would be restored; change nothing.")
@click.option(
    "--age-identity", type=PathType, multiple=True, help="age identity file (repeatable)."
)
@click.option("--passphrase-file", "backup_passphrase", type=PathType, help="Backup passphrase.")
@click.option(
    "--force",
    is_flag=True,
    help="Restore even a backup whose verify failed or whose keys differ from its manifest.",
)
@server_binary_option
@json_option
def restore(
    app: Application,
    backup_id: str,
    store: Store,
    source: str | None,
    bundle: Bundle | None,
    settings: BackupSettings,
    to_file: Path | None,
    to_url: str | None,
    password_file: Path | None,
    tls_ca: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    content: str,
    replace: bool,
    dry_run: bool,
    age_identity: tuple[Path, ...],
    backup_passphrase: Path | None,
    force: bool,
    server_binary: Path | None,
    as_json: bool,
) -> None:
    """Restore backup ID into a file (--to-file) or a live server (--to-url).

    A backup whose last verify failed, or whose RDB does not hold the keys its manifest
    recorded, is refused unless --force.
    """
    app.json_mode = as_json
    if (to_file is None) == (to_url is None):
        raise UsageError("pass exactly one of --to-file PATH or --to-url URL")
    from redkeep.actions import restore as restoring  # noqa: PLC0415 - loads redis-py

    listed = actions.find_backup(store, source, backup_id)
    keys = _keys(age_identity, backup_passphrase, settings, bundle)
    if to_file is not None:
        result = restoring.restore_to_file(
            store, listed, keys, to_file, content, replace, dry_run=dry_run, force=force
        )
    else:
        options = ConnectionOptions(
            url=to_url,
            password_file=password_file,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
        )
        fallback = bundle.target("admin", with_password=False) if bundle else None
        known = bundle.known_passwords() if bundle else {}
        target = resolve_target(options, os.environ, fallback, known_passwords=known)
        server = _server(server_binary, settings, bundle)
        result = restoring.restore_to_server(
            store, listed, keys, target, content, replace, dry_run, server, force=force
        )
    for warning in result.get("warnings", []):
        app.warn(warning)
    if as_json:
        app.emit_json(result)
    elif dry_run:
        plan = result.get("plan")
        app.say(f"dry run: would restore backup {result['id']} to {result['to']}")
        if plan:
            for db, counts in plan.items():
                app.say(f"  {db}: {counts['keys']} keys ({counts['expires']} with a TTL)")
    elif "restored" in result:
        total = sum(result["restored"].values())
        app.say(f"restored {total} keys of backup {result['id']} into {result['to']}")
    else:
        app.say(f"restored backup {result['id']} to {result['to']}")


@backup_group.command()
@store_options
@click.option("--keep-last", type=click.IntRange(min=1), help="Keep the newest N.")
@click.option("--keep-daily", type=click.IntRange(min=1), help="Keep one per day for N days.")
@click.option("--keep-weekly", type=click.IntRange(min=1), help="Keep one per week for N weeks.")
@click.option("--keep-monthly", type=click.IntRange(min=1), help="Keep one per month for N months.")
@click.option(
    "--max-age", "max_age", type=click.IntRange(min=1), help="Keep all younger than N days."
)
@click.option("--dry-run", is_flag=True, help="List keep/delete with the reason; delete nothing.")
@json_option
def prune(
    app: Application,
    store: Store,
    source: str | None,
    bundle: Bundle | None,
    settings: BackupSettings,
    keep_last: int | None,
    keep_daily: int | None,
    keep_weekly: int | None,
    keep_monthly: int | None,
    max_age: int | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Delete backups the retention policy does not keep (per source).

    Flags replace the bundle's backup.retention; the newest verified backup is always kept.
    """
    app.json_mode = as_json
    flags = Policy(keep_last, keep_daily, keep_weekly, keep_monthly, max_age)
    policy = flags if not flags.empty() or bundle is None else _policy(settings)
    results = actions.prune(store, source, policy, _now(), dry_run)
    if as_json:
        app.emit_json(results)
        return
    verb = "would delete" if dry_run else "deleted"
    app.table(
        ("source", "id", "action", "reason"),
        [
            (
                row["source"],
                row["id"],
                row["action"] if row["action"] == "keep" else verb,
                row["reason"],
            )
            for row in results
        ],
    )
