"""`redkeep backup`: run, list, verify, restore, prune.

The flags of each command, gathered into a request (actions/backup_requests.py); the
actions (actions/backup_commands.py) do the work and show the result.
"""

import functools
from collections.abc import Callable
from pathlib import Path

import click

from redkeep.actions import backup_commands as commands
from redkeep.actions.backup_requests import (
    ListRequest,
    PruneRequest,
    RestoreRequest,
    RunRequest,
    StoreFlags,
    VerifyRequest,
)
from redkeep.app import Application
from redkeep.cli.options import connection_options, dir_option, json_option

PathType = click.Path(path_type=Path)


def store_options(command: Callable) -> Callable:
    """--dest, --source and --dir, as `where`; also passes the Application."""

    @click.option(
        "--dest", help="Backup location: a directory, file:///path or s3://bucket/prefix."
    )
    @click.option("--source", help="Name of the backed-up server (default: the bundle's name).")
    @dir_option
    @click.pass_obj
    @functools.wraps(command)
    def wrapper(app: Application, *args, dest, source, directory, **kwargs):
        return command(app, *args, where=StoreFlags(dest, source, directory), **kwargs)

    return wrapper


def age_identity_option(command: Callable) -> Callable:
    return click.option(
        "--age-identity", type=PathType, multiple=True, help="age identity file (repeatable)."
    )(command)


def server_binary_option(command: Callable) -> Callable:
    return click.option(
        "--server-binary",
        type=PathType,
        help="redis-server or valkey-server for the restore drill (and its RDB check); it "
        "must read the backup's RDB version. Default: backup.server_binary, else redis-server.",
    )(command)


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
@click.option(
    "--from",
    "capture_from",
    type=click.Choice(["replica", "primary"]),
    default="replica",
    show_default=True,
    help="Cluster or Sentinel deployment: capture each shard from a replica in sync (the "
    "primary when none is), or from the primary.",
)
@json_option
def run(app: Application, **flags) -> int:
    """Take a backup now: RDB over replication (the backup user suffices) and/or the AOF.

    With --every, keep taking one every MINUTES; a failed run is reported (and notified) and
    the next one still happens.
    """
    return commands.run(RunRequest(**flags), app)


@backup_group.command(name="list")
@store_options
@json_option
def list_command(app: Application, **flags) -> int:
    """List backups: id, time, type, size, encrypted, verified (incomplete ones are marked)."""
    return commands.list_command(ListRequest(**flags), app)


@backup_group.command()
@click.argument("backup_id", default="latest", metavar="[ID|latest]")
@store_options
@age_identity_option
@click.option(
    "--passphrase-file", type=PathType, help="Passphrase of a passphrase-encrypted backup."
)
@server_binary_option
@json_option
def verify(app: Application, **flags) -> int:
    """Prove a backup restores: SHA-256, decrypt, decompress, CRC64, then a restore drill.

    Exit 1 if a check fails (the backup is damaged), 4 if the backup is newer than the local
    drill server can read (no verdict: use --server-binary).
    """
    return commands.verify(VerifyRequest(**flags), app)


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
@age_identity_option
@click.option("--passphrase-file", type=PathType, help="Backup passphrase.")
@click.option(
    "--force",
    is_flag=True,
    help="Restore even a backup whose verify failed or whose keys differ from its manifest.",
)
@server_binary_option
@json_option
def restore(app: Application, **flags) -> int:
    """Restore backup ID into a file (--to-file) or a live server (--to-url).

    A backup whose last verify failed, or whose RDB does not hold the keys its manifest
    recorded, is refused unless --force.
    """
    return commands.restore(RestoreRequest(**flags), app)


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
def prune(app: Application, **flags) -> int:
    """Delete backups the retention policy does not keep (per source).

    Flags replace the bundle's backup.retention; the newest verified backup is always kept.
    """
    return commands.prune_command(PruneRequest(**flags), app)
