"""The `redkeep backup` commands: from the flags (backup_requests.py) to a shown result.

Each opens the store (and the bundle), reads the files the flags name (age recipients and
identities, passphrases), runs the action and shows its result through the Application.
`run` also prunes after a run in a bundle, and with --every keeps going.
"""

import dataclasses
import datetime as dt
import os
import re
import time
from collections.abc import Callable

from redkeep.actions import backup_catalog as catalog
from redkeep.actions import backup_output as output
from redkeep.actions.backup import RunOptions, run_backup, unexpected
from redkeep.actions.backup_context import BackupContext
from redkeep.actions.backup_requests import (
    ListRequest,
    PruneRequest,
    RestoreRequest,
    RunRequest,
    VerifyRequest,
)
from redkeep.actions.locate import target_for
from redkeep.app import Application
from redkeep.backup import aoflock, lastrun, notify
from redkeep.backup.encryption import read_passphrase, read_recipients
from redkeep.backup.manifest import check_source
from redkeep.backup.report import BackupFailed, BackupReport
from redkeep.backup.retention import Policy
from redkeep.backup.store_local import LocalStore
from redkeep.bundle import Bundle
from redkeep.errors import ExitStatus, RedkeepError, StoreError, UsageError
from redkeep.redis.target import ConnectionOptions, Target, parse_url, resolve_target
from redkeep.signals import interrupted_by_signals


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- run ----------------------------------------------------------------------------------


def run(request: RunRequest, app: Application) -> int:
    """Take a backup now, or with --every one every MINUTES until stopped."""
    context = BackupContext.open(request.where, app)
    app.json_mode = request.as_json
    kind = request.kind or context.settings.type
    seeds: tuple[Target, ...] = ()
    aof_target = None
    topology = _deployed(context, request)
    if topology:
        # Every data node: any of a cluster leads to the others (backup_cluster reads the slot
        # map); a Sentinel deployment's live roles are asked of each (backup_sentinel).
        nodes = [node.target for node in context.bundle.deployment("backup").every_node()]
        target, seeds = nodes[0], tuple(nodes[1:])
    else:
        # A bundle's backups are of its own Redis: a sourced .env's REDIS_URL (the app) must
        # not win.
        target = target_for(request.connection, context.bundle, "backup")
        if context.bundle and kind != "rdb":  # the AOF step needs CONFIG SET: the admin
            aof_target = target_for(request.connection, context.bundle, "admin")
    options = dataclasses.replace(
        _run_options(request, context, target, kind),
        capture_from=request.capture_from,
        seeds=seeds,
        replicated=topology == "sentinel",
        max_replica_gap=context.settings.max_replica_gap_bytes,
    )

    def once() -> None:
        try:
            with output.progress_bar(app) as progress:
                with_progress = dataclasses.replace(options, progress=progress)
                report = run_backup(with_progress, target, aof_target, _now())
        except BackupFailed as failure:
            if request.as_json:
                app.emit_json(failure.report.to_json())  # a report for every run, failed ones too
            raise
        output.show_run(app, _prune_after(report, context), options.store.url)

    if request.every is None:
        once()
        return ExitStatus.OK
    app.say(f"taking a backup every {request.every:g} minutes; Ctrl-C stops")
    run_periodically(
        request.every * 60,
        once,
        on_error=lambda error: app.error(f"redkeep: error: {error.message}"),
    )
    return ExitStatus.OK


def _deployed(context: BackupContext, request: RunRequest) -> str:
    """ "cluster" or "sentinel" for such a bundle without a --url naming a node; else ""."""
    bundle = context.bundle
    if bundle is None or request.connection.url:
        return ""
    topology = bundle.settings.deployment.topology
    return topology if topology in ("cluster", "sentinel") else ""


def _run_options(
    request: RunRequest, context: BackupContext, target: Target, kind: str
) -> RunOptions:
    """The flags, else the settings, with every file they name read."""
    settings, bundle = context.settings, context.bundle
    # The configured recipients count only when no recipient is given on the command line.
    given = request.age_recipient or request.age_recipients_file
    recipients = read_recipients(
        [*request.age_recipient, *([] if given else settings.age_recipients)],
        list(request.age_recipients_file),
    )
    passphrase_path = context.passphrase_file(request.passphrase_file)
    # Webhook URLs and the bot token: the environment, else the bundle's .env.
    environment = {**(bundle.secrets() if bundle else {}), **os.environ}
    source = context.source or check_source(_source_name(target))
    return RunOptions(
        store=context.store,
        source=source,
        kind=kind,
        compression=request.compress or settings.compress,
        recipients=() if request.no_encrypt else tuple(recipients),
        passphrase=None
        if request.no_encrypt or passphrase_path is None
        else read_passphrase(passphrase_path),
        idle_timeout=request.idle_timeout or settings.idle_timeout,
        metrics_file=request.metrics_file or context.path(settings.metrics_file),
        channels=notify.Channels.from_env(environment, settings.notify.telegram_api_url),
        notify_on_success=settings.notify.on_success if request.notify_on_success is None else True,
        state_dir=aoflock.state_dir(bundle.root if bundle else None),
        last_run_file=bundle.run_dir / lastrun.NAME
        if bundle and request.every is not None
        else None,
    )


def _source_name(target: Target) -> str:
    raw = target.socket_path if target.scheme == "unix" else f"{target.host}-{target.port}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-")


def _prune_after(report: BackupReport, context: BackupContext) -> BackupReport:
    """In a bundle (backup.retention.prune_after_run), apply retention after a stored run."""
    policy = context.retention()
    if policy is None or not context.prunes_after_run:
        return report
    try:
        pruned = catalog.prune(context.store, report.source, policy, _now(), False)
    except RedkeepError as error:  # the backup is stored: pruning can wait for next time
        return report.with_problems(f"pruning after the run failed: {error}")
    return dataclasses.replace(report, pruned=pruned.deleted)


def run_periodically(
    interval: float,
    job: Callable[[], None],
    on_error: Callable[[RedkeepError], None],
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run `job` every `interval` seconds until Ctrl-C, SIGTERM or SIGHUP; failures go to
    `on_error` and do not stop the schedule (the run's notifications tell people)."""
    try:
        with interrupted_by_signals():
            while True:
                started = time.monotonic()
                try:
                    job()
                except RedkeepError as error:
                    on_error(error)
                except Exception as error:  # noqa: BLE001 - a schedule must outlive one bad run
                    on_error(unexpected(error))
                sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return


# --- list, verify, restore, prune ---------------------------------------------------------


def list_command(request: ListRequest, app: Application) -> int:
    context = BackupContext.open(request.where, app)
    app.json_mode = request.as_json
    store = context.store
    if isinstance(store, LocalStore) and not store.root.is_dir():
        raise StoreError(f"{store.root} does not exist: there are no backups there (check --dest)")
    output.show_list(app, catalog.list_backups(store, context.source))
    return ExitStatus.OK


def verify(request: VerifyRequest, app: Application) -> int:
    """Exit 0 when verified, 1 when damaged (or the verdict could not be stored)."""
    context = BackupContext.open(request.where, app)
    app.json_mode = request.as_json
    from redkeep.actions.verify import verify_backup  # noqa: PLC0415 - loads redis-py

    listed = catalog.find_backup(context.store, context.source, request.backup_id)
    decryption = context.decryption(request.age_identity, request.passphrase_file)
    server = context.drill_server(request.server_binary)
    result = verify_backup(context.store, listed, decryption, _now(), server)
    output.show_verify(app, result)
    if result.record_error is not None:  # the verdict was shown; now say it could not be kept
        raise StoreError(f"{result.record_error} (backup {result.id} in {context.store.url})")
    return ExitStatus.OK if result.ok else ExitStatus.FAILURE


def restore(request: RestoreRequest, app: Application) -> int:
    context = BackupContext.open(request.where, app)
    app.json_mode = request.as_json
    if (request.to_file is None) == (request.to_url is None):
        raise UsageError("pass exactly one of --to-file PATH or --to-url URL")
    from redkeep.actions import restore as restoring  # noqa: PLC0415 - loads redis-py

    store, bundle = context.store, context.bundle
    listed = catalog.find_backup(store, context.source, request.backup_id)
    decryption = context.decryption(request.age_identity, request.passphrase_file)
    if request.to_file is not None and listed.manifest and listed.manifest.cluster:
        raise UsageError(
            f"backup {listed.id} is of a {len(listed.manifest.shards)}-shard cluster: restore "
            "it with --to-url NODE into a cluster of as many primaries"
        )
    if request.to_file is not None:
        result = restoring.restore_to_file(
            store,
            listed,
            decryption,
            request.to_file,
            request.content,
            request.replace,
            dry_run=request.dry_run,
            force=request.force,
        )
    else:
        options = ConnectionOptions(
            url=request.to_url,
            password_file=request.password_file,
            tls_ca=request.tls_ca,
            tls_cert=request.tls_cert,
            tls_key=request.tls_key,
        )
        fallback = _admin_node(bundle, request.to_url) if bundle else None
        known = bundle.known_passwords() if bundle else {}
        target = resolve_target(options, os.environ, fallback, known_passwords=known)
        restore_to = restoring.restore_to_server
        if listed.manifest and listed.manifest.cluster:
            from redkeep.actions.restore_cluster import restore_to_cluster  # noqa: PLC0415

            restore_to = restore_to_cluster
        result = restore_to(
            store,
            listed,
            decryption,
            target,
            request.content,
            request.replace,
            request.dry_run,
            context.drill_server(request.server_binary),
            force=request.force,
        )
    output.show_restore(app, result)
    return ExitStatus.OK


def _admin_node(bundle: Bundle, url: str | None) -> Target:
    """The bundle's credentials and TLS files for --to-url: those of the bundle node the URL
    names (any node of a cluster or Sentinel bundle, by port), else its primary, or for a
    cluster (several primaries) its first node."""
    nodes = [node.target for node in bundle.deployment("admin", with_password=False).every_node()]
    port = parse_url(url).port if url else None
    named = next((node for node in nodes if node.port == port), None)
    if named is not None:
        return named
    if bundle.settings.deployment.topology == "cluster":
        return nodes[0]
    return bundle.target("admin", with_password=False)


def prune_command(request: PruneRequest, app: Application) -> int:
    """Flags replace the bundle's backup.retention."""
    context = BackupContext.open(request.where, app)
    app.json_mode = request.as_json
    flags = Policy(
        request.keep_last,
        request.keep_daily,
        request.keep_weekly,
        request.keep_monthly,
        request.max_age,
    )
    retention = context.retention()
    policy = retention if flags.empty() and retention is not None else flags
    result = catalog.prune(context.store, context.source, policy, _now(), request.dry_run)
    output.show_prune(app, result)
    return ExitStatus.OK
