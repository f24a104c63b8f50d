"""Options shared by many commands: connection, bundle directory, JSON output."""

import functools
import os
from collections.abc import Callable
from pathlib import Path

import click

from redkeep.bundle import Bundle, find_bundle
from redkeep.connect import ConnectionOptions, Target, resolve_target
from redkeep.render.env import PASSWORD_KEYS

PathType = click.Path(path_type=Path)


def connection_options(command: Callable) -> Callable:
    """Add --url, --password-file, --tls-ca/--tls-cert/--tls-key, --timeout as `connection`."""

    @click.option(
        "--url",
        metavar="URL",
        help="redis://, rediss:// or unix:// URL (default: REDIS_URL, else the bundle's). "
        "Put no password here on shared machines: use --password-file or REDIS_PASSWORD.",
    )
    @click.option("--password-file", type=PathType, help="File whose first line is the password.")
    @click.option("--tls-ca", type=PathType, help="CA certificate to verify the server.")
    @click.option("--tls-cert", type=PathType, help="Client certificate (mutual TLS).")
    @click.option("--tls-key", type=PathType, help="Client private key (mutual TLS).")
    @click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=5.0,
        show_default=True,
        help="Seconds to wait for connect and replies.",
    )
    @functools.wraps(command)
    def wrapper(*args, url, password_file, tls_ca, tls_cert, tls_key, timeout, **kwargs):
        kwargs["connection"] = ConnectionOptions(
            url=url,
            password_file=password_file,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            timeout=timeout,
        )
        return command(*args, **kwargs)

    return wrapper


def dir_option(command: Callable) -> Callable:
    return click.option(
        "--dir",
        "directory",
        type=click.Path(path_type=Path, file_okay=False),
        help="The bundle directory (default: the current one, if it holds redkeep.yaml).",
    )(command)


def json_option(command: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(
        command
    )


def target_for(
    connection: ConnectionOptions,
    bundle: Bundle | None,
    role: str,
    prefer_bundle: bool = False,
) -> Target:
    """The Redis to talk to as `role`: options, environment, then the bundle's own endpoint."""
    fallback = bundle.target(role) if bundle is not None and not connection.url else None
    known = {}
    if bundle is not None:
        secrets = bundle.secrets()
        known = {user: secrets[key] for user, key in PASSWORD_KEYS.items() if secrets.get(key)}
        if fallback is None:
            fallback = bundle.target(role, with_password=False)
    return resolve_target(
        connection, os.environ, fallback, known_passwords=known, prefer_fallback=prefer_bundle
    )


def optional_bundle(directory: Path | None) -> Bundle | None:
    """The bundle at --dir, or in the current directory, or None outside any bundle."""
    return find_bundle(directory, required=False)
